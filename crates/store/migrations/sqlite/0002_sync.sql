-- Replication to partner instances: pairing, the per-partner outbound channel (a hash
-- chain of its own, filled in the same transaction as the log), the inbound checkpoint,
-- and the quarantine of refused messages.

CREATE TABLE partners (
    name        TEXT PRIMARY KEY,          -- the other instance's name
    state       TEXT NOT NULL,             -- 'invited' (waiting for its hello) or 'paired'
    secret      BLOB NOT NULL,             -- 32 bytes shared through the invitation: message MACs
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER,                   -- invitation expiry (ms), for 'invited'
    paired_at   INTEGER,
    organization TEXT                      -- partner side: our organization the lead maps to
);

-- Everything this instance sends to one partner, in order. Append-only like the log.
CREATE TABLE channel_out (
    partner   TEXT    NOT NULL,
    seq       INTEGER NOT NULL,            -- 1-based, contiguous per partner
    event_id  TEXT,                        -- the log event this entry carries, if any
    body      BLOB    NOT NULL,            -- postcard ChannelBody
    prev_hash BLOB    NOT NULL,
    hash      BLOB    NOT NULL,
    PRIMARY KEY (partner, seq)
);
CREATE TRIGGER channel_out_refuse_update BEFORE UPDATE ON channel_out
BEGIN
    SELECT RAISE(ABORT, 'the outbound channel is append-only: UPDATE refused');
END;
CREATE TRIGGER channel_out_refuse_delete BEFORE DELETE ON channel_out
BEGIN
    SELECT RAISE(ABORT, 'the outbound channel is append-only: DELETE refused');
END;

-- Per partner: the highest outbound seq the broker acknowledged (where publishing resumes).
CREATE TABLE channel_out_acked (
    partner TEXT PRIMARY KEY,
    seq     INTEGER NOT NULL
);

-- Per partner: the last inbound entry applied (or quarantined) and its hash.
CREATE TABLE channel_in (
    partner TEXT PRIMARY KEY,
    seq     INTEGER NOT NULL,
    hash    BLOB    NOT NULL
);

CREATE TABLE quarantine (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    partner     TEXT    NOT NULL,           -- the channel it arrived on (claimed sender)
    seq         INTEGER,                    -- channel seq, when the entry had a valid place in it
    event_id    TEXT,
    kind        TEXT    NOT NULL,
    detail      TEXT    NOT NULL,
    body        BLOB,                       -- the refused bytes, for investigation
    received_at INTEGER NOT NULL
);

UPDATE meta SET value = '2' WHERE key = 'store_schema';
