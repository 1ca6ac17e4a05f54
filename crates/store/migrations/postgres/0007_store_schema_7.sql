-- Store schema 7: the ticket projection keeps a ticket's history in chunks of 16 lines
-- instead of 64 (appending a line rewrites its whole chunk). The projection written with
-- 64-line chunks is retired (its rows go with the next `reclaim_projections`, which
-- `ticketsync rebuild` runs); with no live generation it starts over from the beginning of
-- the log at the next catch-up. The number moves so that a ticketsync that still writes
-- 64-line chunks refuses the database instead of appending lines to the wrong chunk.
UPDATE projection_generations SET name = NULL WHERE name = 'tickets';
UPDATE meta SET value = '7' WHERE key = 'store_schema';
