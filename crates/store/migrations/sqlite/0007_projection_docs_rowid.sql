-- Projection documents move to an ordinary (rowid) table, keyed by a unique index on
-- (generation, key).
--
-- Why: in a WITHOUT ROWID table the whole row is the B-tree key, so a document larger than
-- about 1,000 bytes (a ticket head, a history chunk) spills onto overflow pages, and every
-- key comparison that lands on such a row while seeking reads all of them, on leaf and
-- interior pages alike. Profiling the sync daemon showed those seeks as most of a
-- projection commit and of loading a batch's documents. Here the index holds only the
-- keys; a document is read once it is found. Readers and writers of store schema 5 are
-- unaffected (same columns, same conflict target), so the store schema stays what it is.
-- PostgreSQL keeps large values out of its index already.
ALTER TABLE projection_docs RENAME TO projection_docs_6;

CREATE TABLE projection_docs (
    generation INTEGER NOT NULL,
    key        TEXT    NOT NULL,
    doc        BLOB    NOT NULL,
    PRIMARY KEY (generation, key)
);

INSERT INTO projection_docs (generation, key, doc)
SELECT generation, key, doc FROM projection_docs_6 ORDER BY generation, key;

DROP TABLE projection_docs_6;
