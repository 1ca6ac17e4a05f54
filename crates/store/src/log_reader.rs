//! The SQLite backend's bulk readers: `read_log`, `scan_log` and pages of projection
//! documents over rusqlite connections that only read, decoding each row straight from
//! SQLite's column buffers.
//!
//! Why not sqlx here: its SQLite driver copies every column value of every row into its own
//! allocation on a worker thread and hands rows over a channel one at a time; profiling
//! `verify` showed that (malloc/free, futex wake-ups, row drops) as nearly all of the time,
//! and the SHA-256 chain itself under 1%. Everything else in the backend stays on sqlx;
//! the log is append-only and each read here is its own read transaction, so these
//! connections see exactly what the pool's would.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, Row};
use ticketsync_wire::{EntryFields, EntryHasher, LogEntry};
use ulid::{Ulid, ULID_LEN};

use crate::rows::{hash32_of, to_i64, to_u64};
use crate::sqlite::{BUSY_TIMEOUT, ENTRY_COLUMNS};
use crate::{HashedEntry, HashedVisit, IdColumn, NonCanonicalId, StoreError, MAX_READ_BATCH};

/// Entries per batch of a scan: a few hundred kilobytes, so the batch the reader has just
/// filled is still in the cache when the caller checks it, and handing it over (a channel
/// message) costs nothing per entry.
pub const SCAN_BATCH: u32 = 1_024;
/// Batches a scan reads ahead of its caller.
pub const SCAN_AHEAD: usize = 4;
/// How much of the database file a scan maps into memory (SQLite caps it at its build's
/// maximum, 2 GiB by default; the part beyond is read with system calls).
const SCAN_MMAP_BYTES: i64 = 1 << 31;
/// Idle reader connections kept for reuse.
const IDLE_READERS: usize = 4;
/// Page cache of each reader connection, in KiB (SQLite's default is 2,000).
pub const READER_CACHE_KIB: u32 = 256;

/// Reader connections to one database file, opened on demand and kept for reuse.
#[derive(Debug)]
pub(crate) struct LogReaders {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl LogReaders {
    pub(crate) fn new(path: &Path) -> Self {
        LogReaders {
            path: path.to_path_buf(),
            idle: Mutex::new(Vec::new()),
        }
    }

    fn take(&self) -> Result<Connection, StoreError> {
        // A panic elsewhere while the list was held leaves it as it was: still usable.
        if let Some(c) = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop() {
            return Ok(c);
        }
        self.open()
    }

    fn open(&self) -> Result<Connection, StoreError> {
        // Opened for reading and writing (a reader of a WAL database needs its shared-memory
        // index, which a read-only open may be unable to create), then refused every write.
        // Each read is one pass (a log batch, one stream): the kernel's page cache serves
        // it as well, and a daemon keeps several readers, whose 2 MB default caches filled
        // with pages of long-gone reads counted against its memory.
        let c = open_connection(&self.path, READER_CACHE_KIB)?;
        c.pragma_update(None, "query_only", true)?;
        Ok(c)
    }

    fn give_back(&self, c: Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < IDLE_READERS {
            idle.push(c);
        }
    }

    /// Runs `f` with a reader connection on a blocking thread.
    async fn with_reader<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let me = Arc::clone(self);
        joined(
            tokio::task::spawn_blocking(move || {
                let conn = me.take()?;
                let out = f(&conn);
                me.give_back(conn);
                out
            })
            .await,
        )
    }

    /// Up to `limit` (at most [`MAX_READ_BATCH`]) entries after position `after`.
    pub(crate) async fn read_log(
        self: &Arc<Self>,
        after: u64,
        limit: u32,
    ) -> Result<Vec<LogEntry>, StoreError> {
        self.with_reader(move |conn| {
            let mut out = Vec::new();
            read_into(conn, after, i64::MAX, limit.min(MAX_READ_BATCH), &mut out)?;
            Ok(out)
        })
        .await
    }

