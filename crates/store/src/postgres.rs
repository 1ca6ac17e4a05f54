//! The PostgreSQL backend: the same log, channels and projection storage as SQLite, for
//! sites that want a database server. Every write transaction that touches the log or an
//! outbound channel first locks the single `log_head` row (`SELECT ... FOR UPDATE`), so
//! appends are serialized and positions and channel seqs are assigned in commit order: a
//! reader can never see position N+1 committed while N is still in flight.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::migrate::MigrateDatabase;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{Connection, PgConnection, PgPool, Postgres, Row};
use ticketsync_wire::{channel_hash, EntryHasher, LogEntry, GENESIS_HASH};
use ulid::{Ulid, ULID_LEN};

use crate::channel::{
    ChannelEntry, ChannelHead, Inbound, Outgoing, Partner, PartnerState, QuarantineRecord,
};
use crate::rows::{check_store_schema, hash32, head_of, log_head_of, parse_ulid, to_i64, to_u64};
use crate::{
    DocChange, HashedEntry, HashedVisit, Head, IdColumn, NonCanonicalId, Store, StoreError,
    StreamAppend, MAX_READ_BATCH,
};

/// Connections one process keeps open to the server at most.
pub const MAX_CONNECTIONS: u32 = 8;
/// How long a caller waits for a pooled connection (including connecting to the server)
/// before the store reports the database as unavailable.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// An idle pooled connection is closed after this long.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// The server cancels any single statement running longer than this (milliseconds, as
/// sent in `statement_timeout`); it bounds how long a writer can wait for the head lock.
pub const STATEMENT_TIMEOUT_MS: u64 = 30_000;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// SQLSTATE of "database does not exist".
const INVALID_CATALOG_NAME: &str = "3D000";

#[derive(Clone, Debug)]
pub struct PgStore {
    pool: PgPool,
}

const ENTRY_COLUMNS: &str = "position, event_id, stream_id, version, schema_version, event_type, \
     occurred_at, recorded_at, actor_instance, actor_user, link_seq, payload, prev_hash, hash";

/// Whether a database URL names a PostgreSQL server.
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// The URL without its password (`postgres://user:***@host/db`), for messages and logs.
pub fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}{path}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// Whether an error means the server could not be reached (rather than refusing a query).
fn is_unreachable(e: &sqlx::Error) -> bool {
    matches!(
        e,
        sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
    )
}

fn open_error(url: &str, e: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &e {
        if db.code().as_deref() == Some(INVALID_CATALOG_NAME) {
            return StoreError::NotInitialized(format!(
                "no database at {}; run `ticketsync init --database URL` first",
                redacted(url)
            ));
        }
    }
    if matches!(e, sqlx::Error::PoolTimedOut) {
        return StoreError::Unavailable(format!(
            "PostgreSQL at {} did not answer within {}s",
            redacted(url),
            ACQUIRE_TIMEOUT.as_secs()
        ));
    }
    if is_unreachable(&e) {
        return StoreError::Unavailable(format!(
            "cannot reach PostgreSQL at {}: {e}",
            redacted(url)
        ));
    }
    StoreError::Unavailable(format!("{}: {e}", redacted(url)))
}

/// Maps an error of a running store: an unreachable server is `Unavailable`.
fn db(e: sqlx::Error) -> StoreError {
    if is_unreachable(&e) {
        StoreError::Unavailable(format!("PostgreSQL: {e}"))
    } else {
        StoreError::Db(e)
    }
}

impl PgStore {
    /// Creates the database if the server does not have it yet, and brings its schema up
    /// to date (or refuses a newer one).
    pub async fn create(url: &str) -> Result<Self, StoreError> {
        match Self::open_inner(url).await {
            // Only now go through the server's maintenance database (which the role may
            // not be allowed into): the target itself said it does not exist.
            Err(StoreError::NotInitialized(_)) => {
                tokio::time::timeout(ACQUIRE_TIMEOUT, Postgres::create_database(url))
                    .await
                    .map_err(|_| open_error(url, sqlx::Error::PoolTimedOut))?
                    .map_err(|e| {
                        StoreError::Unavailable(format!(
                            "cannot create the database {}: {e}",
                            redacted(url)
                        ))
                    })?;
                Self::open_inner(url).await
            }
            other => other,
        }
    }

