-- Store schema 4: on SQLite this adds a one-statement append for single events. PostgreSQL
-- appends under the `log_head` row lock as before; only the version moves, so both backends
-- name the same schema.
UPDATE meta SET value = '4' WHERE key = 'store_schema';
