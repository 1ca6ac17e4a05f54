-- The guard against INSERT OR REPLACE stops the statement with FAIL instead of ABORT.
--
-- Either way nothing is replaced: the trigger refuses the row before SQLite resolves the
-- conflict. Why FAIL: a statement that writes several rows and may ABORT must be undone
-- alone, so SQLite copies every page it touches into a statement journal first; RAISE(ABORT)
-- here made every multi-row append keep one (about 6% of a batched append's CPU). With
-- FAIL, and the appender's own `INSERT OR FAIL`, there is none. The appender rolls its whole
-- transaction back on any error, so what FAIL leaves of a failed statement never commits;
-- a raw multi-row INSERT OR REPLACE outside a transaction keeps the rows before the refused
-- one, which are only appends. Readers and writers of store schema 4 are unaffected, so
-- the store schema stays what it is (PostgreSQL has no REPLACE and no such guard).
DROP TRIGGER events_refuse_replace;
CREATE TRIGGER events_refuse_replace BEFORE INSERT ON events
WHEN EXISTS (SELECT 1 FROM events WHERE position = NEW.position OR event_id = NEW.event_id
             OR (stream_id = NEW.stream_id AND version = NEW.version))
BEGIN
    SELECT RAISE(FAIL, 'the event log is append-only: an insert may not replace an entry');
END;
