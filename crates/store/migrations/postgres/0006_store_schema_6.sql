-- Store schema 6 moved SQLite's projection tables into a file of their own. Nothing
-- changes on PostgreSQL, where projection commits and appends do not share one lock;
-- the number moves so that one store schema means one contract on both backends.
UPDATE meta SET value = '6' WHERE key = 'store_schema';