    /// One stream's entries with a version above `after_version` and a position up to
    /// `to_position`, in version order: what a command or the inbound applier folds on a
    /// snapshot miss. Through sqlx every row was a hand-off between threads.
    pub(crate) async fn read_stream(
        self: &Arc<Self>,
        stream_id: Ulid,
        after_version: u64,
        to_position: u64,
    ) -> Result<Vec<LogEntry>, StoreError> {
        let (after, to) = (to_i64(after_version)?, to_i64(to_position)?);
        self.with_reader(move |conn| stream_tail(conn, stream_id, after, to))
            .await
    }

    /// Several streams' tails (see `Store::read_streams_after`) on one reader, in one
    /// hand-off: the inbound applier misses the snapshot cache on most tickets of a run,
    /// and a hand-off per ticket cost more waiting for a thread than reading.
    pub(crate) async fn read_streams(
        self: &Arc<Self>,
        streams: Vec<(Ulid, u64)>,
    ) -> Result<Vec<Vec<LogEntry>>, StoreError> {
        let asked = streams
            .into_iter()
            .map(|(id, after)| Ok((id, to_i64(after)?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.with_reader(move |conn| {
            // One read transaction, so every tail comes from the same snapshot of the log.
            conn.execute_batch("BEGIN")?;
            let out = asked
                .into_iter()
                .map(|(id, after)| stream_tail(conn, id, after, i64::MAX))
                .collect::<Result<Vec<_>, StoreError>>();
            conn.execute_batch("COMMIT")?;
            out
        })
        .await
    }

    /// Up to `limit` projection documents with keys after `after` (from the first with
    /// `None`), in key order: a page of a walk over a whole projection (`digest`), which
    /// through sqlx cost as much per document as the log did per entry.
    pub(crate) async fn docs_page(
        self: &Arc<Self>,
        projection: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let projection = projection.to_string();
        let after = after.map(str::to_string);
        self.with_reader(move |conn| {
            // Two statements rather than `(? IS NULL OR key > ?)`, which would keep SQLite
            // from seeking the primary key to the page's start.
            let mut st = match &after {
                Some(_) => conn.prepare_cached(
                    "SELECT key, doc FROM projection_docs WHERE generation = \
                     (SELECT generation FROM projection_generations WHERE name = ?1) \
                     AND key > ?2 ORDER BY key LIMIT ?3",
                )?,
                None => conn.prepare_cached(
                    "SELECT key, doc FROM projection_docs WHERE generation = \
                     (SELECT generation FROM projection_generations WHERE name = ?1) \
                     ORDER BY key LIMIT ?2",
                )?,
            };
            let limit = i64::from(limit);
            let mut rows = match &after {
                Some(a) => st.query(rusqlite::params![projection, a, limit])?,
                None => st.query(rusqlite::params![projection, limit])?,
            };
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                out.push((text(r, 0, "key")?.to_string(), bytes(r, 1, "doc")?.to_vec()));
            }
            Ok(out)
        })
        .await
    }

    /// `Store::scan_log`: every entry after `after`, as [`LogEntry`]s.
    pub(crate) async fn scan_entries(
        self: &Arc<Self>,
        after: u64,
        visit: &mut (dyn for<'e> FnMut(&'e [LogEntry]) -> ControlFlow<()> + Send),
    ) -> Result<(), StoreError> {
        self.scan(after, None, read_into, visit).await
    }

    /// `Store::scan_log_hashed`: the entries in `(after, upto]`, each hashed straight from
    /// its row's column values (no `LogEntry` built: profiling `verify` showed copying
    /// every string and payload out of SQLite's buffers, and checking each column's type
    /// for it, as a third of the reader's time).
    pub(crate) async fn scan_hashed(
        self: &Arc<Self>,
        after: u64,
        upto: Option<u64>,
        visit: &mut HashedVisit<'_>,
    ) -> Result<(), StoreError> {
        let mut hasher = EntryHasher::default();
        let read = move |conn: &Connection, after, upto, limit, out: &mut Vec<HashedEntry>| {
            read_hashed(conn, after, upto, limit, out, &mut hasher)
        };
        self.scan(after, upto, read, visit).await
    }

    /// A scan over positions `(after, upto]`: a blocking thread reads batch after batch
    /// with `read` (each its own query; it reads up to a limit of entries after a position
    /// and up to another into a batch, overwriting what the batch held), while `visit`
    /// works on the previous batch, so reading (and whatever `read` does with each row,
    /// such as hashing it while it is in the cache) and checking overlap, and
    /// `verify_log`'s scans of several ranges at once read on as many threads; batches the
    /// caller is done with go back to the reader to be filled again.
    async fn scan<T, R>(
        self: &Arc<Self>,
        after: u64,
        upto: Option<u64>,
        mut read: R,
        visit: &mut (dyn for<'e> FnMut(&'e [T]) -> ControlFlow<()> + Send),
    ) -> Result<(), StoreError>
    where
        T: Positioned + Send + 'static,
        R: FnMut(&Connection, u64, i64, u32, &mut Vec<T>) -> Result<(), StoreError>
            + Send
            + 'static,
    {
        let (ahead, mut batches) = tokio::sync::mpsc::channel(SCAN_AHEAD);
        let (done, recycled) = mpsc::channel::<Vec<T>>();
        let me = Arc::clone(self);
        let upto = match upto {
            Some(u) => to_i64(u)?,
            None => i64::MAX,
        };
        let reader = tokio::task::spawn_blocking(move || {
            // A connection of its own, with the file memory-mapped: pages are read in place
            // instead of copied in by a system call each (the kernel's copying was an eighth
            // of the reader's time). It is closed at the end, which unmaps the file, so the
            // pooled readers (a daemon's) never hold mapped pages.
            let conn = match me.open().and_then(|c| {
                c.pragma_update(None, "mmap_size", SCAN_MMAP_BYTES)?;
                Ok(c)
            }) {
                Ok(c) => c,
                Err(e) => {
                    let _ = ahead.blocking_send(Err(e));
                    return Ok(());
                }
            };
            let mut from = after;
            loop {
                let mut batch = recycled.try_recv().unwrap_or_default();
                if let Err(e) = read(&conn, from, upto, SCAN_BATCH, &mut batch) {
                    let _ = ahead.blocking_send(Err(e));
                    break;
                }
                let Some(last) = batch.last() else {
                    break;
                };
                from = last.position();
                // Fails only when the caller has stopped listening.
                if ahead.blocking_send(Ok(batch)).is_err() {
                    break;
                }
            }
            Ok(())
        });
        let mut outcome = Ok(());
        while let Some(next) = batches.recv().await {
            match next {
                Ok(batch) => {
                    let flow = visit(&batch);
                    // The reader may have finished and gone: then the batch is just freed.
                    let _ = done.send(batch);
                    if flow.is_break() {
                        break;
                    }
                }
                Err(e) => {
                    outcome = Err(e);
                    break;
                }
            }
        }
        // A reader still reading ahead stops at its next hand-over; wait for it, so that
        // nothing of this scan runs on after it returns.
        drop(batches);
        joined(reader.await)?;
        outcome
    }
}

