-- Store schema 5: a projection's documents and checkpoint belong to a generation, and the
-- projection's name points at its current generation. Swapping in a rebuilt projection
-- (`replace_projection`) moves the live name to the shadow's generation and retires the old
-- one (its name becomes NULL): two one-row updates, whatever the projection's size. A
-- retired generation's documents are deleted afterwards, a bounded number per transaction
-- (`reclaim_projections`), and then its row.
CREATE TABLE projection_generations (
    -- AUTOINCREMENT: numbers are never reused, so a new generation can never inherit rows
    -- a retired one has not had deleted yet.
    generation INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT UNIQUE,        -- NULL once retired
    position   INTEGER NOT NULL    -- the checkpoint: log position applied up to
);

ALTER TABLE projection_docs RENAME TO projection_docs_4;

CREATE TABLE projection_docs (
    generation INTEGER NOT NULL,
    key        TEXT    NOT NULL,
    doc        BLOB    NOT NULL,
    PRIMARY KEY (generation, key)
) WITHOUT ROWID;

-- Every projection with a checkpoint or documents keeps them, as generation 1, 2, ...
INSERT INTO projection_generations (name, position)
SELECT name, MAX(position) FROM (
    SELECT name, position FROM projection_checkpoints
    UNION ALL
    SELECT DISTINCT projection, 0 FROM projection_docs_4
) GROUP BY name ORDER BY name;

INSERT INTO projection_docs (generation, key, doc)
SELECT g.generation, d.key, d.doc
FROM projection_docs_4 d JOIN projection_generations g ON g.name = d.projection;

DROP TABLE projection_docs_4;
DROP TABLE projection_checkpoints;

UPDATE meta SET value = '5' WHERE key = 'store_schema';
