//! The SQLite backend's projection connection: document loads, key-prefix scans and
//! projection commits over one rusqlite connection with `synchronous=NORMAL` and a large
//! page cache, on a blocking thread.
//!
//! Why not sqlx here: a rebuild writes a document per item and reads back the ones its next
//! batch touches, hundreds of thousands of rows. Through sqlx every bound value is copied
//! into its own argument buffer and every multi-row statement of an odd size is prepared
//! anew; profiling a rebuild showed its SQLite worker thread busy with that copying and
//! allocation as much as with the B-tree. Here one cached statement per kind of row binds
//! the caller's bytes in place. Projections are derived and carry their checkpoint, so a
//! power loss can only take back the latest commits, which the runner redoes (see
//! `SqliteStore`).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use rusqlite::types::ValueRef;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use crate::kept_conn::{joined, KeptConn};
use crate::rows::{to_i64, to_u64};
use crate::sqlite::PROJECTION_CACHE_KIB;
use crate::{DocChange, DocsDigest, StoreError};

/// How much of the database file a digest maps into memory (SQLite caps it at its build's
/// maximum; the part beyond is read with system calls).
const DIGEST_MMAP_BYTES: i64 = 1 << 31;

/// The generation a projection's name points at, as a subquery taking the name as `?1`.
const CURRENT: &str = "(SELECT generation FROM projection_generations WHERE name = ?1)";

/// The projection connection of one database file.
#[derive(Debug)]
pub(crate) struct ProjectionConn {
    conn: Arc<KeptConn>,
}

impl ProjectionConn {
    pub(crate) fn new(path: &Path) -> Result<Self, StoreError> {
        Ok(ProjectionConn {
            conn: Arc::new(KeptConn::new(
                path,
                "projection connection",
                open,
                "NORMAL",
            )?),
        })
    }

    pub(crate) fn checkpoint_stats(&self) -> crate::CheckpointStats {
        self.conn.checkpoint_stats()
    }