/// What a scan hands over: it goes on after the position of the last one.
trait Positioned {
    fn position(&self) -> u64;
}

impl Positioned for LogEntry {
    fn position(&self) -> u64 {
        self.position
    }
}

impl Positioned for HashedEntry {
    fn position(&self) -> u64 {
        self.position
    }
}

/// The outcome of a blocking task: a panic in it goes on in the caller.
fn joined<T>(r: Result<Result<T, StoreError>, tokio::task::JoinError>) -> Result<T, StoreError> {
    match r {
        Ok(v) => v,
        Err(e) => match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            // Blocking tasks are never aborted: only a runtime shutting down cancels one.
            Err(e) => Err(StoreError::Unavailable(format!("log reader: {e}"))),
        },
    }
}

/// A rusqlite connection to the database file outside sqlx's pool (the readers', the
/// projection connection), with the store's busy timeout and a page cache of `cache_kib`.
pub(crate) fn open_connection(path: &Path, cache_kib: u32) -> Result<Connection, StoreError> {
    let c = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| StoreError::Unavailable(format!("{}: {e}", path.display())))?;
    c.busy_timeout(BUSY_TIMEOUT)?;
    c.pragma_update(None, "cache_size", -i64::from(cache_kib))?;
    Ok(c)
}

/// Reads up to `limit` entries with positions in `(after, upto]` into `out`, overwriting
/// the entries it already holds (their strings and buffers keep their memory) and dropping
/// the rest.
fn read_into(
    conn: &Connection,
    after: u64,
    upto: i64,
    limit: u32,
    out: &mut Vec<LogEntry>,
) -> Result<(), StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {ENTRY_COLUMNS} FROM events WHERE position > ?1 AND position <= ?2 \
         ORDER BY position LIMIT ?3"
    ))?;
    let mut rows = stmt.query((to_i64(after)?, upto, i64::from(limit)))?;
    let mut n = 0;
    while let Some(row) = rows.next()? {
        if n == out.len() {
            out.push(empty_entry());
        }
        fill(row, &mut out[n])?;
        n += 1;
    }
    out.truncate(n);
    Ok(())
}