    /// Opens an existing ticketsync database; `NotInitialized` when the server has no such
    /// database or it holds no ticketsync schema.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let store = Self::connect(url).await?;
        let has_meta = store.has_meta().await?;
        if !has_meta || store.get_meta("store_schema").await?.is_none() {
            return Err(StoreError::NotInitialized(format!(
                "{} is not a ticketsync database; run `ticketsync init --database URL` first",
                redacted(url)
            )));
        }
        store.check_schema().await?;
        MIGRATOR.run(&store.pool).await?;
        Ok(store)
    }

    async fn open_inner(url: &str) -> Result<Self, StoreError> {
        let store = Self::connect(url).await?;
        store.check_schema().await?;
        MIGRATOR.run(&store.pool).await?;
        Ok(store)
    }

    async fn connect(url: &str) -> Result<Self, StoreError> {
        let opts = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Unavailable(format!("{}: {e}", redacted(url))))?
            .options([("statement_timeout", STATEMENT_TIMEOUT_MS.to_string())]);
        // One direct connection first: a server that refuses or a missing database fails
        // at once with the real cause, where the pool would retry until its timeout and
        // then report only that it timed out.
        let probe = tokio::time::timeout(ACQUIRE_TIMEOUT, PgConnection::connect_with(&opts))
            .await
            .map_err(|_| open_error(url, sqlx::Error::PoolTimedOut))?
            .map_err(|e| open_error(url, e))?;
        probe.close().await.map_err(|e| open_error(url, e))?;
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .idle_timeout(IDLE_TIMEOUT)
            .connect_with(opts)
            .await
            .map_err(|e| open_error(url, e))?;
        Ok(PgStore { pool })
    }

    async fn has_meta(&self) -> Result<bool, StoreError> {
        let found: Option<i32> = sqlx::query_scalar(
            "SELECT 1 FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_name = 'meta'",
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        Ok(found.is_some())
    }

    /// Refuses a database written by a newer ticketsync before touching it.
    async fn check_schema(&self) -> Result<(), StoreError> {
        if !self.has_meta().await? {
            return Ok(());
        }
        let v: Option<String> =
            sqlx::query_scalar("SELECT value FROM meta WHERE key = 'store_schema'")
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?;
        check_store_schema(v)
    }

    /// The underlying pool, for tests and operator tooling that need raw SQL.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Closes every pooled connection (a later call fails with `Unavailable`).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn begin(&self) -> Result<Tx, StoreError> {
        self.pool.begin().await.map_err(db)
    }
}

fn entry_from_row(r: &PgRow) -> Result<LogEntry, StoreError> {
    let schema: i64 = r.try_get("schema_version")?;
    let link_seq: i64 = r.try_get("link_seq")?;
    Ok(LogEntry {
        position: to_u64(r.try_get("position")?, "position")?,
        event_id: parse_ulid(&r.try_get::<String, _>("event_id")?, "event id")?,
        stream_id: parse_ulid(&r.try_get::<String, _>("stream_id")?, "stream id")?,
        version: to_u64(r.try_get("version")?, "version")?,
        schema_version: u16::try_from(schema)
            .map_err(|_| StoreError::Corrupt(format!("schema version {schema} out of range")))?,
        event_type: r.try_get("event_type")?,
        occurred_at: r.try_get("occurred_at")?,
        recorded_at: r.try_get("recorded_at")?,
        actor_instance: r.try_get("actor_instance")?,
        actor_user: r.try_get("actor_user")?,
        link_seq: u32::try_from(link_seq)
            .map_err(|_| StoreError::Corrupt(format!("link_seq {link_seq} out of range")))?,
        payload: r.try_get("payload")?,
        prev_hash: hash32(r.try_get("prev_hash")?, "prev_hash")?,
        hash: hash32(r.try_get("hash")?, "hash")?,
    })
}

