-- Replication to partner instances (PostgreSQL): pairing, the per-partner outbound
-- channel (a hash chain of its own, filled in the same transaction as the log, under the
-- same log_head lock, so its seqs are gap-free in commit order), the inbound checkpoint,
-- and the quarantine of refused messages. Same meaning as migrations/sqlite/0002_sync.sql.

CREATE TABLE partners (
    name         TEXT   PRIMARY KEY,
    state        TEXT   NOT NULL,
    secret       BYTEA  NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT,
    paired_at    BIGINT,
    organization TEXT
);

-- Everything this instance sends to one partner, in order. Append-only like the log.
CREATE TABLE channel_out (
    partner   TEXT   NOT NULL,
    seq       BIGINT NOT NULL CHECK (seq > 0),
    event_id  TEXT,
    body      BYTEA  NOT NULL,
    prev_hash BYTEA  NOT NULL,
    hash      BYTEA  NOT NULL,
    PRIMARY KEY (partner, seq)
);
CREATE TRIGGER channel_out_refuse_change BEFORE UPDATE OR DELETE ON channel_out
    FOR EACH ROW EXECUTE FUNCTION ticketsync_refuse_change('the outbound channel');
CREATE TRIGGER channel_out_refuse_truncate BEFORE TRUNCATE ON channel_out
    FOR EACH STATEMENT EXECUTE FUNCTION ticketsync_refuse_change('the outbound channel');

CREATE TABLE channel_out_acked (
    partner TEXT   PRIMARY KEY,
    seq     BIGINT NOT NULL
);

CREATE TABLE channel_in (
    partner TEXT   PRIMARY KEY,
    seq     BIGINT NOT NULL,
    hash    BYTEA  NOT NULL
);

CREATE TABLE quarantine (
    id          BIGSERIAL PRIMARY KEY,
    partner     TEXT   NOT NULL,
    seq         BIGINT,
    event_id    TEXT,
    kind        TEXT   NOT NULL,
    detail      TEXT   NOT NULL,
    body        BYTEA,
    received_at BIGINT NOT NULL
);

UPDATE meta SET value = '2' WHERE key = 'store_schema';