    /// Runs `f` on the connection, on a blocking thread; one caller at a time.
    async fn with<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.conn.with(f).await
    }

    /// `Store::digest_docs`: one read transaction over a connection of its own, with the
    /// file memory-mapped, hashing each document where SQLite holds it, on a blocking
    /// thread. (Paging through `list_docs_page` copied every key and document into its own
    /// allocation, and hashed them on the caller's thread, which a rebuild needs for
    /// computing its batches while it digests the live projection.)
    pub(crate) async fn digest(self: &Arc<Self>, projection: &str) -> Result<[u8; 32], StoreError> {
        let projection = projection.to_string();
        let me = Arc::clone(self);
        let r = tokio::task::spawn_blocking(move || {
            // Closed at the end, which unmaps the file.
            let c = me.conn.open_another()?;
            c.pragma_update(None, "query_only", true)?;
            c.pragma_update(None, "mmap_size", DIGEST_MMAP_BYTES)?;
            let tx = c.unchecked_transaction()?;
            let mut h = DocsDigest::default();
            if let Some(generation) = current(&tx, &projection)? {
                let mut st = tx.prepare(
                    "SELECT key, doc FROM projection_docs WHERE generation = ?1 ORDER BY key",
                )?;
                let mut rows = st.query(params![generation])?;
                while let Some(r) = rows.next()? {
                    let key = match r.get_ref(0)? {
                        ValueRef::Text(b) => b,
                        _ => {
                            return Err(StoreError::Corrupt("a projection key is not text".into()))
                        }
                    };
                    h.add(key, bytes(r.get_ref(1)?)?);
                }
            }
            tx.commit()?;
            Ok(h.finish())
        })
        .await;
        joined("projection digest", r)
    }

    /// `Store::load_docs`: one cached point lookup per key.
    pub(crate) async fn load_docs(
        self: &Arc<Self>,
        projection: &str,
        keys: &[String],
    ) -> Result<HashMap<String, Vec<u8>>, StoreError> {
        let projection = projection.to_string();
        let keys = keys.to_vec();
        self.with(move |c| {
            let mut out = HashMap::with_capacity(keys.len());
            // One read transaction: one snapshot, and the WAL read lock taken once.
            let tx = c.transaction()?;
            let Some(generation) = current(&tx, &projection)? else {
                return Ok(out);
            };
            {
                let mut st = tx.prepare_cached(
                    "SELECT doc FROM projection_docs WHERE generation = ?1 AND key = ?2",
                )?;
                for key in keys {
                    let mut rows = st.query(params![generation, key])?;
                    if let Some(r) = rows.next()? {
                        let doc = bytes(r.get_ref(0)?)?.to_vec();
                        out.insert(key, doc);
                    }
                }
            }
            tx.commit()?;
            Ok(out)
        })
        .await
    }

    /// `Store::list_docs_prefix`: a range of the primary key (keys compare by bytes under
    /// SQLite's default BINARY collation).
    pub(crate) async fn docs_prefix(
        self: &Arc<Self>,
        projection: &str,
        prefix: &str,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let projection = projection.to_string();
        let prefix = prefix.to_string();
        self.with(move |c| {
            let upper = crate::prefix_upper_bound(&prefix);
            let mut st = match upper {
                Some(_) => c.prepare_cached(&format!(
                    "SELECT key, doc FROM projection_docs WHERE generation = {CURRENT} \
                     AND key >= ?2 AND key < ?3 ORDER BY key"
                ))?,
                None => c.prepare_cached(&format!(
                    "SELECT key, doc FROM projection_docs WHERE generation = {CURRENT} \
                     AND key >= ?2 ORDER BY key"
                ))?,
            };
            let mut rows = match &upper {
                Some(u) => st.query(params![projection, prefix, u])?,
                None => st.query(params![projection, prefix])?,
            };
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                let key = match r.get_ref(0)? {
                    ValueRef::Text(b) => String::from_utf8(b.to_vec())
                        .map_err(|_| StoreError::Corrupt("a projection key is not UTF-8".into()))?,
                    _ => return Err(StoreError::Corrupt("a projection key is not text".into())),
                };
                out.push((key, bytes(r.get_ref(1)?)?.to_vec()));
            }
            Ok(out)
        })
        .await
    }

    /// `Store::commit_projection`: under the write lock, checks the checkpoint, writes the
    /// changes and moves the checkpoint, in one transaction.
    pub(crate) async fn commit(
        self: &Arc<Self>,
        projection: &str,
        from: u64,
        to: u64,
        mut changes: Vec<DocChange>,
    ) -> Result<(), StoreError> {
        let projection = projection.to_string();
        let to = to_i64(to)?;
        // In key order, so consecutive rows land on the same or neighbouring B-tree pages.
        // The sort is stable: changes to one key keep their order, so the last one wins as
        // before; changes to different keys commute.
        changes.sort_by(|a, b| a.key().cmp(b.key()));
        let bytes = changes
            .iter()
            .map(|c| {
                c.key().len()
                    + match c {
                        DocChange::Put { doc, .. } => doc.len(),
                        DocChange::Delete { .. } => 0,
                    }
            })
            .sum();
        self.conn
            .with_write(bytes, move |c| {
                let started = Instant::now();
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let locked = started.elapsed();
                let cur: Option<(i64, i64)> = tx
                    .prepare_cached(
                        "SELECT generation, position FROM projection_generations WHERE name = ?1",
                    )?
                    .query_row(params![projection], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?;
                let actual = to_u64(cur.map_or(0, |(_, p)| p), "checkpoint")?;
                if actual != from {
                    return Err(StoreError::CheckpointMoved {
                        projection,
                        expected: from,
                        actual,
                    });
                }
                let generation = match cur {
                    Some((g, _)) => g,
                    None => tx
                        .prepare_cached(
                            "INSERT INTO projection_generations (name, position) VALUES (?1, 0) \
                         RETURNING generation",
                        )?
                        .query_row(params![projection], |r| r.get(0))?,
                };
                {
                    let mut put = tx.prepare_cached(
                        "INSERT INTO projection_docs (generation, key, doc) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (generation, key) DO UPDATE SET doc = excluded.doc",
                    )?;
                    let mut delete = tx.prepare_cached(
                        "DELETE FROM projection_docs WHERE generation = ?1 AND key = ?2",
                    )?;
                    for change in &changes {
                        match change {
                            DocChange::Put { key, doc } => {
                                put.execute(params![generation, key, doc])?;
                            }
                            DocChange::Delete { key } => {
                                delete.execute(params![generation, key])?;
                            }
                        }
                    }
                    tx.prepare_cached(
                        "UPDATE projection_generations SET position = ?1 WHERE generation = ?2",
                    )?
                    .execute(params![to, generation])?;
                }
                let committing = Instant::now();
                tx.commit()?;
                tracing::debug!(
                    %projection,
                    changes = changes.len(),
                    lock_wait_us = locked.as_micros() as u64,
                    commit_us = committing.elapsed().as_micros() as u64,
                    total_us = started.elapsed().as_micros() as u64,
                    "projection batch written"
                );
                Ok(())
            })
            .await
    }
}

/// Opens the projection connection: `synchronous=NORMAL`, a large page cache.
fn open(path: &Path) -> Result<Connection, StoreError> {
    let c = crate::log_reader::open_connection(path, PROJECTION_CACHE_KIB)?;
    c.pragma_update(None, "synchronous", "NORMAL")?;
    crate::checkpointer::leave_to_background(&c)?;
    Ok(c)
}

/// The generation `projection` names, if it has one.
fn current(c: &Connection, projection: &str) -> Result<Option<i64>, StoreError> {
    Ok(
        c.prepare_cached("SELECT generation FROM projection_generations WHERE name = ?1")?
            .query_row(params![projection], |r| r.get(0))
            .optional()?,
    )
}

/// A document's bytes (text is taken as its bytes, as sqlx does for `Vec<u8>`).
fn bytes(v: ValueRef<'_>) -> Result<&[u8], StoreError> {
    match v {
        ValueRef::Blob(b) | ValueRef::Text(b) => Ok(b),
        other => Err(StoreError::Corrupt(format!(
            "a projection document holds {:?}, not a blob",
            other.data_type()
        ))),
    }
}
