//! The SQLite backend's log writer: appends (with the transactional outbox) and inbound
//! channel entries, each a whole transaction in one call on a blocking thread, over one
//! rusqlite connection with `synchronous=FULL`.
//!
//! Why not sqlx here: an inbound batch of a thousand entries for a thousand tickets reads
//! and writes a version per ticket, a statement each, and through sqlx every statement is
//! a hand-over to its worker thread and back. Profiling the applying daemon put about a
//! quarter of its time in the kernel switching threads. Here the transaction runs start to
//! finish on one thread, with cached statements binding the caller's values in place.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};
use ticketsync_wire::{channel_hash, LogEntry, NewEntry, GENESIS_HASH};
use ulid::{Ulid, ULID_LEN};

use crate::channel::{ChannelEntry, ChannelHead, Inbound, Outgoing};
use crate::kept_conn::KeptConn;
use crate::rows::{hash32, head_of, log_head_of, to_i64, to_u64};
use crate::sqlite::ENTRY_COLUMNS;
use crate::{Head, StoreError, StreamAppend};

/// Page cache of the writer connection, in KiB: an inbound batch touches the stream rows
/// and index pages of up to a thousand tickets. 1 MiB: since projections moved to a file
/// of their own no other connection's commits empty this cache, so it fills; at 2 MiB the
/// daemon's peak RSS over 1M replicated events was higher at the same speed.
pub const WRITER_CACHE_KIB: u32 = 1024;
/// Prepared statements the writer keeps (rusqlite's default is 16).
const STATEMENT_CACHE: usize = 32;

/// A quarantine record to write with an inbound entry: kind, detail, event id.
pub(crate) type Quarantine = (String, String, Option<String>);

/// The log writer of one database file.
#[derive(Debug)]
pub(crate) struct LogWriter {
    conn: Arc<KeptConn>,
    /// The head after this process's latest write, which the next single-event append
    /// seals against (`append_one`); stale when another process appended since, which the
    /// database notices.
    head_seen: Arc<Mutex<Option<Head>>>,
}

fn open(path: &Path) -> Result<Connection, StoreError> {
    let c = crate::log_reader::open_connection(path, WRITER_CACHE_KIB)?;
    c.pragma_update(None, "synchronous", "FULL")?;
    c.pragma_update(None, "foreign_keys", true)?;
    c.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    crate::checkpointer::leave_to_background(&c)?;
    Ok(c)
}

impl LogWriter {
    pub(crate) fn new(path: &Path, head: Head) -> Result<Self, StoreError> {
        Ok(LogWriter {
            conn: Arc::new(KeptConn::new(path, "log writer", open, "FULL")?),
            head_seen: Arc::new(Mutex::new(Some(head))),
        })
    }

    pub(crate) fn checkpoint_stats(&self) -> crate::CheckpointStats {
        self.conn.checkpoint_stats()
    }

    /// `Store::append_routed`.
    pub(crate) async fn append(
        &self,
        recorded_at: i64,
        batch: Vec<StreamAppend>,
        outgoing: Vec<Outgoing>,
    ) -> Result<Vec<LogEntry>, StoreError> {
        let seen = Arc::clone(&self.head_seen);
        let bytes = rows_bytes(&batch) + outgoing.iter().map(|o| o.body.len()).sum::<usize>();
        self.conn
            .with_write(bytes, move |c| {
                let head = *seen.lock().unwrap_or_else(|p| p.into_inner());
                let out = match (head, single(&batch, &outgoing)) {
                    (Some(head), Some((part, entry))) => {
                        match append_one(c, head, recorded_at, part, entry) {
                            Some(e) => vec![e],
                            None => append_tx(c, recorded_at, batch, outgoing)?,
                        }
                    }
                    _ => append_tx(c, recorded_at, batch, outgoing)?,
                };
                remember(&seen, out.last());
                Ok(out)
            })
            .await
    }