/// What `verify_log` checks of a row: the entry `entry_from_row` reads, hashed with
/// `hasher`, and whether its ids are stored as their canonical text (which `parse_ulid`
/// does not require, and the `LogEntry` no longer shows).
fn hashed_from_row(r: &PgRow, hasher: &mut EntryHasher) -> Result<HashedEntry, StoreError> {
    let e = entry_from_row(r)?;
    let non_canonical = match non_canonical_id(r, IdColumn::EventId, e.event_id)? {
        Some(id) => Some(id),
        None => non_canonical_id(r, IdColumn::StreamId, e.stream_id)?,
    };
    Ok(HashedEntry::of(&e, non_canonical, hasher))
}

/// `column`'s text in `r`, already read as `value`, if it is not `value`'s canonical text.
fn non_canonical_id(
    r: &PgRow,
    column: IdColumn,
    value: Ulid,
) -> Result<Option<NonCanonicalId>, StoreError> {
    let text: &str = r.try_get(column.name())?;
    let text: &[u8; ULID_LEN] = text
        .as_bytes()
        .try_into()
        .map_err(|_| StoreError::Corrupt(format!("{} {text:?} is not a ULID", column.name())))?;
    Ok(NonCanonicalId::check(column, text, value.0))
}

type Tx = sqlx::Transaction<'static, Postgres>;

/// Takes the append lock: the `log_head` row, held until the transaction ends. Every
/// writer of the log or of an outbound channel takes it first, so they run one at a time
/// and each sees the others' committed rows (READ COMMITTED: every later statement in the
/// transaction reads a snapshot taken after the lock was granted).
async fn lock_head(tx: &mut Tx) -> Result<(u64, [u8; 32]), StoreError> {
    let head: Option<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT position, hash FROM log_head WHERE id = 1 FOR UPDATE")
            .fetch_optional(&mut **tx)
            .await
            .map_err(db)?;
    match head {
        Some((p, h)) => Ok((to_u64(p, "head position")?, hash32(h, "head hash")?)),
        None => Err(StoreError::Corrupt(
            "the log_head row is missing (the migrations create it)".into(),
        )),
    }
}