/// Reads up to `limit` entries with positions in `(after, upto]` into `out` (replacing
/// what it held) as what `verify_log` checks of them, each hashed with `hasher` from its
/// column values in place. Every column is type-checked and converted as [`fill`] does for
/// a `LogEntry`, so a row reads as corrupt here exactly when it does there; the ids' text,
/// which `fill` accepts in any form that decodes, is also compared with the canonical text
/// of its value.
fn read_hashed(
    conn: &Connection,
    after: u64,
    upto: i64,
    limit: u32,
    out: &mut Vec<HashedEntry>,
    hasher: &mut EntryHasher,
) -> Result<(), StoreError> {
    out.clear();
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {ENTRY_COLUMNS} FROM events WHERE position > ?1 AND position <= ?2 \
         ORDER BY position LIMIT ?3"
    ))?;
    let mut rows = stmt.query((to_i64(after)?, upto, i64::from(limit)))?;
    while let Some(r) = rows.next()? {
        let position = to_u64(int(r, 0, "position")?, "position")?;
        let (event_id, event_text) = ulid_text(r, 1, "event_id")?;
        let (stream_id, stream_text) = ulid_text(r, 2, "stream_id")?;
        let non_canonical = NonCanonicalId::check(IdColumn::EventId, event_text, event_id)
            .or_else(|| NonCanonicalId::check(IdColumn::StreamId, stream_text, stream_id));
        let version = to_u64(int(r, 3, "version")?, "version")?;
        let prev_hash = hash32_of(bytes(r, 12, "prev_hash")?, "prev_hash")?;
        let computed = hasher.hash(&EntryFields {
            prev_hash: &prev_hash,
            position,
            event_id,
            stream_id,
            version,
            schema_version: schema_version(r)?,
            event_type: text(r, 5, "event_type")?,
            occurred_at: int(r, 6, "occurred_at")?,
            recorded_at: int(r, 7, "recorded_at")?,
            actor_instance: text(r, 8, "actor_instance")?,
            actor_user: text(r, 9, "actor_user")?,
            link_seq: link_seq(r)?,
            payload: bytes(r, 11, "payload")?,
        });
        out.push(HashedEntry {
            position,
            stream_id: Ulid(stream_id),
            version,
            prev_hash,
            hash: hash32_of(bytes(r, 13, "hash")?, "hash")?,
            computed,
            non_canonical,
        });
    }
    Ok(())
}

/// One stream's events with a version above `after` and a position up to `to`, in
/// version order.
fn stream_tail(
    conn: &Connection,
    stream_id: Ulid,
    after: i64,
    to: i64,
) -> Result<Vec<LogEntry>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {ENTRY_COLUMNS} FROM events \
         WHERE stream_id = ?1 AND version > ?2 AND position <= ?3 ORDER BY version"
    ))?;
    let mut rows = stmt.query((stream_id.to_string(), after, to))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let mut e = empty_entry();
        fill(row, &mut e)?;
        out.push(e);
    }
    Ok(out)
}

