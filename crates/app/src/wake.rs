//! Waking this instance's sync daemon after a commit that queued entries for a partner: a
//! one-byte datagram on a Unix socket in the data directory, so the relay publishes at once
//! instead of at its next outbox poll. Best effort by design: the poll stays the guarantee.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

/// The daemon's wake socket, inside the data directory.
pub const WAKE_SOCKET: &str = "sync.wake";

/// Where the daemon of the instance at `dir` listens for wake-ups.
pub fn wake_path(dir: &Path) -> PathBuf {
    dir.join(WAKE_SOCKET)
}

/// Tells the daemon of the instance at `dir`, if one listens, that an outbox grew. Never
/// fails and never blocks: with no daemon (no socket, a stale one, a full queue) the
/// datagram is dropped and the daemon finds the entries at its next poll.
pub fn notify(dir: &Path) {
    let path = wake_path(dir);
    if !path.exists() {
        return;
    }
    let sent = UnixDatagram::unbound().and_then(|s| {
        s.set_nonblocking(true)?;
        s.send_to(&[1], &path)
    });
    if let Err(e) = sent {
        tracing::debug!(path = %path.display(), "no daemon woken: {e}");
    }
}
