-- Store schema 3: the ticket projection keeps each ticket in several documents (head,
-- items, history chunks) read with key-range scans. Projections are derived from the log,
-- so the documents of the old layout are dropped with their checkpoints and the next
-- catch-up rebuilds them from the log. Keys compare by bytes whatever the database's
-- default collation, so ranges and ordering agree with SQLite and the primary key index
-- serves them. The new version also tells an older ticketsync that it cannot read them.
DELETE FROM projection_docs;
DELETE FROM projection_checkpoints;
ALTER TABLE projection_docs ALTER COLUMN key TYPE TEXT COLLATE "C";
UPDATE meta SET value = '3' WHERE key = 'store_schema';