    /// `Store::apply_inbound`.
    pub(crate) async fn apply_inbound(
        &self,
        from: &str,
        to: &str,
        entry: &ChannelEntry,
        recorded_at: i64,
        batch: Vec<StreamAppend>,
        quarantine: Option<Quarantine>,
    ) -> Result<Inbound, StoreError> {
        let (from, to, entry) = (from.to_string(), to.to_string(), entry.clone());
        let seen = Arc::clone(&self.head_seen);
        let bytes = rows_bytes(&batch) + entry.body.len();
        self.conn
            .with_write(bytes, move |c| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let head = channel_in_head(&tx, &from)?;
                if let Some(refused) = head.refuses(&entry, &from, &to) {
                    return Ok(refused);
                }
                let written = append_in_tx(&tx, recorded_at, batch, true)?;
                if let Some((kind, detail, event_id)) = quarantine {
                    tx.prepare_cached(
                        "INSERT INTO quarantine (partner, seq, event_id, kind, detail, body, received_at) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    )?
                    .execute(params![
                        from,
                        to_i64(entry.seq)?,
                        event_id,
                        kind,
                        detail,
                        entry.body,
                        recorded_at
                    ])?;
                }
                set_channel_in(
                    &tx,
                    &from,
                    &ChannelHead {
                        seq: entry.seq,
                        hash: entry.hash,
                    },
                )?;
                tx.commit()?;
                remember(&seen, written.last());
                Ok(Inbound::Applied {
                    appended: written.len(),
                })
            })
            .await
    }

    /// `Store::apply_inbound_many`: the run of entries that continue the channel, all their
    /// events appended with one `append_in_tx`, in one transaction.
    pub(crate) async fn apply_inbound_many(
        &self,
        from: &str,
        to: &str,
        recorded_at: i64,
        items: Vec<(ChannelEntry, Vec<StreamAppend>)>,
    ) -> Result<Vec<Inbound>, StoreError> {
        let (from, to) = (from.to_string(), to.to_string());
        let seen = Arc::clone(&self.head_seen);
        let bytes = items.iter().map(|(_, parts)| rows_bytes(parts)).sum();
        self.conn
            .with_write(bytes, move |c| {
                let started = Instant::now();
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let locked = started.elapsed();
                let mut head = channel_in_head(&tx, &from)?;
                let mut out = Vec::with_capacity(items.len());
                let mut stop = None;
                let mut batch = Vec::new();
                let mut ids: Vec<Vec<Ulid>> = Vec::new();
                for (entry, parts) in items {
                    if let Some(refused) = head.refuses(&entry, &from, &to) {
                        stop = Some(refused);
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
                    let written = append_in_tx(&tx, recorded_at, batch, true)?;
                    // `written` keeps the order of the input less the events already held:
                    // walk both to count what each entry appended.
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
                    set_channel_in(&tx, &from, &head)?;
                    let committing = Instant::now();
                    tx.commit()?;
                    // Where an inbound run's time goes: waiting for the write lock (another
                    // writer, such as the projection connection, held it), or the commit.
                    tracing::debug!(
                        entries = written.len(),
                        lock_wait_us = locked.as_micros() as u64,
                        commit_us = committing.elapsed().as_micros() as u64,
                        total_us = started.elapsed().as_micros() as u64,
                        "inbound run written"
                    );
                    remember(&seen, written.last());
                }
                out.extend(stop);
                Ok(out)
            })
            .await
    }
}

/// The one part and the one event of a batch that appends a single event and queues
/// nothing, if it is one.
/// Bytes a log entry's row and index entries take besides its payload, about.
const ENTRY_ROW_BYTES: usize = 200;

/// About how many bytes of rows appending `batch` writes (for the checkpointer).
fn rows_bytes(batch: &[StreamAppend]) -> usize {
    batch
        .iter()
        .flat_map(|p| &p.entries)
        .map(|e| e.payload.len() + ENTRY_ROW_BYTES)
        .sum()
}

fn single<'b>(
    batch: &'b [StreamAppend],
    outgoing: &[Outgoing],
) -> Option<(&'b StreamAppend, &'b NewEntry)> {
    match (batch, outgoing) {
        ([part], []) => match part.entries.as_slice() {
            [entry] => Some((part, entry)),
            _ => None,
        },
        _ => None,
    }
}

