//! The SQLite backend: the log, channels and settings in one file in WAL mode with
//! `synchronous=FULL`, so an acknowledged append survives power loss, and the projections
//! in a file of their own (`projections_path`). Writers take the write lock up front
//! (`BEGIN IMMEDIATE`) so that two processes never both read a version and then both try
//! to write; a single event goes in one statement whose trigger re-checks head and version
//! under the lock.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};
use ticketsync_wire::LogEntry;
use ulid::Ulid;

use crate::channel::{
    ChannelEntry, ChannelHead, Inbound, Outgoing, Partner, PartnerState, QuarantineRecord,
};
use crate::log_reader::LogReaders;
use crate::log_writer::LogWriter;
use crate::projection_conn::ProjectionConn;
use crate::rows::{check_store_schema, hash32, head_of, log_head_of, parse_ulid, to_i64, to_u64};
use crate::{DocChange, HashedVisit, Head, Store, StoreError, StreamAppend, MAX_READ_BATCH};

/// How long a writer waits for another process's write lock before giving up.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Page cache of the projection connection, in KiB (SQLite's default is 2,000): a batch
/// writes thousands of documents spread over the tickets it touches, and with the default
/// the pages they land on are read back from the file again and again. 4 MiB: once
/// documents were no longer in a WITHOUT ROWID table (migration 0007) a batch touches far
/// fewer pages, and the 1M-event rebuild ran at 139k events/s with 4 MiB as with 8. 2 MiB:
/// since projections have a file of their own no other connection's commits empty this
/// cache, so in the sync daemon it fills, and 4 MiB raised the daemon's peak RSS.
pub const PROJECTION_CACHE_KIB: u32 = 2 * 1024;
/// Any one retired projection generation, for `reclaim_projections`.
const A_RETIRED_GENERATION: &str =
    "SELECT generation FROM projection_generations WHERE name IS NULL LIMIT 1";
/// Connections kept by one process (SQLite serializes writers anyway).
pub const MAX_CONNECTIONS: u32 = 4;
/// Page cache of each connection in the sqlx pools (SQLite's `cache_size`; negative: KiB).
/// Their reads are short (metadata, markers, checkpoints, a page of documents), the log,
/// the streams and projection commits go through connections of their own, and a
/// connection's cache is emptied anyway whenever another one writes its file. SQLite's
/// default, 2,000 KiB each, let the seven pooled connections hold up to 14 MiB: over 1M
/// replicated events the applying daemon's peak RSS was 59.0-63.1 MiB with it and
/// 54.0-56.3 with 256 KiB (three same-hour pairs), at the same speed.
const POOL_CACHE_KIB: &str = "-256";
/// Rows a query's worker may read ahead of the caller.
pub const ROW_CHANNEL: usize = 1_024;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
/// The projections file's own migrations.
static PROJECTIONS_MIGRATOR: sqlx::migrate::Migrator =
    sqlx::migrate!("./migrations/sqlite-projections");
/// Connections to the projections file kept besides the projection connection: checkpoint
/// reads, renames and reclaiming are short and rare.
pub const DOCS_CONNECTIONS: u32 = 2;

