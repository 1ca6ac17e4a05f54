//! Shared harness for the end-to-end tests of the `ticketsync` binary: one temporary data
//! directory per test, commands run as an explicit user, and raw SQL access to the database
//! (through sqlx, so no `sqlite3` tool is needed) for tampering with it.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use assert_cmd::Command;
use serde_json::Value;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, SqliteConnection};
use tempfile::TempDir;

/// The instance every initialized test directory holds.
pub const INSTANCE: &str = "acme";
/// The user commands run as unless a test says otherwise.
pub const ALICE: &str = "alice";
pub const BOB: &str = "bob";

/// Exit codes, as documented in crates/cli/src/exit.rs.
pub const OK: i32 = 0;
pub const USAGE: i32 = 2;
pub const REFUSED: i32 = 3;
pub const VERIFY_FAILED: i32 = 4;
pub const NOT_FOUND: i32 = 5;
pub const INCOMPATIBLE: i32 = 7;

/// Hash of "no previous entry": the `prev_hash` of position 1.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What one run of the binary produced.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// One test's instance: a temporary directory holding the data directory `data`.
pub struct Ts {
    tmp: TempDir,
    /// The `--data-dir` every command gets.
    pub dir: PathBuf,
}

impl Ts {
    /// A data directory that does not exist yet (nothing initialized).
    pub fn uninit() -> Ts {
        let tmp = TempDir::new().expect("temporary directory");
        let dir = tmp.path().join("data");
        Ts { tmp, dir }
    }

    /// An initialized instance named `acme`.
    pub fn new() -> Ts {
        let ts = Ts::uninit();
        let out = ts.ok(&["init", "--instance", INSTANCE]);
        assert_eq!(
            out,
            format!("initialized instance {INSTANCE} in {}\n", ts.dir.display())
        );
        ts
    }

    /// The temporary directory around the data directory, for input files.
    pub fn scratch(&self) -> &Path {
        self.tmp.path()
    }

    /// Writes a file in the scratch directory and returns its path as a string.
    pub fn file(&self, name: &str, bytes: &[u8]) -> String {
        let p = self.tmp.path().join(name);
        std::fs::write(&p, bytes).expect("write input file");
        p.to_str().expect("utf-8 path").to_string()
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.join("ticketsync.db")
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join("ticketsync.toml")
    }

    /// The binary with `--data-dir` and `TICKETSYNC_USER` set, and no other ticketsync
    /// variable leaking in from the environment the tests run in.
    pub fn cmd_as(&self, user: &str) -> Command {
        let mut c = Command::cargo_bin("ticketsync").expect("the ticketsync binary");
        c.arg("--data-dir")
            .arg(&self.dir)
            .env("TICKETSYNC_USER", user)
            .env_remove("TICKETSYNC_DATA_DIR")
            .env_remove("TICKETSYNC_LOG")
            .current_dir(self.tmp.path())
            .timeout(Duration::from_secs(120));
        c
    }

    pub fn run_as(&self, user: &str, args: &[&str]) -> Out {
        output(self.cmd_as(user).args(args))
    }

    pub fn run(&self, args: &[&str]) -> Out {
        self.run_as(ALICE, args)
    }

    /// Runs as `user`, asserts exit 0 and a silent stderr, returns stdout.
    pub fn ok_as(&self, user: &str, args: &[&str]) -> String {
        let o = self.run_as(user, args);
        assert_eq!(
            o.code,
            OK,
            "`ticketsync {}` as {user} failed: {o:?}",
            args.join(" ")
        );
        assert_eq!(
            o.stderr,
            "",
            "`ticketsync {}` wrote to stderr",
            args.join(" ")
        );
        o.stdout
    }

    pub fn ok(&self, args: &[&str]) -> String {
        self.ok_as(ALICE, args)
    }

    /// Runs as `user` and asserts the failure contract: exit `code`, nothing on stdout, and
    /// exactly one line on stderr starting with "error:". Returns that line.
    pub fn fail_as(&self, user: &str, args: &[&str], code: i32) -> String {
        let o = self.run_as(user, args);
        assert_one_line_error(&o, code, &format!("ticketsync {}", args.join(" ")));
        o.stderr.trim_end_matches('\n').to_string()
    }

