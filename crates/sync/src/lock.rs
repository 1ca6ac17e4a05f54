//! The daemon's lock on its instance: one `sync run` (or `sync run --once`) per data
//! directory at a time. An advisory lock on `sync.lock`, which the kernel releases when the
//! process ends, however it ends; the file holds the holder's process id for the operator.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

/// The lock file in the data directory.
pub const LOCK_FILE: &str = "sync.lock";

/// Another daemon holds the instance.
#[derive(Debug, thiserror::Error)]
#[error("another `ticketsync sync run` ({holder}) is running for the instance in {}; stop it first: two daemons of one instance would split its inbound messages between them", dir.display())]
pub struct DaemonBusy {
    pub dir: PathBuf,
    /// What the lock file says about the holder ("process 1234", or "process unknown").
    pub holder: String,
}

/// Held for as long as the daemon runs.
#[derive(Debug)]
pub struct DaemonLock {
    _file: File,
}

impl DaemonLock {
    /// Takes the instance's lock, or fails at once with [`DaemonBusy`] when another process
    /// holds it (it never waits).
    pub fn acquire(dir: &Path) -> Result<DaemonLock> {
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("cannot open the daemon lock {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let holder = match file.read_to_string(&mut text) {
                    Ok(_) if !text.trim().is_empty() => format!("process {}", text.trim()),
                    _ => "process unknown".to_string(),
                };
                return Err(DaemonBusy {
                    dir: dir.to_path_buf(),
                    holder,
                }
                .into());
            }
            Err(TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", path.display()))
            }
        }
        // Ours now: say who holds it. A stale id left by a killed daemon is overwritten.
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| writeln!(file, "{}", std::process::id()))
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(DaemonLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_one_instance_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = DaemonLock::acquire(dir.path()).expect("a free instance locks");
        let err = DaemonLock::acquire(dir.path()).expect_err("the instance is held");
        let busy = err.downcast_ref::<DaemonBusy>().expect("a DaemonBusy");
        assert_eq!(busy.holder, format!("process {}", std::process::id()));
        assert!(err.to_string().contains("stop it first"), "{err}");
        drop(first);
        DaemonLock::acquire(dir.path()).expect("free again once dropped");
    }

    #[test]
    fn a_lock_file_left_by_a_dead_daemon_does_not_hold_the_instance() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(LOCK_FILE), "999999\n").unwrap();
        let _held = DaemonLock::acquire(dir.path()).expect("no process holds the lock");
        let text = std::fs::read_to_string(dir.path().join(LOCK_FILE)).unwrap();
        assert_eq!(text, format!("{}\n", std::process::id()));
    }
}