/// Appends within an open transaction that holds the append lock. With `skip_existing`,
/// events whose id the log already holds are left out (an inbound event delivered again).
async fn append_in_tx(
    tx: &mut Tx,
    head: (u64, [u8; 32]),
    recorded_at: i64,
    batch: Vec<StreamAppend>,
    skip_existing: bool,
) -> Result<Vec<LogEntry>, StoreError> {
    let (mut position, mut prev) = head;
    let mut out = Vec::with_capacity(batch.iter().map(|b| b.entries.len()).sum());
    for part in batch {
        let sid = part.stream_id.to_string();
        let cur: Option<i64> =
            sqlx::query_scalar("SELECT version FROM streams WHERE stream_id = $1")
                .bind(&sid)
                .fetch_optional(&mut **tx)
                .await
                .map_err(db)?;
        let mut version = to_u64(cur.unwrap_or(0), "stream version")?;
        if version != part.expected_version {
            // Dropping the transaction rolls it back: nothing of the batch is written.
            return Err(StoreError::Conflict {
                stream_id: part.stream_id,
                expected: part.expected_version,
                actual: version,
            });
        }
        if part.entries.is_empty() {
            continue;
        }
        for new in part.entries {
            if skip_existing {
                let held: Option<i32> =
                    sqlx::query_scalar("SELECT 1 FROM events WHERE event_id = $1")
                        .bind(new.event_id.to_string())
                        .fetch_optional(&mut **tx)
                        .await
                        .map_err(db)?;
                if held.is_some() {
                    continue;
                }
            }
            position += 1;
            version += 1;
            let e = LogEntry::seal(new, position, version, recorded_at, prev);
            sqlx::query(&format!(
                "INSERT INTO events ({ENTRY_COLUMNS}) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
            ))
            .bind(to_i64(e.position)?)
            .bind(e.event_id.to_string())
            .bind(&sid)
            .bind(to_i64(e.version)?)
            .bind(i64::from(e.schema_version))
            .bind(&e.event_type)
            .bind(e.occurred_at)
            .bind(e.recorded_at)
            .bind(&e.actor_instance)
            .bind(&e.actor_user)
            .bind(i64::from(e.link_seq))
            .bind(&e.payload)
            .bind(&e.prev_hash[..])
            .bind(&e.hash[..])
            .execute(&mut **tx)
            .await
            .map_err(db)?;
            prev = e.hash;
            out.push(e);
        }
        sqlx::query(
            "INSERT INTO streams (stream_id, version) VALUES ($1, $2) \
             ON CONFLICT (stream_id) DO UPDATE SET version = excluded.version",
        )
        .bind(&sid)
        .bind(to_i64(version)?)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    }
    if !out.is_empty() {
        sqlx::query("UPDATE log_head SET position = $1, hash = $2 WHERE id = 1")
            .bind(to_i64(position)?)
            .bind(&prev[..])
            .execute(&mut **tx)
            .await
            .map_err(db)?;
    }
    Ok(out)
}

