-- Store schema 9: the ticket projection reads a ticket's items from the log, as it reads its
-- history, instead of keeping a copy of each item in a document; it stores per ticket the
-- head and, per time entry and charge, what the item adds to the totals. The projection
-- written with item documents is retired (its rows go with the next `reclaim_projections`,
-- which `ticketsync rebuild` runs); with no live generation it starts over from the
-- beginning of the log at the next catch-up. The number moves so that a ticketsync that
-- still reads items from documents refuses the database instead of showing tickets
-- without items.
UPDATE projection_generations SET name = NULL WHERE name = 'tickets';
UPDATE meta SET value = '9' WHERE key = 'store_schema';
