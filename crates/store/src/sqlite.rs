//! The SQLite backend: one file in WAL mode with `synchronous=FULL`, so an acknowledged
//! append survives power loss. Writers take the write lock up front (`BEGIN IMMEDIATE`) so
//! that two processes never both read a version and then both try to write; a single
//! event goes in one statement whose trigger re-checks head and version under the lock.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};
use ticketsync_wire::{channel_hash, LogEntry, NewEntry, GENESIS_HASH};
use ulid::Ulid;

use crate::channel::{
    ChannelEntry, ChannelHead, Inbound, Outgoing, Partner, PartnerState, QuarantineRecord,
};
use crate::log_reader::LogReaders;
use crate::projection_conn::ProjectionConn;
use crate::rows::{hash32, head_of, parse_ulid, to_i64, to_u64};
use crate::{
    DocChange, HashedVisit, Head, Store, StoreError, StreamAppend, MAX_READ_BATCH, STORE_SCHEMA,
};

/// How long a writer waits for another process's write lock before giving up.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Page cache of the projection connection, in KiB (SQLite's default is 2,000): a batch
/// writes thousands of documents spread over the tickets it touches, and with the default
/// the pages they land on are read back from the file again and again. 8 MiB rather than
/// 16: the 1M-event rebuild ran as fast (103k events/s), and the daemon's peak RSS over 1M
/// replicated events fell from 65.6 to 56.9 MiB (its budget is 64).
pub const PROJECTION_CACHE_KIB: u32 = 8 * 1024;
/// Connections kept by one process (SQLite serializes writers anyway).
pub const MAX_CONNECTIONS: u32 = 4;
/// Rows a query's worker may read ahead of the caller.
pub const ROW_CHANNEL: usize = 1_024;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// One connection with `synchronous=NORMAL` for the relay's acknowledged-up-to marker,
    /// which only saves republishing: a power loss may take back its latest value, never a
    /// log entry, which is committed with `synchronous=FULL` on `pool`.
    projection_pool: SqlitePool,
    /// The head after this process's latest append, which the next single-event append
    /// seals against (`append_one`); stale when another process appended since, which the
    /// database notices.
    head_seen: Arc<Mutex<Option<Head>>>,
    /// The log's readers (`read_log`, `scan_log`), which bypass sqlx: see `log_reader`.
    readers: Arc<LogReaders>,
    /// Projection loads and commits, which bypass sqlx: see `projection_conn`. It commits
    /// with `synchronous=NORMAL`: projections are derived from the log and carry their
    /// checkpoint, so a power loss may take back the latest projection commits (the runner
    /// redoes them from the checkpoint it finds) but never a log entry. In WAL mode a later
    /// FULL commit also makes every earlier frame durable, so a projection can never be
    /// ahead of the log it was computed from.
    projections: Arc<ProjectionConn>,
}

pub(crate) const ENTRY_COLUMNS: &str =
    "position, event_id, stream_id, version, schema_version, event_type, \
     occurred_at, recorded_at, actor_instance, actor_user, link_seq, payload, prev_hash, hash";

impl SqliteStore {
    /// Creates (or opens) the database file and brings its schema up to date.
    pub async fn create(path: &Path) -> Result<Self, StoreError> {
        Self::open_inner(path, true).await
    }

