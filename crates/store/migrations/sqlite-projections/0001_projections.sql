-- The projections file (store schema 6): projection documents and checkpoints, kept apart
-- from the log so that projection commits and the log's commits do not take turns on one
-- write lock. Same tables as store schema 5 after migration 0007 of the main file.
CREATE TABLE projection_generations (
    -- AUTOINCREMENT: numbers are never reused, so a new generation can never inherit rows
    -- a retired one has not had deleted yet.
    generation INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT UNIQUE,        -- NULL once retired
    position   INTEGER NOT NULL    -- the checkpoint: log position applied up to
);

CREATE TABLE projection_docs (
    generation INTEGER NOT NULL,
    key        TEXT    NOT NULL,
    doc        BLOB    NOT NULL,
    PRIMARY KEY (generation, key)
);
