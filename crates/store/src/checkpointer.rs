//! Background WAL checkpoints of one SQLite file: the kept connections that write it commit
//! without copying the WAL into the database file themselves, and a thread of this process
//! does that copying on a connection of its own, off the writers' path.
//!
//! Why: with SQLite's automatic checkpoint the commit that takes the WAL past 1,000 pages
//! runs the checkpoint before it returns, so every few batches one inbound or projection
//! commit also reads back and writes out thousands of pages. In the sync daemon's profile
//! that was about 13% of the applying daemon's CPU, all of it on the write path. Here it
//! runs beside the writers, on the other core.
//!
//! Limits: the writers keep SQLite's automatic checkpoint at [`BACKSTOP_PAGES`] (16 MiB of
//! WAL), so a checkpointer that falls behind or cannot open its connection bounds the WAL
//! as before, only later. A checkpoint is `PASSIVE`: it never waits for readers or writers
//! and copies what no open read snapshot still needs; the next one copies the rest.
//! Commits made through other connections (sqlx's pools) keep SQLite's default and
//! checkpoint inline past 1,000 pages.

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use crate::StoreError;

/// WAL pages past which a kept writer checkpoints inline after all (SQLite's
/// `wal_autocheckpoint`): the bound on the WAL when the background checkpoint falls behind.
pub const BACKSTOP_PAGES: i64 = 4_096;
/// A checkpoint runs once the commits since the last one wrote this many bytes of rows (as
/// their writers count them; the WAL grows by whole pages, about twice that)...
pub const CHECKPOINT_BYTES: usize = 256 << 10;
/// ...or this long after the first of them. Commits in between are copied together, so a
/// writer's hot pages (the log's last leaf, the stream table) reach the database file once
/// per checkpoint, not once per commit; and a trickle of small commits does not checkpoint
/// (two fsyncs) after each one: with a checkpoint at most every 10 ms after any commit, the
/// replication latency's p50 at 1k events/s went from about 3.7 to 4.7-5.7 ms.
pub const CHECKPOINT_DELAY: Duration = Duration::from_millis(100);
/// Page cache of the checkpointer's connection, in KiB: a checkpoint copies frames through
/// a buffer of its own, not the page cache.
const CACHE_KIB: u32 = 64;

/// What the checkpointer of one file has done, for tests and operators.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CheckpointStats {
    /// Commits it was told of.
    pub commits: u64,
    /// Of those, how many are known to be in the database file: the count when the latest
    /// checkpoint that copied every frame of the WAL began.
    pub copied: u64,
    /// Checkpoints run.
    pub runs: u64,
    /// Checkpoints that failed (each is logged; the next commit tries again).
    pub failures: u64,
    /// The last checkpoint's outcome: frames in the WAL, and frames copied into the
    /// database file (all of them unless a reader still needed some).
    pub last: Option<(i64, i64)>,
}

#[derive(Default)]
struct State {
    /// A commit has happened since the last checkpoint began...
    dirty: bool,
    /// ...writing this many bytes since.
    bytes: usize,
    /// The store is gone: the thread ends.
    closed: bool,
    stats: CheckpointStats,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The thread holds the lock only to read and set flags; a panic elsewhere while it
        // was held leaves them consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The background checkpointer of one database file; its thread ends when this is dropped.
pub(crate) struct Checkpointer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Checkpointer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpointer")
            .field("stats", &self.stats())
            .finish()
    }
}