    /// Opens an existing database; fails with `NotInitialized` when the file is missing.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        if !path.exists() {
            return Err(StoreError::NotInitialized(format!(
                "no database at {}; run `ticketsync init` first",
                path.display()
            )));
        }
        let store = Self::open_inner(path, false).await?;
        if store.get_meta("store_schema").await?.is_none() {
            return Err(StoreError::NotInitialized(format!(
                "{} is not a ticketsync database",
                path.display()
            )));
        }
        Ok(store)
    }

    async fn open_inner(path: &Path, create: bool) -> Result<Self, StoreError> {
        let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
            .map_err(|e| StoreError::Unavailable(e.to_string()))?
            .create_if_missing(create)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            // Rows sqlx's worker thread may queue ahead of the reader: with its default (50)
            // a long read (a whole stream, a projection's documents) hands over between
            // threads every few rows. (The log itself is read by `log_reader`.)
            .row_buffer_size(ROW_CHANNEL)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .connect_with(opts.clone())
            .await
            .map_err(|e| StoreError::Unavailable(format!("{}: {e}", path.display())))?;
        let readers = Arc::new(LogReaders::new(path));
        let projections = Arc::new(ProjectionConn::new(path));
        let check = SqliteStore {
            pool: pool.clone(),
            projection_pool: pool.clone(),
            head_seen: Arc::default(),
            readers: readers.clone(),
            projections: projections.clone(),
        };
        check.check_schema().await?;
        MIGRATOR.run(&pool).await?;
        let projection_pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts.synchronous(SqliteSynchronous::Normal))
            .await
            .map_err(|e| StoreError::Unavailable(format!("{}: {e}", path.display())))?;
        let store = SqliteStore {
            pool,
            projection_pool,
            head_seen: Arc::default(),
            readers,
            projections,
        };
        let head = store.head().await?;
        *store.head_seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(head);
        Ok(store)
    }

    /// Refuses a database written by a newer ticketsync before touching it.
    async fn check_schema(&self) -> Result<(), StoreError> {
        let has_meta: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'",
        )
        .fetch_optional(&self.pool)
        .await?;
        if has_meta.is_none() {
            return Ok(());
        }
        let v: Option<String> =
            sqlx::query_scalar("SELECT value FROM meta WHERE key = 'store_schema'")
                .fetch_optional(&self.pool)
                .await?;
        let found: u32 = match v {
            None => return Ok(()),
            Some(s) => s
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("store_schema {s:?} is not a number")))?,
        };
        if found > STORE_SCHEMA {
            return Err(StoreError::SchemaTooNew {
                found,
                supported: STORE_SCHEMA,
            });
        }
        Ok(())
    }

    /// Appends one event in a single autocommitted statement (one round trip to SQLite's
    /// worker instead of seven for a transaction), sealed against the head this process
    /// saw last. The `events_append_one` trigger checks under the write lock that the head
    /// and the stream's version are still those; if anything is stale (another process
    /// appended, the expected version is wrong) or fails, the statement writes nothing and
    /// `None` sends the caller to the full transaction, which decides what is true.
    async fn append_one(
        &self,
        recorded_at: i64,
        part: &StreamAppend,
        entry: &NewEntry,
    ) -> Option<LogEntry> {
        let head = (*self.head_seen.lock().ok()?)?;
        let e = LogEntry::seal(
            entry.clone(),
            head.position + 1,
            part.expected_version + 1,
            recorded_at,
            head.hash,
        );
        let sql = format!(
            "INSERT INTO events_append_one ({ENTRY_COLUMNS}) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        );
        bind_entry(sqlx::query(&sql), &e)
            .ok()?
            .execute(&self.pool)
            .await
            .ok()?;
        self.remember_head(&e);
        Some(e)
    }

    fn remember_head(&self, last: &LogEntry) {
        if let Ok(mut h) = self.head_seen.lock() {
            *h = Some(Head {
                position: last.position,
                hash: last.hash,
            });
        }
    }

    /// The underlying pool, for tests and operator tooling that need raw SQL.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

type Tx = sqlx::Transaction<'static, sqlx::Sqlite>;

/// Appends within an open write transaction. With `skip_existing`, events whose id the log
/// already holds are left out (an inbound event delivered again).
///
/// Everything is checked and sealed in memory first, then written with few statements: one
/// version read per stream, one existence query per chunk of ids (with `skip_existing`),
/// multi-row inserts, one version update per stream and one head update. A conflict is
/// found before anything is written (and the caller's transaction is dropped anyway).
async fn append_in_tx(
    tx: &mut Tx,
    recorded_at: i64,
    batch: Vec<StreamAppend>,
    skip_existing: bool,
) -> Result<Vec<LogEntry>, StoreError> {
    let head: Option<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT position, hash FROM log_head WHERE id = 1")
            .fetch_optional(&mut **tx)
            .await?;
    let (mut position, mut prev) = match head {
        Some((p, h)) => (to_u64(p, "head position")?, hash32(h, "head hash")?),
        None => (0, GENESIS_HASH),
    };
    let mut held: std::collections::HashSet<String> = std::collections::HashSet::new();
    if skip_existing {
        let ids: Vec<String> = batch
            .iter()
            .flat_map(|p| p.entries.iter().map(|e| e.event_id.to_string()))
            .collect();
        for chunk in ids.chunks(EXISTS_CHUNK) {
            let sql = format!(
                "SELECT event_id FROM events WHERE event_id IN ({})",
                vec!["?"; chunk.len()].join(", ")
            );
            // Only the full-size statement is worth a place in the connection's statement
            // cache; each other size would keep its own prepared program alive there.
            let mut q =
                sqlx::query_scalar::<_, String>(&sql).persistent(chunk.len() == EXISTS_CHUNK);
            for id in chunk {
                q = q.bind(id.as_str());
            }
            held.extend(q.fetch_all(&mut **tx).await?);
        }
    }
    // Per stream, in first-touched order: its id text and the version it is at now.
    let mut versions: HashMap<Ulid, (String, u64)> = HashMap::new();
    let mut touched: Vec<Ulid> = Vec::new();
    let mut out = Vec::with_capacity(batch.iter().map(|b| b.entries.len()).sum());
    for part in batch {
        let (_, version) = match versions.entry(part.stream_id) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(slot) => {
                let sid = part.stream_id.to_string();
                let cur: Option<i64> =
                    sqlx::query_scalar("SELECT version FROM streams WHERE stream_id = ?")
                        .bind(&sid)
                        .fetch_optional(&mut **tx)
                        .await?;
                slot.insert((sid, to_u64(cur.unwrap_or(0), "stream version")?))
            }
        };
        if *version != part.expected_version {
            // Dropping the transaction rolls it back: nothing of the batch is written.
            return Err(StoreError::Conflict {
                stream_id: part.stream_id,
                expected: part.expected_version,
                actual: *version,
            });
        }
        if part.entries.is_empty() {
            continue;
        }
        if !touched.contains(&part.stream_id) {
            touched.push(part.stream_id);
        }
        for new in part.entries {
            // An id met again within the batch is left out too, as a row written by an
            // earlier statement would have been.
            if skip_existing && !held.insert(new.event_id.to_string()) {
                continue;
            }
            position += 1;
            *version += 1;
            let e = LogEntry::seal(new, position, *version, recorded_at, prev);
            prev = e.hash;
            out.push(e);
        }
    }
    // Many rows per statement: one round trip to SQLite's worker per chunk instead of one
    // per event is most of what a batched append costs.
    for chunk in out.chunks(INSERT_CHUNK) {
        insert_entries(tx, chunk).await?;
    }
    for id in &touched {
        if let Some((sid, version)) = versions.get(id) {
            sqlx::query(
                "INSERT INTO streams (stream_id, version) VALUES (?, ?) \
                 ON CONFLICT (stream_id) DO UPDATE SET version = excluded.version",
            )
            .bind(sid.as_str())
            .bind(to_i64(*version)?)
            .execute(&mut **tx)
            .await?;
        }
    }
    if !out.is_empty() {
        sqlx::query(
            "INSERT INTO log_head (id, position, hash) VALUES (1, ?, ?) \
             ON CONFLICT (id) DO UPDATE SET position = excluded.position, hash = excluded.hash",
        )
        .bind(to_i64(position)?)
        .bind(&prev[..])
        .execute(&mut **tx)
        .await?;
    }
    Ok(out)
}