#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// One connection with `synchronous=NORMAL` for the relay's acknowledged-up-to marker,
    /// which only saves republishing: a power loss may take back its latest value, never a
    /// log entry, which is committed with `synchronous=FULL` on `pool`.
    marker_pool: SqlitePool,
    /// The projections file (`projections_path`): projection checkpoints, renames and
    /// reclaiming, with `synchronous=NORMAL`.
    docs_pool: SqlitePool,
    /// Appends and inbound entries, which bypass sqlx: see `log_writer`. Set once the
    /// migrations have run.
    writer: Arc<LogWriter>,
    /// The log's readers (`read_log`, `scan_log`), which bypass sqlx: see `log_reader`.
    readers: Arc<LogReaders>,
    /// The same kind of readers over the projections file (`list_docs_page`).
    doc_readers: Arc<LogReaders>,
    /// Projection loads and commits on the projections file, which bypass sqlx: see
    /// `projection_conn`. It commits with `synchronous=NORMAL`: projections are derived
    /// from the log and carry their checkpoint, so a power loss may take back the latest
    /// projection commits (the runner redoes them from the checkpoint it finds) but never a
    /// log entry. A projection only reads entries committed with `synchronous=FULL`, so it
    /// can never be ahead of the log it was computed from (`retire_ahead_of` handles a
    /// database file restored from an older copy).
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
            .pragma("cache_size", POOL_CACHE_KIB)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .connect_with(opts.clone())
            .await
            .map_err(|e| StoreError::Unavailable(format!("{}: {e}", path.display())))?;
        check_schema(&pool).await?;
        MIGRATOR.run(&pool).await?;
        let marker_pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts.synchronous(SqliteSynchronous::Normal))
            .await
            .map_err(|e| StoreError::Unavailable(format!("{}: {e}", path.display())))?;
        let docs_path = Self::projections_path(path);
        let docs_opts =
            SqliteConnectOptions::from_str(&format!("sqlite://{}", docs_path.display()))
                .map_err(|e| StoreError::Unavailable(e.to_string()))?
                // Derived data: a missing file is created and caught up from the log.
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(BUSY_TIMEOUT)
                .row_buffer_size(ROW_CHANNEL)
                .pragma("cache_size", POOL_CACHE_KIB);
        let docs_pool = SqlitePoolOptions::new()
            .max_connections(DOCS_CONNECTIONS)
            .connect_with(docs_opts)
            .await
            .map_err(|e| StoreError::Unavailable(format!("{}: {e}", docs_path.display())))?;
        PROJECTIONS_MIGRATOR.run(&docs_pool).await?;
        if has_table(&pool, "projection_generations").await? {
            move_projections(path, &docs_path).await?;
        }
        let head = read_head(&pool).await?;
        retire_ahead_of(&docs_pool, head.position).await?;
        Ok(SqliteStore {
            pool,
            marker_pool,
            docs_pool,
            writer: Arc::new(LogWriter::new(path, head)?),
            readers: Arc::new(LogReaders::new(path)),
            doc_readers: Arc::new(LogReaders::new(&docs_path)),
            projections: Arc::new(ProjectionConn::new(&docs_path)?),
        })
    }

    /// The projections file that goes with the database file `db`: `ticketsync.db` keeps
    /// its projections in `ticketsync.projections.db`.
    pub fn projections_path(db: &Path) -> PathBuf {
        db.with_extension("projections.db")
    }

    /// The projections file's pool, for tests and operator tooling that need raw SQL.
    pub fn projections_pool(&self) -> &SqlitePool {
        &self.docs_pool
    }

    /// What the background checkpointers have done: the database file's, then the
    /// projections file's.
    pub fn checkpoint_stats(&self) -> (crate::CheckpointStats, crate::CheckpointStats) {
        (
            self.writer.checkpoint_stats(),
            self.projections.checkpoint_stats(),
        )
    }

    /// The underlying pool, for tests and operator tooling that need raw SQL.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

/// Refuses a database written by a newer ticketsync before touching it.
async fn check_schema(pool: &SqlitePool) -> Result<(), StoreError> {
    if !has_table(pool, "meta").await? {
        return Ok(());
    }
    let v: Option<String> = sqlx::query_scalar("SELECT value FROM meta WHERE key = 'store_schema'")
        .fetch_optional(pool)
        .await?;
    check_store_schema(v)
}

/// Store schema 6: moves the projection tables of an older database file into its
/// projections file and drops them from the database file, which then says schema 6 (or
/// the later number its own migrations, which run first, gave it).
///
/// The two files commit apart (a transaction over attached WAL databases is atomic per
/// file only), and either order of a crash between them is safe: rows already in the
/// projections file are not copied again, and projections lost on the way are derived data
/// that the next catch-up recomputes from the log.
async fn move_projections(db: &Path, docs: &Path) -> Result<(), StoreError> {
    use sqlx::Connection;
    let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", db.display()))
        .map_err(|e| StoreError::Unavailable(e.to_string()))?
        .busy_timeout(BUSY_TIMEOUT);
    let mut c = sqlx::SqliteConnection::connect_with(&opts)
        .await
        .map_err(|e| StoreError::Unavailable(format!("{}: {e}", db.display())))?;
    sqlx::query("ATTACH DATABASE ? AS p")
        .bind(docs.to_string_lossy().as_ref())
        .execute(&mut c)
        .await?;
    let mut tx = c.begin_with("BEGIN IMMEDIATE").await?;
    // Looked at again under the write lock: another process may have moved them meanwhile.
    if has_table(&mut *tx, "projection_generations").await? {
        let moved: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM p.projection_generations LIMIT 1")
                .fetch_optional(&mut *tx)
                .await?;
        if moved.is_none() {
            for sql in [
                "INSERT INTO p.projection_generations (generation, name, position) \
                 SELECT generation, name, position FROM main.projection_generations",
                "INSERT INTO p.projection_docs (generation, key, doc) \
                 SELECT generation, key, doc FROM main.projection_docs ORDER BY generation, key",
                // Generation numbers stay never reused: retired ones already deleted count.
                "UPDATE p.sqlite_sequence SET seq = MAX(seq, (SELECT seq FROM main.sqlite_sequence \
                 WHERE name = 'projection_generations')) WHERE name = 'projection_generations'",
                // Store schemas 7 to 9 (the projections file's migrations 0002 to 0004,
                // which ran before these rows arrived): the ticket projection was written
                // with history chunks and item documents, so it comes along retired and
                // starts over from the log.
                "UPDATE p.projection_generations SET name = NULL WHERE name = 'tickets'",
            ] {
                sqlx::query(sql).execute(&mut *tx).await?;
            }
        }
        for sql in [
            "DROP TABLE main.projection_docs",
            "DROP TABLE main.projection_generations",
            // The database file's migrations ran first and may have moved it further.
            "UPDATE main.meta SET value = '6' WHERE key = 'store_schema' \
             AND CAST(value AS INTEGER) < 6",
        ] {
            sqlx::query(sql).execute(&mut *tx).await?;
        }
    }
    tx.commit().await?;
    sqlx::query("DETACH DATABASE p").execute(&mut c).await?;
    c.close().await?;
    Ok(())
}

