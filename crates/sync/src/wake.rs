//! The daemon's end of the wake socket (`ticketsync_app::wake`): bound in the data
//! directory, a stale one left by a killed daemon replaced, each datagram a relay wake-up.

use std::io;
use std::path::{Path, PathBuf};

use tokio::net::UnixDatagram;

/// The bound socket; its file is removed again when it is dropped.
pub struct WakeSocket {
    sock: UnixDatagram,
    path: PathBuf,
}

impl WakeSocket {
    /// Binds the wake socket of the instance at `dir`. `None` (with a warning) when it cannot:
    /// another daemon of this instance listens there, or the path is too long for a Unix
    /// socket. The relays then find other processes' commits by polling alone.
    pub fn bind(dir: &Path) -> Option<WakeSocket> {
        let path = ticketsync_app::wake::wake_path(dir);
        if path.exists() {
            // A live listener accepts a connect; the file of a daemon that was killed refuses it.
            let live = std::os::unix::net::UnixDatagram::unbound()
                .and_then(|s| s.connect(&path))
                .is_ok();
            if live {
                tracing::warn!(path = %path.display(), "another daemon listens on the wake socket; finding commits by polling only");
                return None;
            }
            let _ = std::fs::remove_file(&path);
        }
        match UnixDatagram::bind(&path) {
            Ok(sock) => Some(WakeSocket { sock, path }),
            Err(e) => {
                tracing::warn!(path = %path.display(), "cannot bind the wake socket ({e}); finding commits by polling only");
                None
            }
        }
    }

    /// Waits for the next wake-up.
    pub async fn recv(&self) -> io::Result<()> {
        let mut buf = [0u8; 16];
        self.sock.recv(&mut buf).await.map(|_| ())
    }
}

impl Drop for WakeSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use ticketsync_app::wake::{notify, wake_path};

    const WAIT: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn a_notify_reaches_the_bound_socket_and_drop_removes_it() {
        let dir = tempfile::tempdir().unwrap();
        let sock = WakeSocket::bind(dir.path()).expect("binds in a fresh directory");
        assert!(wake_path(dir.path()).exists());
        notify(dir.path());
        tokio::time::timeout(WAIT, sock.recv())
            .await
            .expect("the wake-up arrives")
            .unwrap();
        drop(sock);
        assert!(!wake_path(dir.path()).exists());
        // With no daemon, notifying is a no-op, not an error.
        notify(dir.path());
    }

    #[tokio::test]
    async fn a_stale_socket_file_is_replaced_and_a_live_one_kept() {
        let dir = tempfile::tempdir().unwrap();
        // A daemon killed with SIGKILL leaves its socket file behind.
        drop(std::os::unix::net::UnixDatagram::bind(wake_path(dir.path())).unwrap());
        assert!(wake_path(dir.path()).exists());
        let first = WakeSocket::bind(dir.path()).expect("a stale file is replaced");
        // A second daemon of the same instance must not steal the live socket.
        assert!(WakeSocket::bind(dir.path()).is_none());
        notify(dir.path());
        tokio::time::timeout(WAIT, first.recv())
            .await
            .expect("the first daemon still gets wake-ups")
            .unwrap();
    }
}
