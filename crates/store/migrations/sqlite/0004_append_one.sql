-- Store schema 4.
--
-- One event appended in one autocommitted statement: the writer seals the entry against
-- the head it last saw and inserts it here; the trigger checks, under the write lock, that
-- the head and the stream version are still what the entry was sealed against, then
-- writes the entry, the stream's version and the head. Anything stale aborts the whole
-- statement (nothing is written) and the writer falls back to a full transaction.
CREATE VIEW events_append_one AS
    SELECT position, event_id, stream_id, version, schema_version, event_type, occurred_at,
           recorded_at, actor_instance, actor_user, link_seq, payload, prev_hash, hash
    FROM events WHERE 0;

CREATE TRIGGER events_append_one_insert INSTEAD OF INSERT ON events_append_one
BEGIN
    SELECT RAISE(ABORT, 'ticketsync: stale head')
    WHERE NEW.position IS NOT COALESCE((SELECT position FROM log_head WHERE id = 1), 0) + 1
       OR NEW.prev_hash IS NOT COALESCE((SELECT hash FROM log_head WHERE id = 1), zeroblob(32));
    SELECT RAISE(ABORT, 'ticketsync: stale stream version')
    WHERE NEW.version IS NOT
          COALESCE((SELECT version FROM streams WHERE stream_id = NEW.stream_id), 0) + 1;
    INSERT INTO events (position, event_id, stream_id, version, schema_version, event_type,
                        occurred_at, recorded_at, actor_instance, actor_user, link_seq,
                        payload, prev_hash, hash)
    VALUES (NEW.position, NEW.event_id, NEW.stream_id, NEW.version, NEW.schema_version,
            NEW.event_type, NEW.occurred_at, NEW.recorded_at, NEW.actor_instance,
            NEW.actor_user, NEW.link_seq, NEW.payload, NEW.prev_hash, NEW.hash);
    INSERT OR REPLACE INTO streams (stream_id, version) VALUES (NEW.stream_id, NEW.version);
    INSERT OR REPLACE INTO log_head (id, position, hash) VALUES (1, NEW.position, NEW.hash);
END;

UPDATE meta SET value = '4' WHERE key = 'store_schema';