/// Adds outbound channel entries within a transaction that holds the append lock,
/// continuing each partner's chain.
async fn outgoing_in_tx(tx: &mut Tx, outgoing: Vec<Outgoing>) -> Result<(), StoreError> {
    for o in outgoing {
        let head: Option<(i64, Vec<u8>)> = sqlx::query_as(
            "SELECT seq, hash FROM channel_out WHERE partner = $1 ORDER BY seq DESC LIMIT 1",
        )
        .bind(&o.to)
        .fetch_optional(&mut **tx)
        .await
        .map_err(db)?;
        let (seq, prev) = match head {
            Some((s, h)) => (to_u64(s, "channel seq")? + 1, hash32(h, "channel hash")?),
            None => (1, GENESIS_HASH),
        };
        let hash = channel_hash(&prev, seq, &o.from, &o.to, &o.body);
        sqlx::query(
            "INSERT INTO channel_out (partner, seq, event_id, body, prev_hash, hash) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&o.to)
        .bind(to_i64(seq)?)
        .bind(&o.event_id)
        .bind(&o.body)
        .bind(&prev[..])
        .bind(&hash[..])
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    }
    Ok(())
}

#[async_trait]
impl Store for PgStore {
    async fn append_routed(
        &self,
        recorded_at: i64,
        batch: Vec<StreamAppend>,
        outgoing: Vec<Outgoing>,
    ) -> Result<Vec<LogEntry>, StoreError> {
        let mut tx = self.begin().await?;
        let head = lock_head(&mut tx).await?;
        let out = append_in_tx(&mut tx, head, recorded_at, batch, false).await?;
        outgoing_in_tx(&mut tx, outgoing).await?;
        tx.commit().await.map_err(db)?;
        Ok(out)
    }

    async fn stream_version(&self, stream_id: Ulid) -> Result<u64, StoreError> {
        let v: Option<i64> = sqlx::query_scalar("SELECT version FROM streams WHERE stream_id = $1")
            .bind(stream_id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        to_u64(v.unwrap_or(0), "stream version")
    }

    async fn read_stream(
        &self,
        stream_id: Ulid,
        to_position: Option<u64>,
    ) -> Result<Vec<LogEntry>, StoreError> {
        let to = to_i64(to_position.unwrap_or(i64::MAX as u64))?;
        let rows = sqlx::query(&format!(
            "SELECT {ENTRY_COLUMNS} FROM events WHERE stream_id = $1 AND position <= $2 ORDER BY version"
        ))
        .bind(stream_id.to_string())
        .bind(to)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(entry_from_row).collect()
    }

    async fn read_stream_after(
        &self,
        stream_id: Ulid,
        after_version: u64,
    ) -> Result<Vec<LogEntry>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {ENTRY_COLUMNS} FROM events WHERE stream_id = $1 AND version > $2 ORDER BY version"
        ))
        .bind(stream_id.to_string())
        .bind(to_i64(after_version)?)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(entry_from_row).collect()
    }

    async fn read_streams_after(
        &self,
        streams: &[(Ulid, u64)],
    ) -> Result<Vec<Vec<LogEntry>>, StoreError> {
        let ids: Vec<String> = streams.iter().map(|(id, _)| id.to_string()).collect();
        let afters = streams
            .iter()
            .map(|(_, after)| to_i64(*after))
            .collect::<Result<Vec<i64>, StoreError>>()?;
        // One query for all of them; `ord` says which asked stream a row answers (a stream
        // asked twice gets its rows twice).
        let rows = sqlx::query(&format!(
            "SELECT t.ord, {ENTRY_COLUMNS} FROM events \
             JOIN unnest($1::text[], $2::bigint[]) WITH ORDINALITY AS t(sid, past, ord) \
               ON events.stream_id = t.sid AND events.version > t.past \
             ORDER BY t.ord, events.version"
        ))
        .bind(&ids)
        .bind(&afters)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        let mut out: Vec<Vec<LogEntry>> = vec![Vec::new(); streams.len()];
        for r in &rows {
            let ord: i64 = r.try_get("ord").map_err(db)?;
            let slot = usize::try_from(ord - 1)
                .ok()
                .and_then(|i| out.get_mut(i))
                .ok_or_else(|| StoreError::Corrupt(format!("stream read answered {ord}")))?;
            slot.push(entry_from_row(r)?);
        }
        Ok(out)
    }

    async fn streams_with_types(
        &self,
        after: u64,
        to: u64,
        types: &[&str],
    ) -> Result<Vec<Ulid>, StoreError> {
        let types: Vec<String> = types.iter().map(|t| t.to_string()).collect();
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT DISTINCT stream_id FROM events \
             WHERE position > $1 AND position <= $2 AND event_type = ANY($3)",
        )
        .bind(to_i64(after)?)
        .bind(to_i64(to)?)
        .bind(types)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(|(s,)| parse_ulid(s, "stream id")).collect()
    }

    async fn read_log(&self, after: u64, limit: u32) -> Result<Vec<LogEntry>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {ENTRY_COLUMNS} FROM events WHERE position > $1 ORDER BY position LIMIT $2"
        ))
        .bind(to_i64(after)?)
        .bind(i64::from(limit.min(MAX_READ_BATCH)))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(entry_from_row).collect()
    }

    async fn scan_log_hashed(
        &self,
        after: u64,
        upto: Option<u64>,
        visit: &mut HashedVisit<'_>,
    ) -> Result<(), StoreError> {
        let upto = to_i64(upto.unwrap_or(i64::MAX as u64))?;
        let mut hasher = EntryHasher::default();
        let mut hashed = Vec::new();
        let mut from = after;
        loop {
            // Each page is its own query, as `read_log`'s: the walk also sees entries
            // appended while it runs.
            let rows = sqlx::query(&format!(
                "SELECT {ENTRY_COLUMNS} FROM events WHERE position > $1 AND position <= $2 \
                 ORDER BY position LIMIT $3"
            ))
            .bind(to_i64(from)?)
            .bind(upto)
            .bind(i64::from(MAX_READ_BATCH))
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
            hashed.clear();
            for r in &rows {
                hashed.push(hashed_from_row(r, &mut hasher)?);
            }
            let Some(last) = hashed.last() else {
                return Ok(());
            };
            from = last.position;
            if visit(&hashed).is_break() {
                return Ok(());
            }
        }
    }

    async fn head(&self) -> Result<Head, StoreError> {
        let head: Option<(i64, Vec<u8>)> =
            sqlx::query_as("SELECT position, hash FROM log_head WHERE id = 1")
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?;
        log_head_of(head)
    }

    async fn count_entries(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events")
            .fetch_one(&self.pool)
            .await
            .map_err(db)?;
        to_u64(n, "count")
    }

    async fn stream_versions(&self) -> Result<HashMap<Ulid, u64>, StoreError> {
        let rows: Vec<(String, i64)> = sqlx::query_as("SELECT stream_id, version FROM streams")
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.into_iter()
            .map(|(s, v)| Ok((parse_ulid(&s, "stream id")?, to_u64(v, "stream version")?)))
            .collect()
    }

    async fn projection_checkpoint(&self, projection: &str) -> Result<u64, StoreError> {
        let v: Option<i64> =
            sqlx::query_scalar("SELECT position FROM projection_generations WHERE name = $1")
                .bind(projection)
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?;
        to_u64(v.unwrap_or(0), "checkpoint")
    }

    async fn load_docs(
        &self,
        projection: &str,
        keys: &[String],
    ) -> Result<HashMap<String, Vec<u8>>, StoreError> {
        let rows: Vec<(String, Vec<u8>)> = sqlx::query_as(
            "SELECT key, doc FROM projection_docs WHERE generation = \
             (SELECT generation FROM projection_generations WHERE name = $1) AND key = ANY($2)",
        )
        .bind(projection)
        .bind(keys)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(rows.into_iter().collect())
    }

    async fn list_docs(&self, projection: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        // Keys are `COLLATE "C"` (migration 0003): ordered by bytes, as SQLite's default
        // BINARY collation orders them, so digests over documents in key order agree
        // between the backends.
        sqlx::query_as(
            "SELECT key, doc FROM projection_docs WHERE generation = \
             (SELECT generation FROM projection_generations WHERE name = $1) ORDER BY key",
        )
        .bind(projection)
        .fetch_all(&self.pool)
        .await
        .map_err(db)
    }

    async fn list_docs_page(
        &self,
        projection: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        // Two statements rather than `($2 IS NULL OR key > $2)`, so the primary key index
        // seeks to the page's start instead of filtering from the first key on.
        let q = match after {
            Some(after) => sqlx::query_as(
                "SELECT key, doc FROM projection_docs WHERE generation = \
                 (SELECT generation FROM projection_generations WHERE name = $1) \
                 AND key > $2 ORDER BY key LIMIT $3",
            )
            .bind(projection)
            .bind(after),
            None => sqlx::query_as(
                "SELECT key, doc FROM projection_docs WHERE generation = \
                 (SELECT generation FROM projection_generations WHERE name = $1) \
                 ORDER BY key LIMIT $2",
            )
            .bind(projection),
        };
        q.bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(db)
    }

    async fn list_docs_prefix(
        &self,
        projection: &str,
        prefix: &str,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        // Keys are `COLLATE "C"` (migration 0003), so the range compares bytes and the
        // primary key index answers it.
        // Two statements rather than `($3 IS NULL OR key < $3)`, so the index range ends at
        // the prefix's upper bound instead of running to the projection's last key.
        let q = match crate::prefix_upper_bound(prefix) {
            Some(upper) => sqlx::query_as(
                "SELECT key, doc FROM projection_docs WHERE generation = \
                 (SELECT generation FROM projection_generations WHERE name = $1) \
                 AND key >= $2 AND key < $3 ORDER BY key",
            )
            .bind(projection)
            .bind(prefix)
            .bind(upper),
            None => sqlx::query_as(
                "SELECT key, doc FROM projection_docs WHERE generation = \
                 (SELECT generation FROM projection_generations WHERE name = $1) \
                 AND key >= $2 ORDER BY key",
            )
            .bind(projection)
            .bind(prefix),
        };
        q.fetch_all(&self.pool).await.map_err(db)
    }

    async fn commit_projection(
        &self,
        projection: &str,
        from: u64,
        to: u64,
        changes: Vec<DocChange>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        // Make sure the row exists, then lock it: two runners racing from the same
        // checkpoint queue here, and the second sees the first's committed position.
        sqlx::query(
            "INSERT INTO projection_generations (name, position) VALUES ($1, 0) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(projection)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        let (generation, cur): (i64, i64) = sqlx::query_as(
            "SELECT generation, position FROM projection_generations WHERE name = $1 FOR UPDATE",
        )
        .bind(projection)
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
        let cur = to_u64(cur, "checkpoint")?;
        if cur != from {
            return Err(StoreError::CheckpointMoved {
                projection: projection.to_string(),
                expected: from,
                actual: cur,
            });
        }
        for c in changes {
            match c {
                DocChange::Put { key, doc } => {
                    sqlx::query(
                        "INSERT INTO projection_docs (generation, key, doc) VALUES ($1, $2, $3) \
                         ON CONFLICT (generation, key) DO UPDATE SET doc = excluded.doc",
                    )
                    .bind(generation)
                    .bind(key)
                    .bind(doc)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                }
                DocChange::Delete { key } => {
                    sqlx::query("DELETE FROM projection_docs WHERE generation = $1 AND key = $2")
                        .bind(generation)
                        .bind(key)
                        .execute(&mut *tx)
                        .await
                        .map_err(db)?;
                }
            }
        }
        sqlx::query("UPDATE projection_generations SET position = $2 WHERE generation = $1")
            .bind(generation)
            .bind(to_i64(to)?)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(())
    }

    async fn reset_projection(&self, projection: &str) -> Result<(), StoreError> {
        // Retiring the generation drops documents and checkpoint at once;
        // `reclaim_projections` deletes the rows.
        sqlx::query("UPDATE projection_generations SET name = NULL WHERE name = $1")
            .bind(projection)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn replace_projection(&self, shadow: &str, live: &str) -> Result<(), StoreError> {
        // Two one-row updates, whatever the projections' sizes: the live name moves to the
        // shadow's generation and the old one is retired for `reclaim_projections`.
        let mut tx = self.begin().await?;
        for sql in [
            "UPDATE projection_generations SET name = NULL WHERE name = $2",
            "UPDATE projection_generations SET name = $2 WHERE name = $1",
        ] {
            sqlx::query(sql)
                .bind(shadow)
                .bind(live)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        tx.commit().await.map_err(db)?;
        Ok(())
    }

    async fn reclaim_projections(&self, limit: u32) -> Result<u64, StoreError> {
        let mut tx = self.begin().await?;
        let mut deleted = 0;
        while deleted < u64::from(limit) {
            // A generation another reclaimer holds is skipped, not waited for.
            let Some(generation): Option<i64> = sqlx::query_scalar(
                "SELECT generation FROM projection_generations WHERE name IS NULL \
                 LIMIT 1 FOR UPDATE SKIP LOCKED",
            )
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?
            else {
                break;
            };
            let left = u64::from(limit) - deleted;
            let r = sqlx::query(
                "DELETE FROM projection_docs WHERE generation = $1 AND key IN \
                 (SELECT key FROM projection_docs WHERE generation = $1 ORDER BY key LIMIT $2)",
            )
            .bind(generation)
            .bind(i64::try_from(left).unwrap_or(i64::MAX))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            deleted += r.rows_affected();
            if r.rows_affected() < left {
                sqlx::query("DELETE FROM projection_generations WHERE generation = $1")
                    .bind(generation)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
            }
        }
        tx.commit().await.map_err(db)?;
        Ok(deleted)
    }

    async fn get_meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar("SELECT value FROM meta WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)
    }

    async fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn put_partner(&self, p: &Partner) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO partners (name, state, secret, created_at, expires_at, paired_at, organization) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (name) DO UPDATE SET state = excluded.state, \
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
        .await
        .map_err(db)?;
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
            "SELECT seq, hash FROM channel_out WHERE partner = $1 ORDER BY seq DESC LIMIT 1",
        )
        .bind(partner)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        head_of(head)
    }

    async fn read_outbox(
        &self,
        partner: &str,
        after: u64,
        limit: u32,
    ) -> Result<Vec<ChannelEntry>, StoreError> {
        let rows: Vec<(i64, Vec<u8>, Vec<u8>, Vec<u8>)> = sqlx::query_as(
            "SELECT seq, prev_hash, hash, body FROM channel_out \
             WHERE partner = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(partner)
        .bind(to_i64(after)?)
        .bind(i64::from(limit.min(MAX_READ_BATCH)))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
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
            sqlx::query_scalar("SELECT seq FROM channel_out_acked WHERE partner = $1")
                .bind(partner)
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?;
        to_u64(v.unwrap_or(0), "acked seq")
    }

    async fn set_outbox_acked(&self, partner: &str, seq: u64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO channel_out_acked (partner, seq) VALUES ($1, $2) \
             ON CONFLICT (partner) DO UPDATE SET seq = GREATEST(channel_out_acked.seq, excluded.seq)",
        )
        .bind(partner)
        .bind(to_i64(seq)?)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn inbound_head(&self, partner: &str) -> Result<ChannelHead, StoreError> {
        let head: Option<(i64, Vec<u8>)> =
            sqlx::query_as("SELECT seq, hash FROM channel_in WHERE partner = $1")
                .bind(partner)
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?;
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
        let mut tx = self.begin().await?;
        // The append lock also orders inbound applies: two appliers of one channel cannot
        // both find the same entry to be the next one.
        let log_head = lock_head(&mut tx).await?;
        let head: Option<(i64, Vec<u8>)> =
            sqlx::query_as("SELECT seq, hash FROM channel_in WHERE partner = $1")
                .bind(from)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
        let head = head_of(head)?;
        if let Some(refused) = head.refuses(entry, from, to) {
            return Ok(refused);
        }
        let appended = append_in_tx(&mut tx, log_head, recorded_at, batch, true)
            .await?
            .len();
        if let Some((kind, detail, event_id)) = quarantine {
            sqlx::query(
                "INSERT INTO quarantine (partner, seq, event_id, kind, detail, body, received_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(from)
            .bind(to_i64(entry.seq)?)
            .bind(event_id)
            .bind(kind)
            .bind(detail)
            .bind(&entry.body)
            .bind(recorded_at)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        sqlx::query(
            "INSERT INTO channel_in (partner, seq, hash) VALUES ($1, $2, $3) \
             ON CONFLICT (partner) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
        )
        .bind(from)
        .bind(to_i64(entry.seq)?)
        .bind(&entry.hash[..])
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(Inbound::Applied { appended })
    }

    async fn quarantine_message(
        &self,
        partner: &str,
        kind: &str,
        detail: &str,
        body: &[u8],
        received_at: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO quarantine (partner, kind, detail, body, received_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(partner)
        .bind(kind)
        .bind(detail)
        .bind(body)
        .bind(received_at)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn list_quarantine(&self) -> Result<Vec<QuarantineRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, partner, seq, event_id, kind, detail, body, received_at \
             FROM quarantine ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
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

impl PgStore {
    async fn partner_rows(&self, name: Option<&str>) -> Result<Vec<Partner>, StoreError> {
        let rows = sqlx::query(
            "SELECT name, state, secret, created_at, expires_at, paired_at, organization FROM partners \
             WHERE $1::text IS NULL OR name = $1 ORDER BY name COLLATE \"C\"",
        )
        .bind(name)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
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