fn empty_entry() -> LogEntry {
    LogEntry {
        position: 0,
        event_id: Ulid::nil(),
        stream_id: Ulid::nil(),
        version: 0,
        schema_version: 0,
        event_type: String::new(),
        occurred_at: 0,
        recorded_at: 0,
        actor_instance: String::new(),
        actor_user: String::new(),
        link_seq: 0,
        payload: Vec::new(),
        prev_hash: [0; 32],
        hash: [0; 32],
    }
}

/// One row, in `ENTRY_COLUMNS` order, into `e`.
fn fill(r: &Row<'_>, e: &mut LogEntry) -> Result<(), StoreError> {
    e.position = to_u64(int(r, 0, "position")?, "position")?;
    e.event_id = Ulid(ulid(r, 1, "event_id")?);
    e.stream_id = Ulid(ulid(r, 2, "stream_id")?);
    e.version = to_u64(int(r, 3, "version")?, "version")?;
    e.schema_version = schema_version(r)?;
    set(&mut e.event_type, text(r, 5, "event_type")?);
    e.occurred_at = int(r, 6, "occurred_at")?;
    e.recorded_at = int(r, 7, "recorded_at")?;
    set(&mut e.actor_instance, text(r, 8, "actor_instance")?);
    set(&mut e.actor_user, text(r, 9, "actor_user")?);
    e.link_seq = link_seq(r)?;
    e.payload.clear();
    e.payload.extend_from_slice(bytes(r, 11, "payload")?);
    e.prev_hash = hash32_of(bytes(r, 12, "prev_hash")?, "prev_hash")?;
    e.hash = hash32_of(bytes(r, 13, "hash")?, "hash")?;
    Ok(())
}

fn schema_version(r: &Row<'_>) -> Result<u16, StoreError> {
    let schema = int(r, 4, "schema_version")?;
    u16::try_from(schema)
        .map_err(|_| StoreError::Corrupt(format!("schema version {schema} out of range")))
}

fn link_seq(r: &Row<'_>) -> Result<u32, StoreError> {
    let link_seq = int(r, 10, "link_seq")?;
    u32::try_from(link_seq)
        .map_err(|_| StoreError::Corrupt(format!("link_seq {link_seq} out of range")))
}

/// A ULID column's value: what [`parse_ulid`] makes of its text, decoded from the
/// column's bytes by [`decode_ulid`] (two per row: `Ulid::from_string` and the UTF-8
/// check before it were 6% of `verify`'s profile).
fn ulid(r: &Row<'_>, i: usize, column: &str) -> Result<u128, StoreError> {
    ulid_text(r, i, column).map(|(value, _)| value)
}

/// A ULID column's value, as [`ulid`] reads it, and the text it was decoded from.
fn ulid_text<'r>(
    r: &'r Row<'_>,
    i: usize,
    column: &str,
) -> Result<(u128, &'r [u8; ULID_LEN]), StoreError> {
    match r.get_ref(i)? {
        ValueRef::Text(b) => b
            .try_into()
            .ok()
            .and_then(|text: &[u8; ULID_LEN]| Some((decode_ulid(text)?, text)))
            .ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "{column} {:?} is not a ULID",
                    String::from_utf8_lossy(b)
                ))
            }),
        other => Err(wrong_type(column, "text", other)),
    }
}

/// Crockford base32 digit values, 0 to 31, of both cases; `NOT_A_DIGIT` elsewhere.
const DIGITS: [u8; 256] = {
    let mut t = [NOT_A_DIGIT; 256];
    let alphabet = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let mut i = 0;
    while i < alphabet.len() {
        t[alphabet[i] as usize] = i as u8;
        t[alphabet[i].to_ascii_lowercase() as usize] = i as u8;
        i += 1;
    }
    t
};
const NOT_A_DIGIT: u8 = 0xff;