/// Event ids looked up by one existence query.
pub const EXISTS_CHUNK: usize = 500;

/// Log rows written by one `INSERT` statement (14 parameters each, well below SQLite's
/// limit of 32766 bound parameters).
pub const INSERT_CHUNK: usize = 128;

/// Inserts sealed entries with a single multi-row `INSERT`. `OR FAIL`, because with the
/// default (ABORT) SQLite keeps a statement journal, a copy of every page the statement
/// touches, to undo that one statement; the caller rolls back the whole transaction on any
/// error anyway (migration 0006 has the guard trigger fail the same way).
async fn insert_entries(tx: &mut Tx, chunk: &[LogEntry]) -> Result<(), StoreError> {
    let mut sql = format!("INSERT OR FAIL INTO events ({ENTRY_COLUMNS}) VALUES ");
    for i in 0..chunk.len() {
        if i > 0 {
            sql.push(',');
        }
        sql.push_str("(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    }
    let mut q = sqlx::query(&sql).persistent(chunk.len() == 1 || chunk.len() == INSERT_CHUNK);
    for e in chunk {
        q = bind_entry(q, e)?;
    }
    q.execute(&mut **tx).await?;
    Ok(())
}

type Query<'q> = sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>;

/// Binds an entry's columns in `ENTRY_COLUMNS` order.
fn bind_entry<'q>(q: Query<'q>, e: &'q LogEntry) -> Result<Query<'q>, StoreError> {
    Ok(q.bind(to_i64(e.position)?)
        .bind(e.event_id.to_string())
        .bind(e.stream_id.to_string())
        .bind(to_i64(e.version)?)
        .bind(i64::from(e.schema_version))
        .bind(e.event_type.as_str())
        .bind(e.occurred_at)
        .bind(e.recorded_at)
        .bind(e.actor_instance.as_str())
        .bind(e.actor_user.as_str())
        .bind(i64::from(e.link_seq))
        .bind(e.payload.as_slice())
        .bind(&e.prev_hash[..])
        .bind(&e.hash[..]))
}

/// Adds outbound channel entries within an open write transaction, continuing each
/// partner's chain.
async fn outgoing_in_tx(tx: &mut Tx, outgoing: Vec<Outgoing>) -> Result<(), StoreError> {
    for o in outgoing {
        let head: Option<(i64, Vec<u8>)> = sqlx::query_as(
            "SELECT seq, hash FROM channel_out WHERE partner = ? ORDER BY seq DESC LIMIT 1",
        )
        .bind(&o.to)
        .fetch_optional(&mut **tx)
        .await?;
        let (seq, prev) = match head {
            Some((s, h)) => (to_u64(s, "channel seq")? + 1, hash32(h, "channel hash")?),
            None => (1, GENESIS_HASH),
        };
        let hash = channel_hash(&prev, seq, &o.from, &o.to, &o.body);
        sqlx::query(
            "INSERT INTO channel_out (partner, seq, event_id, body, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&o.to)
        .bind(to_i64(seq)?)
        .bind(&o.event_id)
        .bind(&o.body)
        .bind(&prev[..])
        .bind(&hash[..])
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    async fn append_routed(
        &self,
        recorded_at: i64,
        batch: Vec<StreamAppend>,
        outgoing: Vec<Outgoing>,
    ) -> Result<Vec<LogEntry>, StoreError> {
        if outgoing.is_empty() {
            if let [part] = batch.as_slice() {
                if let [entry] = part.entries.as_slice() {
                    if let Some(e) = self.append_one(recorded_at, part, entry).await {
                        return Ok(vec![e]);
                    }
                }
            }
        }
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let out = append_in_tx(&mut tx, recorded_at, batch, false).await?;
        outgoing_in_tx(&mut tx, outgoing).await?;
        tx.commit().await?;
        if let Some(last) = out.last() {
            self.remember_head(last);
        }
        Ok(out)
    }

    async fn stream_version(&self, stream_id: Ulid) -> Result<u64, StoreError> {
        let v: Option<i64> = sqlx::query_scalar("SELECT version FROM streams WHERE stream_id = ?")
            .bind(stream_id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        to_u64(v.unwrap_or(0), "stream version")
    }

    async fn read_stream(
        &self,
        stream_id: Ulid,
        to_position: Option<u64>,
    ) -> Result<Vec<LogEntry>, StoreError> {
        let to = to_position.unwrap_or(i64::MAX as u64);
        self.readers.read_stream(stream_id, 0, to).await
    }

    async fn read_stream_after(
        &self,
        stream_id: Ulid,
        after_version: u64,
    ) -> Result<Vec<LogEntry>, StoreError> {
        self.readers
            .read_stream(stream_id, after_version, i64::MAX as u64)
            .await
    }

    async fn streams_with_types(
        &self,
        after: u64,
        to: u64,
        types: &[&str],
    ) -> Result<Vec<Ulid>, StoreError> {
        if types.is_empty() || to <= after {
            return Ok(vec![]);
        }
        let sql = format!(
            "SELECT DISTINCT stream_id FROM events WHERE position > ? AND position <= ? \
             AND event_type IN ({})",
            vec!["?"; types.len()].join(", ")
        );
        let mut q = sqlx::query_scalar::<_, String>(&sql)
            .persistent(false)
            .bind(to_i64(after)?)
            .bind(to_i64(to)?);
        for t in types {
            q = q.bind(*t);
        }
        q.fetch_all(&self.pool)
            .await?
            .iter()
            .map(|s| parse_ulid(s, "stream id"))
            .collect()
    }

    async fn read_log(&self, after: u64, limit: u32) -> Result<Vec<LogEntry>, StoreError> {
        self.readers.read_log(after, limit).await
    }

    async fn scan_log(
        &self,
        after: u64,
        visit: &mut (dyn for<'e> FnMut(&'e [LogEntry]) -> ControlFlow<()> + Send),
    ) -> Result<(), StoreError> {
        self.readers.scan_entries(after, visit).await
    }

    async fn scan_log_hashed(
        &self,
        after: u64,
        upto: Option<u64>,
        visit: &mut HashedVisit<'_>,
    ) -> Result<(), StoreError> {
        self.readers.scan_hashed(after, upto, visit).await
    }

    async fn head(&self) -> Result<Head, StoreError> {
        let head: Option<(i64, Vec<u8>)> =
            sqlx::query_as("SELECT position, hash FROM log_head WHERE id = 1")
                .fetch_optional(&self.pool)
                .await?;
        match head {
            Some((p, h)) => Ok(Head {
                position: to_u64(p, "head position")?,
                hash: hash32(h, "head hash")?,
            }),
            None => Ok(Head {
                position: 0,
                hash: GENESIS_HASH,
            }),
        }
    }

    async fn count_entries(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events")
            .fetch_one(&self.pool)
            .await?;
        to_u64(n, "count")
    }

    async fn stream_versions(&self) -> Result<HashMap<Ulid, u64>, StoreError> {
        let rows: Vec<(String, i64)> = sqlx::query_as("SELECT stream_id, version FROM streams")
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter()
            .map(|(s, v)| Ok((parse_ulid(&s, "stream id")?, to_u64(v, "stream version")?)))
            .collect()
    }

    async fn projection_checkpoint(&self, projection: &str) -> Result<u64, StoreError> {
        let v: Option<i64> =
            sqlx::query_scalar("SELECT position FROM projection_generations WHERE name = ?")
                .bind(projection)
                .fetch_optional(&self.pool)
                .await?;
        to_u64(v.unwrap_or(0), "checkpoint")
    }

    async fn load_docs(
        &self,
        projection: &str,
        keys: &[String],
    ) -> Result<HashMap<String, Vec<u8>>, StoreError> {
        // On the projection connection: its page cache holds the pages its commits wrote,
        // which are the ones a runner reads back next.
        self.projections.load_docs(projection, keys).await
    }

    async fn list_docs(&self, projection: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT key, doc FROM projection_docs \
                 WHERE generation = (SELECT generation FROM projection_generations WHERE name = ?) \
                 ORDER BY key",
        )
        .bind(projection)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn list_docs_page(
        &self,
        projection: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.readers.docs_page(projection, after, limit).await
    }

    async fn digest_docs(&self, projection: &str) -> Result<[u8; 32], StoreError> {
        self.projections.digest(projection).await
    }

    async fn list_docs_prefix(
        &self,
        projection: &str,
        prefix: &str,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.projections.docs_prefix(projection, prefix).await
    }

    async fn commit_projection(
        &self,
        projection: &str,
        from: u64,
        to: u64,
        changes: Vec<DocChange>,
    ) -> Result<(), StoreError> {
        self.projections.commit(projection, from, to, changes).await
    }

    async fn reset_projection(&self, projection: &str) -> Result<(), StoreError> {
        // Retiring the generation drops documents and checkpoint at once (one statement is
        // its own transaction); `reclaim_projections` deletes the rows.
        sqlx::query("UPDATE projection_generations SET name = NULL WHERE name = ?")
            .bind(projection)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn replace_projection(&self, shadow: &str, live: &str) -> Result<(), StoreError> {
        // Two one-row updates, whatever the projections' sizes: the live name moves to the
        // shadow's generation and the old one is retired for `reclaim_projections`.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        for sql in [
            "UPDATE projection_generations SET name = NULL WHERE name = ?2",
            "UPDATE projection_generations SET name = ?2 WHERE name = ?1",
        ] {
            sqlx::query(sql)
                .bind(shadow)
                .bind(live)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn reclaim_projections(&self, limit: u32) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let mut deleted = 0;
        while deleted < u64::from(limit) {
            let Some(generation): Option<i64> = sqlx::query_scalar(
                "SELECT generation FROM projection_generations WHERE name IS NULL LIMIT 1",
            )
            .fetch_optional(&mut *tx)
            .await?
            else {
                break;
            };
            let left = i64::try_from(u64::from(limit) - deleted).unwrap_or(i64::MAX);
            // The key this share ends before, found on the primary key (SQLite's `DELETE`
            // takes no `LIMIT` in the default build).
            let bound: Option<String> = sqlx::query_scalar(
                "SELECT key FROM projection_docs WHERE generation = ? \
                 ORDER BY key LIMIT 1 OFFSET ?",
            )
            .bind(generation)
            .bind(left)
            .fetch_optional(&mut *tx)
            .await?;
            let r = match &bound {
                Some(b) => {
                    sqlx::query("DELETE FROM projection_docs WHERE generation = ? AND key < ?")
                        .bind(generation)
                        .bind(b)
                        .execute(&mut *tx)
                        .await?
                }
                None => {
                    sqlx::query("DELETE FROM projection_docs WHERE generation = ?")
                        .bind(generation)
                        .execute(&mut *tx)
                        .await?
                }
            };
            deleted += r.rows_affected();
            if bound.is_none() {
                sqlx::query("DELETE FROM projection_generations WHERE generation = ?")
                    .bind(generation)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(deleted)
    }

    async fn get_meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar("SELECT value FROM meta WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
            .bind(key)
            .bind(value)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn put_partner(&self, p: &Partner) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO partners (name, state, secret, created_at, expires_at, paired_at, organization) \
             VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET state = excluded.state, \
             secret = excluded.secret, created_at = excluded.created_at, expires_at = excluded.expires_at, \
             paired_at = excluded.paired_at, organization = excluded.organization",
        )
        .bind(&p.name)
        .bind(p.state.as_str())
        .bind(&p.secret[..])
        .bind(p.created_at)
        .bind(p.expires_at)
        .bind(p.paired_at)
        .bind(&p.organization)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn get_partner(&self, name: &str) -> Result<Option<Partner>, StoreError> {
        let rows = self.partner_rows(Some(name)).await?;
        Ok(rows.into_iter().next())
    }

    async fn list_partners(&self) -> Result<Vec<Partner>, StoreError> {
        self.partner_rows(None).await
    }

    async fn outbox_head(&self, partner: &str) -> Result<ChannelHead, StoreError> {
        let head: Option<(i64, Vec<u8>)> = sqlx::query_as(
            "SELECT seq, hash FROM channel_out WHERE partner = ? ORDER BY seq DESC LIMIT 1",
        )
        .bind(partner)
        .fetch_optional(&self.pool)
        .await?;
        head_of(head)
    }

    async fn read_outbox(
        &self,
        partner: &str,
        after: u64,
        limit: u32,
    ) -> Result<Vec<ChannelEntry>, StoreError> {
        let rows: Vec<(i64, Vec<u8>, Vec<u8>, Vec<u8>)> = sqlx::query_as(
            "SELECT seq, prev_hash, hash, body FROM channel_out WHERE partner = ? AND seq > ? ORDER BY seq LIMIT ?",
        )
        .bind(partner)
        .bind(to_i64(after)?)
        .bind(i64::from(limit.min(MAX_READ_BATCH)))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(seq, prev, hash, body)| {
                Ok(ChannelEntry {
                    seq: to_u64(seq, "channel seq")?,
                    prev_hash: hash32(prev, "channel prev_hash")?,
                    hash: hash32(hash, "channel hash")?,
                    body,
                })
            })
            .collect()
    }

    async fn outbox_acked(&self, partner: &str) -> Result<u64, StoreError> {
        let v: Option<i64> =
            sqlx::query_scalar("SELECT seq FROM channel_out_acked WHERE partner = ?")
                .bind(partner)
                .fetch_optional(&self.pool)
                .await?;
        to_u64(v.unwrap_or(0), "acked seq")
    }

    async fn set_outbox_acked(&self, partner: &str, seq: u64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO channel_out_acked (partner, seq) VALUES (?, ?) \
             ON CONFLICT (partner) DO UPDATE SET seq = MAX(seq, excluded.seq)",
        )
        .bind(partner)
        .bind(to_i64(seq)?)
        // A progress marker, not a fact to keep: if a power loss takes it back, the relay
        // publishes those entries again and the receiver drops them as duplicates.
        .execute(&self.projection_pool)
        .await?;
        Ok(())
    }

    async fn inbound_head(&self, partner: &str) -> Result<ChannelHead, StoreError> {
        let head: Option<(i64, Vec<u8>)> =
            sqlx::query_as("SELECT seq, hash FROM channel_in WHERE partner = ?")
                .bind(partner)
                .fetch_optional(&self.pool)
                .await?;
        head_of(head)
    }

    async fn apply_inbound(
        &self,
        from: &str,
        to: &str,
        entry: &ChannelEntry,
        recorded_at: i64,
        batch: Vec<StreamAppend>,
        quarantine: Option<(String, String, Option<String>)>,
    ) -> Result<Inbound, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let head: Option<(i64, Vec<u8>)> =
            sqlx::query_as("SELECT seq, hash FROM channel_in WHERE partner = ?")
                .bind(from)
                .fetch_optional(&mut *tx)
                .await?;
        let head = head_of(head)?;
        if entry.seq <= head.seq {
            return Ok(Inbound::Duplicate);
        }
        if entry.seq > head.seq + 1 {
            return Ok(Inbound::Gap {
                expected: head.seq + 1,
            });
        }
        if entry.prev_hash != head.hash
            || channel_hash(&entry.prev_hash, entry.seq, from, to, &entry.body) != entry.hash
        {
            return Ok(Inbound::BrokenChain);
        }
        let appended = append_in_tx(&mut tx, recorded_at, batch, true).await?.len();
        if let Some((kind, detail, event_id)) = quarantine {
            sqlx::query(
                "INSERT INTO quarantine (partner, seq, event_id, kind, detail, body, received_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(from)
            .bind(to_i64(entry.seq)?)
            .bind(event_id)
            .bind(kind)
            .bind(detail)
            .bind(&entry.body)
            .bind(recorded_at)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "INSERT INTO channel_in (partner, seq, hash) VALUES (?, ?, ?) \
             ON CONFLICT (partner) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
        )
        .bind(from)
        .bind(to_i64(entry.seq)?)
        .bind(&entry.hash[..])
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Inbound::Applied { appended })
    }

    async fn apply_inbound_many(
        &self,
        from: &str,
        to: &str,
        recorded_at: i64,
        items: Vec<(ChannelEntry, Vec<StreamAppend>)>,
    ) -> Result<Vec<Inbound>, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let head: Option<(i64, Vec<u8>)> =
            sqlx::query_as("SELECT seq, hash FROM channel_in WHERE partner = ?")
                .bind(from)
                .fetch_optional(&mut *tx)
                .await?;
        let mut head = head_of(head)?;
        // Check places and chain links in memory, keeping the run of entries that apply;
        // then append all their events with one `append_in_tx` (a handful of statements
        // for the run, not per entry).
        let mut out = Vec::with_capacity(items.len());
        let mut stop = None;
        let mut batch = Vec::new();
        let mut ids: Vec<Vec<Ulid>> = Vec::new();
        for (entry, parts) in items {
            if entry.seq <= head.seq {
                stop = Some(Inbound::Duplicate);
                break;
            }
            if entry.seq > head.seq + 1 {
                stop = Some(Inbound::Gap {
                    expected: head.seq + 1,
                });
                break;
            }
            if entry.prev_hash != head.hash
                || channel_hash(&entry.prev_hash, entry.seq, from, to, &entry.body) != entry.hash
            {
                stop = Some(Inbound::BrokenChain);
                break;
            }
            head = ChannelHead {
                seq: entry.seq,
                hash: entry.hash,
            };
            ids.push(
                parts
                    .iter()
                    .flat_map(|p| p.entries.iter().map(|e| e.event_id))
                    .collect(),
            );
            batch.extend(parts);
        }
        if !ids.is_empty() {
            let written = append_in_tx(&mut tx, recorded_at, batch, true).await?;
            // `written` keeps the order of the input less the events already held: walk
            // both to count what each entry appended.
            let mut k = 0;
            for entry_ids in &ids {
                let mut appended = 0;
                for id in entry_ids {
                    if written.get(k).is_some_and(|w| w.event_id == *id) {
                        appended += 1;
                        k += 1;
                    }
                }
                out.push(Inbound::Applied { appended });
            }
            sqlx::query(
                "INSERT INTO channel_in (partner, seq, hash) VALUES (?, ?, ?) \
                 ON CONFLICT (partner) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
            )
            .bind(from)
            .bind(to_i64(head.seq)?)
            .bind(&head.hash[..])
            .execute(&mut *tx)
            .await?;
        }
        out.extend(stop);
        tx.commit().await?;
        Ok(out)
    }

    async fn quarantine_message(
        &self,
        partner: &str,
        kind: &str,
        detail: &str,
        body: &[u8],
        received_at: i64,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO quarantine (partner, kind, detail, body, received_at) VALUES (?, ?, ?, ?, ?)")
            .bind(partner)
            .bind(kind)
            .bind(detail)
            .bind(body)
            .bind(received_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn list_quarantine(&self) -> Result<Vec<QuarantineRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, partner, seq, event_id, kind, detail, body, received_at FROM quarantine ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(QuarantineRecord {
                    id: r.try_get("id")?,
                    partner: r.try_get("partner")?,
                    seq: r
                        .try_get::<Option<i64>, _>("seq")?
                        .map(|s| to_u64(s, "seq"))
                        .transpose()?,
                    event_id: r.try_get("event_id")?,
                    kind: r.try_get("kind")?,
                    detail: r.try_get("detail")?,
                    body: r.try_get("body")?,
                    received_at: r.try_get("received_at")?,
                })
            })
            .collect()
    }
}

impl SqliteStore {
    async fn partner_rows(&self, name: Option<&str>) -> Result<Vec<Partner>, StoreError> {
        let rows = sqlx::query(
            "SELECT name, state, secret, created_at, expires_at, paired_at, organization FROM partners \
             WHERE ?1 IS NULL OR name = ?1 ORDER BY name",
        )
        .bind(name)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let state: String = r.try_get("state")?;
                Ok(Partner {
                    name: r.try_get("name")?,
                    state: PartnerState::parse(&state)
                        .ok_or_else(|| StoreError::Corrupt(format!("partner state {state:?}")))?,
                    secret: hash32(r.try_get("secret")?, "partner secret")?,
                    created_at: r.try_get("created_at")?,
                    expires_at: r.try_get("expires_at")?,
                    paired_at: r.try_get("paired_at")?,
                    organization: r.try_get("organization")?,
                })
            })
            .collect()
    }
}
