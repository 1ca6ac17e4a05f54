-- Store schema 9 (see the database file's migration 0010): the ticket projection no longer
-- copies each item into a document (`i/{ticket}/{item}`); a ticket's items are read from its
-- stream in the log, as its history is, and only what each time entry and charge adds to
-- the totals is stored (`c/{ticket}/{item}`). The projection written with item documents is
-- retired (its rows go with the next `reclaim_projections`, which the sync daemon runs in
-- the background and `ticketsync rebuild` runs at once); with no live generation it starts
-- over from the beginning of the log at the next catch-up.
UPDATE projection_generations SET name = NULL WHERE name = 'tickets';