/// The value of a ULID's text: exactly what `Ulid::from_string` accepts and returns (26
/// digits of either case; as there, the bits of a first digit above 7 that do not fit
/// in 128 are dropped), `None` for anything else. Twelve digits are gathered in 64 bits
/// at a time rather than every digit shifted into 128.
fn decode_ulid(text: &[u8]) -> Option<u128> {
    let digits: &[u8; 26] = text.try_into().ok()?;
    let mut seen = 0u8;
    let mut value = |from: usize, to: usize| {
        digits[from..to].iter().fold(0u64, |v, &c| {
            let d = DIGITS[usize::from(c)];
            seen |= d;
            (v << 5) | u64::from(d & 31)
        })
    };
    let top = value(0, 2);
    let mid = value(2, 14);
    let low = value(14, 26);
    // A digit is at most 31: any other bit means a byte that is not one.
    (seen < 32).then(|| (u128::from(top) << 120) | (u128::from(mid) << 60) | u128::from(low))
}

fn set(s: &mut String, v: &str) {
    s.clear();
    s.push_str(v);
}

fn int(r: &Row<'_>, i: usize, column: &str) -> Result<i64, StoreError> {
    match r.get_ref(i)? {
        ValueRef::Integer(v) => Ok(v),
        other => Err(wrong_type(column, "an integer", other)),
    }
}

fn text<'r>(r: &'r Row<'_>, i: usize, column: &str) -> Result<&'r str, StoreError> {
    match r.get_ref(i)? {
        ValueRef::Text(b) => std::str::from_utf8(b)
            .map_err(|_| StoreError::Corrupt(format!("column {column} is not UTF-8"))),
        other => Err(wrong_type(column, "text", other)),
    }
}

/// A BLOB column's bytes (text is taken as its bytes, as sqlx does for `Vec<u8>`).
fn bytes<'r>(r: &'r Row<'_>, i: usize, column: &str) -> Result<&'r [u8], StoreError> {
    match r.get_ref(i)? {
        ValueRef::Blob(b) | ValueRef::Text(b) => Ok(b),
        other => Err(wrong_type(column, "a blob", other)),
    }
}

