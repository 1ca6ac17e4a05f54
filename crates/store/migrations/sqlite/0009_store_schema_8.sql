-- Store schema 8: the ticket projection reads a ticket's history from the log instead of
-- keeping a copy of it in 16-line chunks. Each history line is a function of one entry of
-- the ticket's stream, so the chunks duplicated the log; appending a line rewrote its
-- chunk's row (up to about 3.5 KB), the largest write of an event applied to a ticket. The
-- projections file's own migration 0003 retires the projection stored with chunks; the
-- next catch-up computes it again from the log.
--
-- The number moves so that a ticketsync that still reads history from chunks refuses the
-- file instead of showing tickets without history.
UPDATE meta SET value = '8' WHERE key = 'store_schema';
