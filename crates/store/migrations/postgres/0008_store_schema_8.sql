-- Store schema 8: the ticket projection reads a ticket's history from the log instead of
-- keeping a copy of it in 16-line chunks (each history line is a function of one entry of
-- the ticket's stream). The projection written with chunks is retired (its rows go with the
-- next `reclaim_projections`, which `ticketsync rebuild` runs); with no live generation it
-- starts over from the beginning of the log at the next catch-up. The number moves so that
-- a ticketsync that still reads history from chunks refuses the database instead of
-- showing tickets without history.
UPDATE projection_generations SET name = NULL WHERE name = 'tickets';
UPDATE meta SET value = '8' WHERE key = 'store_schema';
