-- Store schema 7: the ticket projection keeps a ticket's history in chunks of 16 lines
-- instead of 64. Appending a line rewrites its whole chunk, which at 64 lines (up to about
-- 14 KB with overflow pages) was the largest write of an event applied to a ticket with a
-- long history. The projections file's own migration 0002 retires the projection stored
-- with the old chunks; the next catch-up computes it again from the log.
--
-- The number moves so that a ticketsync that still writes 64-line chunks refuses the file
-- instead of appending lines to the wrong chunk.
UPDATE meta SET value = '7' WHERE key = 'store_schema';
