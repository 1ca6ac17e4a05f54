-- Store schema 5: a projection's documents and checkpoint belong to a generation, and the
-- projection's name points at its current generation. Swapping in a rebuilt projection
-- (`replace_projection`) moves the live name to the shadow's generation and retires the old
-- one (its name becomes NULL): two one-row updates, whatever the projection's size. A
-- retired generation's documents are deleted afterwards, a bounded number per transaction
-- (`reclaim_projections`), and then its row. Same tables and meaning as on SQLite.
CREATE TABLE projection_generations (
    -- An identity: numbers are never reused, so a new generation can never inherit rows a
    -- retired one has not had deleted yet.
    generation BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       TEXT   UNIQUE,        -- NULL once retired
    position   BIGINT NOT NULL       -- the checkpoint: log position applied up to
);

-- Renamed with its primary key's index, whose name the new table's would clash with.
ALTER TABLE projection_docs RENAME TO projection_docs_4;
ALTER INDEX projection_docs_pkey RENAME TO projection_docs_4_pkey;

CREATE TABLE projection_docs (
    generation BIGINT NOT NULL,
    -- Keys compare by bytes, as under SQLite's BINARY collation (see migration 0003).
    key        TEXT COLLATE "C" NOT NULL,
    doc        BYTEA NOT NULL,
    PRIMARY KEY (generation, key)
);

-- Every projection with a checkpoint or documents keeps them, as generation 1, 2, ...
INSERT INTO projection_generations (name, position)
SELECT name, MAX(position) FROM (
    SELECT name, position FROM projection_checkpoints
    UNION ALL
    SELECT DISTINCT projection, 0 FROM projection_docs_4
) AS p GROUP BY name ORDER BY name;

INSERT INTO projection_docs (generation, key, doc)
SELECT g.generation, d.key, d.doc
FROM projection_docs_4 d JOIN projection_generations g ON g.name = d.projection;

DROP TABLE projection_docs_4;
DROP TABLE projection_checkpoints;

UPDATE meta SET value = '5' WHERE key = 'store_schema';
