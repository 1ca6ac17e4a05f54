-- The append-only, hash-chained event log and the storage of projections.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE events (
    position       INTEGER PRIMARY KEY,         -- 1-based, contiguous
    event_id       TEXT    NOT NULL UNIQUE,     -- ULID
    stream_id      TEXT    NOT NULL,            -- ULID of the ticket
    version        INTEGER NOT NULL,            -- 1-based within the stream
    schema_version INTEGER NOT NULL,
    event_type     TEXT    NOT NULL,
    occurred_at    INTEGER NOT NULL,            -- ms since the epoch
    recorded_at    INTEGER NOT NULL,
    actor_instance TEXT    NOT NULL,
    actor_user     TEXT    NOT NULL,
    link_seq       INTEGER NOT NULL DEFAULT 0, -- outsourcing transitions known to the author
    payload        BLOB    NOT NULL,            -- postcard, per schema_version
    prev_hash      BLOB    NOT NULL,
    hash           BLOB    NOT NULL,
    UNIQUE (stream_id, version)
);

-- The database, not only the code, keeps the log append-only.
CREATE TRIGGER events_refuse_update BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'the event log is append-only: UPDATE refused');
END;
CREATE TRIGGER events_refuse_delete BEFORE DELETE ON events
BEGIN
    SELECT RAISE(ABORT, 'the event log is append-only: DELETE refused');
END;
-- INSERT OR REPLACE deletes the clashing row without firing DELETE triggers; refuse any
-- insert that would clash, so a replace cannot rewrite history either.
CREATE TRIGGER events_refuse_replace BEFORE INSERT ON events
WHEN EXISTS (SELECT 1 FROM events WHERE position = NEW.position OR event_id = NEW.event_id
             OR (stream_id = NEW.stream_id AND version = NEW.version))
BEGIN
    SELECT RAISE(ABORT, 'the event log is append-only: an insert may not replace an entry');
END;

-- Current version of each stream, for optimistic concurrency without scanning the log.
CREATE TABLE streams (
    stream_id TEXT PRIMARY KEY,
    version   INTEGER NOT NULL
);

-- The last appended entry: lets verify notice a log cut short at its tail.
CREATE TABLE log_head (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    position INTEGER NOT NULL,
    hash     BLOB    NOT NULL
);

CREATE TABLE projection_checkpoints (
    name     TEXT PRIMARY KEY,
    position INTEGER NOT NULL
);

CREATE TABLE projection_docs (
    projection TEXT NOT NULL,
    key        TEXT NOT NULL,
    doc        BLOB NOT NULL,
    PRIMARY KEY (projection, key)
) WITHOUT ROWID;

INSERT INTO meta (key, value) VALUES ('store_schema', '1');
