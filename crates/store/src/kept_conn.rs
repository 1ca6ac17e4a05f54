//! One rusqlite connection that the SQLite backend keeps open and uses from blocking
//! threads, one caller at a time: the projection connection and the log writer each hold
//! one. Opened on first use (after the migrations have run).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::Connection;

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
}

impl KeptConn {
    pub(crate) fn new(path: &Path, what: &'static str, open: Opener) -> Self {
        KeptConn {
            path: path.to_path_buf(),
            what,
            open,
            conn: Mutex::new(None),
        }
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