fn remember(seen: &Mutex<Option<Head>>, last: Option<&LogEntry>) {
    if let Some(last) = last {
        *seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(Head {
            position: last.position,
            hash: last.hash,
        });
    }
}

fn channel_in_head(c: &Connection, from: &str) -> Result<ChannelHead, StoreError> {
    let head: Option<(i64, Vec<u8>)> = c
        .prepare_cached("SELECT seq, hash FROM channel_in WHERE partner = ?1")?
        .query_row(params![from], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    head_of(head)
}

fn set_channel_in(c: &Connection, from: &str, head: &ChannelHead) -> Result<(), StoreError> {
    c.prepare_cached(
        "INSERT INTO channel_in (partner, seq, hash) VALUES (?1, ?2, ?3) \
         ON CONFLICT (partner) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
    )?
    .execute(params![from, to_i64(head.seq)?, &head.hash[..]])?;
    Ok(())
}

/// Appends one event in a single autocommitted statement, sealed against the head this
/// process saw last. The `events_append_one` trigger (migration 0004) checks under the
/// write lock that the head and the stream's version are still those; if anything is
/// stale (another process appended, the expected version is wrong) or fails, the
/// statement writes nothing and `None` sends the caller to the full transaction, which
/// decides what is true.
fn append_one(
    c: &Connection,
    head: Head,
    recorded_at: i64,
    part: &StreamAppend,
    entry: &NewEntry,
) -> Option<LogEntry> {
    let e = LogEntry::seal(
        entry.clone(),
        head.position + 1,
        part.expected_version + 1,
        recorded_at,
        head.hash,
    );
    let mut st = c
        .prepare_cached(&format!(
            "INSERT INTO events_append_one ({ENTRY_COLUMNS}) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
        ))
        .ok()?;
    insert_entry(&mut st, &e).ok()?;
    Some(e)
}

/// The full append transaction: the events, then the outbox entries.
fn append_tx(
    c: &mut Connection,
    recorded_at: i64,
    batch: Vec<StreamAppend>,
    outgoing: Vec<Outgoing>,
) -> Result<Vec<LogEntry>, StoreError> {
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let out = append_in_tx(&tx, recorded_at, batch, false)?;
    outgoing_in_tx(&tx, outgoing)?;
    tx.commit()?;
    Ok(out)
}

/// Appends within an open write transaction. With `skip_existing`, events whose id the log
/// already holds are left out (an inbound event delivered again), and so is an id met
/// again within the batch.
///
/// Every stream's version is checked and every entry sealed in memory first, so a conflict
/// is found before anything is written (and the caller drops the transaction anyway).
fn append_in_tx(
    tx: &Transaction<'_>,
    recorded_at: i64,
    batch: Vec<StreamAppend>,
    skip_existing: bool,
) -> Result<Vec<LogEntry>, StoreError> {
    let head: Option<(i64, Vec<u8>)> = tx
        .prepare_cached("SELECT position, hash FROM log_head WHERE id = 1")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Head {
        mut position,
        hash: mut prev,
    } = log_head_of(head)?;
    let mut version_of = tx.prepare_cached("SELECT version FROM streams WHERE stream_id = ?1")?;
    let mut held = tx.prepare_cached("SELECT 1 FROM events WHERE event_id = ?1")?;
    let mut seen: HashSet<Ulid> = HashSet::new();
    // Per stream: the version it is at now, and whether this batch appends to it; and the
    // streams appended to, in first-touched order.
    let mut versions: HashMap<Ulid, (u64, bool)> = HashMap::new();
    let mut touched: Vec<Ulid> = Vec::new();
    let mut text = [0u8; ULID_LEN];
    let mut out = Vec::with_capacity(batch.iter().map(|b| b.entries.len()).sum());
    for part in batch {
        let (version, appended) = match versions.entry(part.stream_id) {
            Entry::Occupied(o) => o.into_mut(),
            Entry::Vacant(slot) => {
                let sid = part.stream_id.array_to_str(&mut text);
                let cur: Option<i64> = version_of
                    .query_row(params![&*sid], |r| r.get(0))
                    .optional()?;
                slot.insert((to_u64(cur.unwrap_or(0), "stream version")?, false))
            }
        };
        if *version != part.expected_version {
            return Err(StoreError::Conflict {
                stream_id: part.stream_id,
                expected: part.expected_version,
                actual: *version,
            });
        }
        if part.entries.is_empty() {
            continue;
        }
        if !*appended {
            *appended = true;
            touched.push(part.stream_id);
        }
        for new in part.entries {
            if skip_existing {
                if !seen.insert(new.event_id) {
                    continue;
                }
                let id = new.event_id.array_to_str(&mut text);
                if held.exists(params![&*id])? {
                    continue;
                }
            }
            position += 1;
            *version += 1;
            let e = LogEntry::seal(new, position, *version, recorded_at, prev);
            prev = e.hash;
            out.push(e);
        }
    }
    {
        // `OR FAIL`: with the default (ABORT) SQLite keeps a statement journal to undo one
        // statement; the caller rolls back the whole transaction on any error anyway
        // (migration 0006 has the guard trigger fail the same way).
        let mut insert = tx.prepare_cached(&format!(
            "INSERT OR FAIL INTO events ({ENTRY_COLUMNS}) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
        ))?;
        for e in &out {
            insert_entry(&mut insert, e)?;
        }
    }
    let mut set_version = tx.prepare_cached(
        "INSERT INTO streams (stream_id, version) VALUES (?1, ?2) \
         ON CONFLICT (stream_id) DO UPDATE SET version = excluded.version",
    )?;
    for id in &touched {
        if let Some((version, _)) = versions.get(id) {
            let sid = id.array_to_str(&mut text);
            set_version.execute(params![&*sid, to_i64(*version)?])?;
        }
    }
    if !out.is_empty() {
        tx.prepare_cached(
            "INSERT INTO log_head (id, position, hash) VALUES (1, ?1, ?2) \
             ON CONFLICT (id) DO UPDATE SET position = excluded.position, hash = excluded.hash",
        )?
        .execute(params![to_i64(position)?, &prev[..]])?;
    }
    Ok(out)
}

/// Runs an insert of one entry's columns, in `ENTRY_COLUMNS` order.
fn insert_entry(st: &mut rusqlite::CachedStatement<'_>, e: &LogEntry) -> Result<(), StoreError> {
    let mut event_id = [0u8; ULID_LEN];
    let mut stream_id = [0u8; ULID_LEN];
    st.execute(params![
        to_i64(e.position)?,
        &*e.event_id.array_to_str(&mut event_id),
        &*e.stream_id.array_to_str(&mut stream_id),
        to_i64(e.version)?,
        i64::from(e.schema_version),
        e.event_type,
        e.occurred_at,
        e.recorded_at,
        e.actor_instance,
        e.actor_user,
        i64::from(e.link_seq),
        e.payload,
        &e.prev_hash[..],
        &e.hash[..],
    ])?;
    Ok(())
}

/// Adds outbound channel entries within an open write transaction, continuing each
/// partner's chain.
fn outgoing_in_tx(tx: &Transaction<'_>, outgoing: Vec<Outgoing>) -> Result<(), StoreError> {
    if outgoing.is_empty() {
        return Ok(());
    }
    let mut last = tx.prepare_cached(
        "SELECT seq, hash FROM channel_out WHERE partner = ?1 ORDER BY seq DESC LIMIT 1",
    )?;
    let mut insert = tx.prepare_cached(
        "INSERT INTO channel_out (partner, seq, event_id, body, prev_hash, hash) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for o in outgoing {
        let head: Option<(i64, Vec<u8>)> = last
            .query_row(params![o.to], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let (seq, prev) = match head {
            Some((s, h)) => (to_u64(s, "channel seq")? + 1, hash32(h, "channel hash")?),
            None => (1, GENESIS_HASH),
        };
        let hash = channel_hash(&prev, seq, &o.from, &o.to, &o.body);
        insert.execute(params![
            o.to,
            to_i64(seq)?,
            o.event_id,
            o.body,
            &prev[..],
            &hash[..]
        ])?;
    }
    Ok(())
}
