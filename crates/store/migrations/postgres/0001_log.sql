-- The append-only, hash-chained event log and the storage of projections (PostgreSQL).
-- Same tables and meaning as migrations/sqlite/0001_log.sql; integers are BIGINT, blobs BYTEA.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE events (
    position       BIGINT  PRIMARY KEY CHECK (position > 0), -- 1-based, contiguous
    event_id       TEXT    NOT NULL UNIQUE,                  -- ULID
    stream_id      TEXT    NOT NULL,                         -- ULID of the ticket
    version        BIGINT  NOT NULL CHECK (version > 0),     -- 1-based within the stream
    schema_version BIGINT  NOT NULL,
    event_type     TEXT    NOT NULL,
    occurred_at    BIGINT  NOT NULL,                         -- ms since the epoch
    recorded_at    BIGINT  NOT NULL,
    actor_instance TEXT    NOT NULL,
    actor_user     TEXT    NOT NULL,
    link_seq       BIGINT  NOT NULL DEFAULT 0,
    payload        BYTEA   NOT NULL,                         -- postcard, per schema_version
    prev_hash      BYTEA   NOT NULL,
    hash           BYTEA   NOT NULL,
    UNIQUE (stream_id, version)
);

-- The database, not only the code, keeps append-only tables append-only: row triggers
-- refuse UPDATE and DELETE (INSERT ... ON CONFLICT DO UPDATE fires the UPDATE trigger, so
-- an upsert cannot rewrite history either), a statement trigger refuses TRUNCATE.
-- TG_ARGV[0] names the table's role in the message.
CREATE FUNCTION ticketsync_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_ARGV[0], TG_OP
        USING ERRCODE = 'restrict_violation';
END
$$;

CREATE TRIGGER events_refuse_change BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION ticketsync_refuse_change('the event log');
CREATE TRIGGER events_refuse_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION ticketsync_refuse_change('the event log');

-- Current version of each stream, for optimistic concurrency without scanning the log.
CREATE TABLE streams (
    stream_id TEXT   PRIMARY KEY,
    version   BIGINT NOT NULL
);

-- The last appended entry. Unlike SQLite the row exists from the start (position 0, the
-- genesis hash): every append locks it (`SELECT ... FOR UPDATE`), which serializes
-- appends so positions are assigned, and become visible, in commit order.
CREATE TABLE log_head (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    position BIGINT  NOT NULL,
    hash     BYTEA   NOT NULL
);
INSERT INTO log_head (id, position, hash) VALUES (1, 0, decode(repeat('00', 32), 'hex'));

CREATE TABLE projection_checkpoints (
    name     TEXT   PRIMARY KEY,
    position BIGINT NOT NULL
);

CREATE TABLE projection_docs (
    projection TEXT  NOT NULL,
    key        TEXT  NOT NULL,
    doc        BYTEA NOT NULL,
    PRIMARY KEY (projection, key)
);

INSERT INTO meta (key, value) VALUES ('store_schema', '1');
