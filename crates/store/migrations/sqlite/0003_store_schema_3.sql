-- Store schema 3: the ticket projection keeps each ticket in several documents (head, items, history
-- chunks) read with key-range scans. Projections are derived from the log, so the
-- documents of the old layout are dropped with their checkpoints and the next catch-up
-- rebuilds them from the log. Keys already compare by bytes in SQLite. The new version also
-- tells an older ticketsync that it cannot read these documents.
DELETE FROM projection_docs;
DELETE FROM projection_checkpoints;

UPDATE meta SET value = '3' WHERE key = 'store_schema';