fn wrong_type(column: &str, want: &str, found: ValueRef<'_>) -> StoreError {
    StoreError::Corrupt(format!(
        "column {column} holds {:?}, not {want}",
        found.data_type()
    ))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use ticketsync_wire::NewEntry;

    use super::*;
    use crate::{SqliteStore, Store, StreamAppend};

    fn entry(i: u64) -> NewEntry {
        NewEntry {
            event_id: Ulid(u128::from(i) + 1),
            stream_id: Ulid(7),
            schema_version: 1,
            event_type: format!("type {i}"),
            occurred_at: -(i as i64),
            actor_instance: "acme".into(),
            actor_user: "u".repeat(i as usize % 40),
            link_seq: i as u32,
            payload: vec![i as u8; (i as usize * 37) % 500],
        }
    }

    /// Text over the ULID alphabet in both cases, its aliases and neighbours, and bytes
    /// that are not ASCII, mostly 26 long.
    fn ulid_texts() -> impl Strategy<Value = Vec<u8>> {
        let byte = prop_oneof![
            40 => proptest::sample::select(b"0123456789ABCDEFGHJKMNPQRSTVWXYZabcdefghjkmnpqrstvwxyz".to_vec()),
            1 => proptest::sample::select(b"ILOUilou@[`{/: \x00\x7f\x80\xc3\xa9\xff".to_vec()),
        ];
        prop_oneof![
            8 => proptest::collection::vec(byte.clone(), 26),
            1 => proptest::collection::vec(byte, 0..30),
        ]
    }

    proptest! {
        /// The log reader decodes ULIDs itself; it must accept and return exactly what
        /// `Ulid::from_string` does (verify hashes the value, so a text that decoded
        /// differently would read as tampered, or tampering as intact).
        #[test]
        fn decode_ulid_is_ulid_from_string(text in ulid_texts()) {
            let want = std::str::from_utf8(&text).ok().and_then(|s| Ulid::from_string(s).ok());
            prop_assert_eq!(decode_ulid(&text), want.map(|u| u.0));
        }

        /// Verify's canonical check passes exactly the text `Ulid::to_string` gives, and
        /// flags every other text that decodes: upper-case digits, any first digit (8 to
        /// Z decode too), and sometimes one digit in lower case.
        #[test]
        fn only_the_text_to_string_gives_is_canonical(
            upper in proptest::collection::vec(
                proptest::sample::select(b"0123456789ABCDEFGHJKMNPQRSTVWXYZ".to_vec()),
                ULID_LEN,
            ),
            lower in proptest::option::of(0..ULID_LEN),
        ) {
            let mut found: [u8; ULID_LEN] = upper.try_into().unwrap();
            if let Some(i) = lower {
                found[i] = found[i].to_ascii_lowercase();
            }
            let v = decode_ulid(&found).expect("base32 digits decode");
            let canonical = found == Ulid(v).to_string().as_bytes();
            let flagged = NonCanonicalId::check(IdColumn::StreamId, &found, v);
            prop_assert_eq!(flagged.is_none(), canonical);
            if let Some(id) = flagged {
                prop_assert_eq!((id.column, id.found, id.value), (IdColumn::StreamId, found, Ulid(v)));
            }
        }

        /// Every value's own text passes; the same value written with a first digit 8
        /// higher (the bit decoding drops) or in lower case (when it has a letter) does not.
        #[test]
        fn other_text_for_a_value_is_not_canonical(v in any::<u128>()) {
            let text: [u8; ULID_LEN] = Ulid(v).to_string().into_bytes().try_into().unwrap();
            prop_assert_eq!(NonCanonicalId::check(IdColumn::EventId, &text, v), None);
            let mut plus_8 = text;
            plus_8[0] = b"89ABCDEF"[usize::from(plus_8[0] - b'0')];
            prop_assert_eq!(decode_ulid(&plus_8), Some(v));
            prop_assert!(NonCanonicalId::check(IdColumn::EventId, &plus_8, v).is_some());
            let lower = text.to_ascii_lowercase();
            if lower != text {
                let lower: [u8; ULID_LEN] = lower.try_into().unwrap();
                prop_assert!(NonCanonicalId::check(IdColumn::EventId, &lower, v).is_some());
            }
        }

        #[test]
        fn decode_ulid_reads_back_every_ulid(v in any::<u128>()) {
            let text = Ulid(v).to_string();
            prop_assert_eq!(decode_ulid(text.as_bytes()), Some(v));
            prop_assert_eq!(decode_ulid(text.to_ascii_lowercase().as_bytes()), Some(v));
        }
    }

    /// A batch refilled by the scan keeps its entries' memory; whatever they held before
    /// (longer strings, more entries) must not show through.
    #[tokio::test]
    async fn a_refilled_batch_holds_exactly_what_a_fresh_read_does() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("log.db");
        let store = SqliteStore::create(&path).await.expect("create");
        store
            .append(
                1,
                vec![StreamAppend {
                    stream_id: Ulid(7),
                    expected_version: 0,
                    entries: (0..60).map(entry).collect(),
                }],
            )
            .await
            .expect("append");
        let readers = LogReaders::new(&path);
        let conn = readers.open().expect("reader");
        let mut fresh = Vec::new();
        read_into(&conn, 20, i64::MAX, 30, &mut fresh).expect("fresh read");
        assert_eq!(fresh.len(), 30);
        assert_eq!(fresh, store.read_log(20, 30).await.expect("read_log"));

        // Refill a batch that held all 60 entries (the later ones longer in every field).
        let mut batch = Vec::new();
        read_into(&conn, 0, i64::MAX, 60, &mut batch).expect("read all");
        batch.reverse();
        read_into(&conn, 20, i64::MAX, 30, &mut batch).expect("refill");
        assert_eq!(batch, fresh);
        read_into(&conn, 60, i64::MAX, 30, &mut batch).expect("read past the end");
        assert!(batch.is_empty());
    }
}
