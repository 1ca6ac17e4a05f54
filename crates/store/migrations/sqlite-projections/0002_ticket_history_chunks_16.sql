-- Store schema 7 (see the database file's migration 0008): ticket history is stored in
-- chunks of 16 lines. The ticket projection written with 64-line chunks is retired (its
-- rows go with the next `reclaim_projections`, which `ticketsync rebuild` runs); with no
-- live generation the projection starts over from the beginning of the log at the next
-- catch-up, as on a new instance.
UPDATE projection_generations SET name = NULL WHERE name = 'tickets';