    pub fn fail(&self, args: &[&str], code: i32) -> String {
        self.fail_as(ALICE, args, code)
    }

    /// Like `fail_as`, and also asserts that the log is exactly as before: same length (by
    /// `verify --json`) and the same entries (by `replay --json`).
    pub fn refused_as(&self, user: &str, args: &[&str], code: i32) -> String {
        let len = self.log_len();
        let before = self.ok(&["replay", "--json"]);
        let o = self.run_as(user, args);
        // The log is checked first, so that a failure below is only about the message.
        assert_eq!(
            self.log_len(),
            len,
            "`ticketsync {}` appended to the log",
            args.join(" ")
        );
        assert_eq!(
            self.ok(&["replay", "--json"]),
            before,
            "`ticketsync {}` changed the log",
            args.join(" ")
        );
        assert_one_line_error(&o, code, &format!("ticketsync {}", args.join(" ")));
        o.stderr.trim_end_matches('\n').to_string()
    }

    pub fn refused(&self, args: &[&str], code: i32) -> String {
        self.refused_as(ALICE, args, code)
    }

    /// The log length, as `verify --json` counts it (asserting the chain is intact).
    pub fn log_len(&self) -> u64 {
        let v = self.verify_json();
        assert_eq!(v["ok"], Value::Bool(true), "verify failed: {v}");
        v["checked"].as_u64().expect("checked is a number")
    }

    pub fn verify_json(&self) -> Value {
        let o = self.run(&["verify", "--json"]);
        assert!(o.code == OK || o.code == VERIFY_FAILED, "verify: {o:?}");
        let v: Value = serde_json::from_str(o.stdout.trim()).expect("verify --json is JSON");
        assert_eq!(o.stdout.lines().count(), 1, "verify --json prints one line");
        v
    }

    /// `replay --json` with extra arguments, parsed line by line.
    pub fn replay(&self, extra: &[&str]) -> Vec<Value> {
        let mut args = vec!["replay", "--json"];
        args.extend_from_slice(extra);
        json_lines(&self.ok(&args))
    }

    /// Creates a ticket and returns its ULID.
    pub fn create(&self, title: &str) -> String {
        single_ulid(&self.ok(&["ticket", "create", "--title", title]))
    }

    /// `ticket show REF --json`, parsed.
    pub fn show(&self, reference: &str) -> Value {
        json(&self.ok(&["ticket", "show", reference, "--json"]))
    }

    /// Runs an add command and returns the item id it printed.
    pub fn add_as(&self, user: &str, args: &[&str]) -> String {
        single_ulid(&self.ok_as(user, args))
    }

    pub fn add(&self, args: &[&str]) -> String {
        self.add_as(ALICE, args)
    }

    /// Replaces one `key = value` line of the config file.
    pub fn set_config(&self, key: &str, value: &str) {
        let text = std::fs::read_to_string(self.config_path()).expect("config");
        let prefix = format!("{key} = ");
        assert!(
            text.lines().any(|l| l.starts_with(&prefix)),
            "no {key} in config:\n{text}"
        );
        let new: Vec<String> = text
            .lines()
            .map(|l| {
                if l.starts_with(&prefix) {
                    format!("{key} = {value}")
                } else {
                    l.to_string()
                }
            })
            .collect();
        std::fs::write(self.config_path(), new.join("\n") + "\n").expect("write config");
    }

    /// Runs an SQL script against the database, outside the binary.
    pub fn sql(&self, script: &str) {
        self.sql_on(&self.db_path(), script)
    }

    /// Runs an SQL script on the projections file (`ticketsync.projections.db`).
    pub fn sql_projections(&self, script: &str) {
        self.sql_on(
            &ticketsync_store::SqliteStore::projections_path(&self.db_path()),
            script,
        )
    }

    fn sql_on(&self, db: &Path, script: &str) {
        let db = db.to_path_buf();
        let script = script.to_string();
        block_on(async move {
            let mut c = connect(&db).await;
            sqlx::raw_sql(&script)
                .execute(&mut c)
                .await
                .unwrap_or_else(|e| panic!("SQL failed: {e}\n{script}"));
            c.close().await.expect("close");
        })
    }