/// Whether the database file (the main one, where others are attached) has a table of
/// that name.
async fn has_table<'c>(on: impl sqlx::SqliteExecutor<'c>, name: &str) -> Result<bool, StoreError> {
    let found: Option<i64> =
        sqlx::query_scalar("SELECT 1 FROM main.sqlite_master WHERE type = 'table' AND name = ?")
            .bind(name)
            .fetch_optional(on)
            .await?;
    Ok(found.is_some())
}

/// Retires every projection generation whose checkpoint lies beyond the log's head: its
/// documents describe entries this log does not have (a database file restored from an
/// older copy than its projections file), so the projection starts over from the log.
async fn retire_ahead_of(docs: &SqlitePool, head: u64) -> Result<(), StoreError> {
    // Looked for first: opening the store should not wait for the projections file's write
    // lock, which a running daemon holds often, only to find nothing to retire.
    let ahead: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM projection_generations WHERE name IS NOT NULL AND position > ? LIMIT 1",
    )
    .bind(to_i64(head)?)
    .fetch_optional(docs)
    .await?;
    if ahead.is_none() {
        return Ok(());
    }
    let r = sqlx::query(
        "UPDATE projection_generations SET name = NULL WHERE name IS NOT NULL AND position > ?",
    )
    .bind(to_i64(head)?)
    .execute(docs)
    .await?;
    if r.rows_affected() > 0 {
        tracing::warn!(
            head,
            retired = r.rows_affected(),
            "projections were ahead of the log's head; they start over from the log"
        );
    }
    Ok(())
}

/// The recorded head of the log (position 0 and the genesis hash when it is empty).
async fn read_head(pool: &SqlitePool) -> Result<Head, StoreError> {
    let head: Option<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT position, hash FROM log_head WHERE id = 1")
            .fetch_optional(pool)
            .await?;
    log_head_of(head)
}

#[async_trait]
impl Store for SqliteStore {
    async fn append_routed(
        &self,
        recorded_at: i64,
        batch: Vec<StreamAppend>,
        outgoing: Vec<Outgoing>,
    ) -> Result<Vec<LogEntry>, StoreError> {
        self.writer.append(recorded_at, batch, outgoing).await
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

    async fn read_streams_after(
        &self,
        streams: &[(Ulid, u64)],
    ) -> Result<Vec<Vec<LogEntry>>, StoreError> {
        self.readers.read_streams(streams.to_vec()).await
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
        read_head(&self.pool).await
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
                .fetch_optional(&self.docs_pool)
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
        .fetch_all(&self.docs_pool)
        .await?)
    }

    async fn list_docs_page(
        &self,
        projection: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.doc_readers.docs_page(projection, after, limit).await
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
            .execute(&self.docs_pool)
            .await?;
        Ok(())
    }

    async fn replace_projection(&self, shadow: &str, live: &str) -> Result<(), StoreError> {
        // Two one-row updates, whatever the projections' sizes: the live name moves to the
        // shadow's generation and the old one is retired for `reclaim_projections`.
        let mut tx = self.docs_pool.begin_with("BEGIN IMMEDIATE").await?;
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
        // Nothing retired is the usual case (the sync daemon asks every housekeeping round):
        // answered by a read, without taking the write lock the projection commits need.
        let retired: Option<i64> = sqlx::query_scalar(A_RETIRED_GENERATION)
            .fetch_optional(&self.docs_pool)
            .await?;
        if retired.is_none() {
            return Ok(0);
        }
        let mut tx = self.docs_pool.begin_with("BEGIN IMMEDIATE").await?;
        let mut deleted = 0;
        while deleted < u64::from(limit) {
            let Some(generation): Option<i64> = sqlx::query_scalar(A_RETIRED_GENERATION)
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
        .execute(&self.marker_pool)
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
        self.writer
            .apply_inbound(from, to, entry, recorded_at, batch, quarantine)
            .await
    }

    async fn apply_inbound_many(
        &self,
        from: &str,
        to: &str,
        recorded_at: i64,
        items: Vec<(ChannelEntry, Vec<StreamAppend>)>,
    ) -> Result<Vec<Inbound>, StoreError> {
        self.writer
            .apply_inbound_many(from, to, recorded_at, items)
            .await
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
