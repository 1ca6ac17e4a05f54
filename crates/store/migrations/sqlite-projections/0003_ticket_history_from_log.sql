-- Store schema 8 (see the database file's migration 0009): the ticket projection no longer
-- copies each ticket's history into documents (`h/{ticket}/{n}` chunks); a ticket's history
-- is read from its stream in the log. The projection written with chunks is retired (its
-- rows, chunks included, go with the next `reclaim_projections`, which the sync daemon runs
-- in the background and `ticketsync rebuild` runs at once); with no live generation it
-- starts over from the beginning of the log at the next catch-up.
UPDATE projection_generations SET name = NULL WHERE name = 'tickets';
