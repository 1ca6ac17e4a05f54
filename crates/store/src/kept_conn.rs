//! One rusqlite connection that the SQLite backend keeps open and uses from blocking
//! threads, one caller at a time: the projection connection and the log writer each hold
//! one. Opened on first use (after the migrations have run). Its commits are checkpointed
//! in the background (`checkpointer`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::Connection;

use crate::checkpointer::{CheckpointStats, Checkpointer};
use crate::StoreError;

/// Opens the connection with the settings its owner wants.
pub(crate) type Opener = fn(&Path) -> Result<Connection, StoreError>;

#[derive(Debug)]
pub(crate) struct KeptConn {
    path: PathBuf,
    /// What it is, for errors ("projection connection").
    what: &'static str,
    open: Opener,
    conn: Mutex<Option<Connection>>,
    /// Copies what `with_write` commits into the database file.
    checkpoints: Checkpointer,
}

impl KeptConn {
    /// `open` must leave checkpoints to the background (`leave_to_background`);
    /// `synchronous` is its setting, for the checkpointer's connection.
    pub(crate) fn new(
        path: &Path,
        what: &'static str,
        open: Opener,
        synchronous: &'static str,
    ) -> Result<Self, StoreError> {
        Ok(KeptConn {
            path: path.to_path_buf(),
            what,
            open,
            conn: Mutex::new(None),
            checkpoints: Checkpointer::start(path, what, synchronous)?,
        })
    }

    pub(crate) fn checkpoint_stats(&self) -> CheckpointStats {
        self.checkpoints.stats()
    }

    /// A new connection with the same settings, for a caller that wants its own.
    pub(crate) fn open_another(&self) -> Result<Connection, StoreError> {
        (self.open)(&self.path)
    }

    /// Runs `f` on the connection, on a blocking thread; one caller at a time. A panic in
    /// `f` goes on in the caller.
    pub(crate) async fn with<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let me = Arc::clone(self);
        let r = tokio::task::spawn_blocking(move || {
            // A panic while the connection was held leaves it usable: SQLite rolls back a
            // transaction its handle did not finish when the next one begins.
            let mut slot = me.conn.lock().unwrap_or_else(|p| p.into_inner());
            if slot.is_none() {
                *slot = Some((me.open)(&me.path)?);
            }
            match slot.as_mut() {
                Some(c) => f(c),
                None => Err(StoreError::Unavailable(me.what.into())),
            }
        })
        .await;
        joined(self.what, r)
    }

    /// [`KeptConn::with`] for a call that may commit about `bytes` of rows: the background
    /// checkpointer is told afterwards, whatever the outcome (a call that committed nothing
    /// costs at most a checkpoint with nothing to copy).
    pub(crate) async fn with_write<T: Send + 'static>(
        self: &Arc<Self>,
        bytes: usize,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let r = self.with(f).await;
        self.checkpoints.committed(bytes);
        r
    }
}

/// The outcome of a blocking task: a panic in it goes on in the caller.
pub(crate) fn joined<T>(
    what: &str,
    r: Result<Result<T, StoreError>, tokio::task::JoinError>,
) -> Result<T, StoreError> {
    match r {
        Ok(v) => v,
        Err(e) => match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            // Blocking tasks are never aborted: only a runtime shutting down cancels one.
            Err(e) => Err(StoreError::Unavailable(format!("{what}: {e}"))),
        },
    }
}