    /// Runs an SQL script and returns its error (it must fail).
    pub fn sql_err(&self, script: &str) -> String {
        let db = self.db_path();
        let script = script.to_string();
        block_on(async move {
            let mut c = connect(&db).await;
            let r = sqlx::raw_sql(&script).execute(&mut c).await;
            c.close().await.expect("close");
            r.expect_err("the SQL should have been refused").to_string()
        })
    }

    /// One integer from a query.
    pub fn sql_i64(&self, query: &str) -> i64 {
        let db = self.db_path();
        let query = query.to_string();
        block_on(async move {
            let mut c = connect(&db).await;
            let v: i64 = sqlx::query_scalar(&query)
                .fetch_one(&mut c)
                .await
                .unwrap_or_else(|e| panic!("SQL failed: {e}\n{query}"));
            c.close().await.expect("close");
            v
        })
    }
}

/// Runs a future to completion on a small runtime of its own.
pub fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(f)
}

/// A plain connection to the SQLite file (no migrations, no schema checks).
pub async fn connect(db: &Path) -> SqliteConnection {
    assert!(db.exists(), "no database at {}", db.display());
    let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", db.display()))
        .expect("sqlite URL")
        .busy_timeout(Duration::from_secs(30));
    SqliteConnection::connect_with(&opts)
        .await
        .expect("connect to the test database")
}

fn output(cmd: &mut Command) -> Out {
    let o = cmd.output().expect("run ticketsync");
    Out {
        code: o.status.code().expect("exited normally, not by a signal"),
        stdout: String::from_utf8(o.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8(o.stderr).expect("stderr is UTF-8"),
    }
}

/// The failure contract: exit `code`, empty stdout, exactly one stderr line "error: ...".
pub fn assert_one_line_error(o: &Out, code: i32, what: &str) {
    assert_eq!(o.code, code, "`{what}`: wrong exit code: {o:?}");
    assert_eq!(o.stdout, "", "`{what}`: printed to stdout on failure");
    assert!(
        o.stderr.starts_with("error: ") && o.stderr.ends_with('\n'),
        "`{what}`: stderr is not an error line: {:?}",
        o.stderr
    );
    assert_eq!(
        o.stderr.lines().count(),
        1,
        "`{what}`: stderr is not exactly one line: {:?}",
        o.stderr
    );
}

/// Parses stdout that is one JSON document.
pub fn json(stdout: &str) -> Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

/// Parses stdout that is one JSON object per line.
pub fn json_lines(stdout: &str) -> Vec<Value> {
    stdout.lines().map(json).collect()
}

/// Asserts stdout is exactly one ULID and a newline, and returns the ULID.
pub fn single_ulid(stdout: &str) -> String {
    let id = stdout
        .strip_suffix('\n')
        .unwrap_or_else(|| panic!("no trailing newline: {stdout:?}"));
    assert!(is_ulid(id), "not a single ULID: {stdout:?}");
    id.to_string()
}

pub fn is_ulid(s: &str) -> bool {
    s.len() == 26 && ulid::Ulid::from_string(s).is_ok() && s == s.to_ascii_uppercase()
}

pub fn is_hex_hash(s: &str) -> bool {
    s.len() == 64 && s.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f'))
}

/// `positions` of replay lines.
pub fn positions(lines: &[Value]) -> Vec<u64> {
    lines
        .iter()
        .map(|l| l["position"].as_u64().expect("position"))
        .collect()
}

/// Item ids (and kinds) of a `ticket show --json` view.
pub fn items(view: &Value) -> &Vec<Value> {
    view["items"].as_array().expect("items array")
}

/// The item with this id in a `ticket show --json` view.
pub fn item<'v>(view: &'v Value, id: &str) -> &'v Value {
    items(view)
        .iter()
        .find(|i| i["id"] == id)
        .unwrap_or_else(|| panic!("no item {id} in {view}"))
}

/// Sends `signal` (`TERM`, `STOP`, `CONT`, …) to process `pid` with `kill`; false when
/// `kill` fails (the process has exited, for one).
pub fn signal(pid: u32, signal: &str) -> bool {
    std::process::Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .expect("run kill")
        .success()
}