impl Checkpointer {
    /// Starts the thread for the file at `path` written by `what` (the thread's name says
    /// which), which opens its connection with `synchronous` (the writers' setting, which
    /// decides how a checkpoint syncs) at the first commit it is told of.
    pub(crate) fn start(
        path: &Path,
        what: &str,
        synchronous: &'static str,
    ) -> Result<Self, StoreError> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
        });
        let (path, theirs) = (path.to_path_buf(), Arc::clone(&shared));
        let thread = std::thread::Builder::new()
            .name(format!("ckpt {what}"))
            .spawn(move || run(&path, synchronous, &theirs))
            .map_err(|e| StoreError::Unavailable(format!("start the checkpoint thread: {e}")))?;
        Ok(Checkpointer {
            shared,
            thread: Some(thread),
        })
    }

    /// Tells the thread that a writer committed, writing about `bytes` of rows.
    pub(crate) fn committed(&self, bytes: usize) {
        let mut s = self.shared.lock();
        s.stats.commits += 1;
        let was = s.bytes;
        s.bytes = s.bytes.saturating_add(bytes);
        // Woken to start its delay, and again once enough is written.
        if !s.dirty || (was < CHECKPOINT_BYTES && s.bytes >= CHECKPOINT_BYTES) {
            s.dirty = true;
            self.shared.wake.notify_one();
        }
    }

    pub(crate) fn stats(&self) -> CheckpointStats {
        self.shared.lock().stats
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            // At most the checkpoint under way is waited for; a panic in it was logged.
            let _ = t.join();
        }
    }
}

/// The thread: waits for a commit, then for `CHECKPOINT_BYTES` more or `CHECKPOINT_DELAY`,
/// checkpoints, until closed.
fn run(path: &Path, synchronous: &str, shared: &Shared) {
    let mut conn: Option<Connection> = None;
    loop {
        let commits = {
            let mut s = shared.lock();
            while !s.dirty && !s.closed {
                s = shared.wake.wait(s).unwrap_or_else(|p| p.into_inner());
            }
            // Not a wait for anything to happen: commits that come meanwhile are copied
            // by this checkpoint; closing cuts it short.
            let until = Instant::now() + CHECKPOINT_DELAY;
            loop {
                let now = Instant::now();
                if s.closed || s.bytes >= CHECKPOINT_BYTES || now >= until {
                    break;
                }
                s = shared
                    .wake
                    .wait_timeout(s, until - now)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
            if s.closed {
                return;
            }
            s.dirty = false;
            s.bytes = 0;
            s.stats.commits
        };
        let began = Instant::now();
        let outcome = checkpoint(&mut conn, path, synchronous);
        {
            let mut s = shared.lock();
            s.stats.runs += 1;
            match outcome {
                Ok((frames, copied)) => {
                    s.stats.last = Some((frames, copied));
                    if copied == frames {
                        s.stats.copied = commits;
                    }
                }
                Err(e) => {
                    s.stats.failures += 1;
                    // Dropped, so the next attempt opens it anew.
                    conn = None;
                    tracing::warn!(file = %path.display(), error = %e, "background WAL checkpoint failed; the next commit retries it");
                }
            }
            tracing::trace!(file = %path.display(), us = began.elapsed().as_micros() as u64, last = ?s.stats.last, "WAL checkpoint");
        }
    }
}

/// One `PASSIVE` checkpoint: (frames in the WAL, frames copied).
fn checkpoint(
    conn: &mut Option<Connection>,
    path: &Path,
    synchronous: &str,
) -> Result<(i64, i64), StoreError> {
    if conn.is_none() {
        let c = crate::log_reader::open_connection(path, CACHE_KIB)?;
        c.pragma_update(None, "synchronous", synchronous)?;
        *conn = Some(c);
    }
    let Some(c) = conn.as_ref() else {
        return Err(StoreError::Unavailable("checkpoint connection".into()));
    };
    // (busy, frames in the WAL, frames checkpointed); busy when another checkpoint ran.
    let (_busy, frames, copied): (i64, i64, i64) =
        c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
    Ok((frames, copied))
}

/// Sets a kept writer connection to leave checkpoints to the background, up to the
/// backstop.
pub(crate) fn leave_to_background(c: &Connection) -> Result<(), StoreError> {
    c.pragma_update(None, "wal_autocheckpoint", BACKSTOP_PAGES)?;
    Ok(())
}
