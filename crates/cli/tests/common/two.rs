//! Harness for end-to-end tests with several real instances: one real `nats-server` per
//! test (from `ticketsync-testkit`), each instance in its own data directory under one
//! temporary directory, initialized with `--nats` pointing at that server, and
//! `sync run --once` (a deterministic drain) as the synchronisation step.
//!
//! Included by the sync test binaries with `#[path = "common/two.rs"] mod two;` next to
//! `mod common;` (it uses the failure contract and parsers of `common`).

#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use assert_cmd::Command;
use serde_json::Value;
use tempfile::TempDir;
use ticketsync_testkit::{NatsServer, PgTestDb};

use crate::common::{assert_one_line_error, json, single_ulid, Out, OK};

/// One test's network: a real nats-server and a temporary directory for the instances.
pub struct Net {
    pub nats: NatsServer,
    tmp: TempDir,
}

impl Net {
    pub fn start() -> Net {
        Net {
            nats: NatsServer::start(),
            tmp: TempDir::new().expect("temporary directory"),
        }
    }

    /// Initializes instance `name` (commands run as `user`) with the test's NATS server,
    /// on SQLite in its data directory.
    pub fn instance(&self, name: &str, user: &str) -> Site {
        self.instance_on(name, user, false)
    }

    /// `instance`, on a fresh PostgreSQL database of its own when `postgres` is set (on
    /// the server `TICKETSYNC_TEST_PG` names; dropped with the site).
    pub fn instance_on(&self, name: &str, user: &str, postgres: bool) -> Site {
        let mut site = Site {
            name: name.to_string(),
            user: user.to_string(),
            dir: self.tmp.path().join(name),
            scratch: self.tmp.path().join(format!("{name}-files")),
            pg: None,
        };
        std::fs::create_dir_all(&site.scratch).expect("scratch directory");
        let url = self.nats.url();
        let mut args = vec!["init", "--instance", name, "--nats", &url];
        let pg = postgres.then(|| PgTestDb::create(name));
        if let Some(pg) = &pg {
            args.extend(["--database", pg.url()]);
        }
        let out = site.ok(&args);
        site.pg = pg;
        assert_eq!(
            out,
            format!("initialized instance {name} in {}\n", site.dir.display())
        );
        site
    }
}

/// Counters printed by `sync run --once` on stderr.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncStats {
    pub published: u64,
    pub applied: u64,
    pub quarantined: u64,
    pub duplicates: u64,
    pub resend_requests: u64,
}

/// Parses "sync: published N entries, applied N, quarantined N, duplicates N, resend requests N".
pub fn parse_stats(line: &str) -> SyncStats {
    let nums: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().expect("a number"))
        .collect();
    assert!(
        line.starts_with("sync: published ") && nums.len() == 5,
        "not a sync stats line: {line:?}"
    );
    SyncStats {
        published: nums[0],
        applied: nums[1],
        quarantined: nums[2],
        duplicates: nums[3],
        resend_requests: nums[4],
    }
}

/// One instance: its data directory and the user its commands run as.
pub struct Site {
    pub name: String,
    pub user: String,
    pub dir: PathBuf,
    scratch: PathBuf,
    /// The site's PostgreSQL database, when it is not on SQLite.
    pub pg: Option<PgTestDb>,
}

impl Site {
    /// The binary with `--data-dir`, the user, and no ticketsync variable leaking in from
    /// the environment the tests run in.
    pub fn cmd_as(&self, user: &str) -> Command {
        let mut c = Command::cargo_bin("ticketsync").expect("the ticketsync binary");
        c.arg("--data-dir")
            .arg(&self.dir)
            .env("TICKETSYNC_USER", user)
            .env_remove("TICKETSYNC_DATA_DIR")
            .env_remove("TICKETSYNC_LOG")
            .env_remove("TICKETSYNC_NATS_URL")
            .current_dir(&self.scratch)
            .timeout(Duration::from_secs(120));
        c
    }

    pub fn run_as(&self, user: &str, args: &[&str]) -> Out {
        let o = self
            .cmd_as(user)
            .args(args)
            .output()
            .expect("run ticketsync");
        Out {
            code: o.status.code().expect("exited normally, not by a signal"),
            stdout: String::from_utf8(o.stdout).expect("stdout is UTF-8"),
            stderr: String::from_utf8(o.stderr).expect("stderr is UTF-8"),
        }
    }

    pub fn run(&self, args: &[&str]) -> Out {
        self.run_as(&self.user, args)
    }

    /// Runs, asserts exit 0 and a silent stderr, returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert_eq!(
            o.code,
            OK,
            "`ticketsync {}` on {} failed: {o:?}",
            args.join(" "),
            self.name
        );
        assert_eq!(
            o.stderr,
            "",
            "`ticketsync {}` on {} wrote to stderr",
            args.join(" "),
            self.name
        );
        o.stdout
    }

    /// Runs and asserts the failure contract (exit `code`, one "error:" line, empty stdout)
    /// and that nothing was appended to the log or queued for any partner. Returns the line.
    pub fn refused(&self, args: &[&str], code: i32) -> String {
        let len = self.log_len();
        let heads = self.outbound_heads();
        let o = self.run(args);
        let what = format!("ticketsync {} (on {})", args.join(" "), self.name);
        assert_eq!(self.log_len(), len, "`{what}` appended to the log: {o:?}");
        assert_eq!(
            self.outbound_heads(),
            heads,
            "`{what}` queued something for a partner"
        );
        assert_one_line_error(&o, code, &what);
        o.stderr.trim_end_matches('\n').to_string()
    }

    /// Writes a file in this instance's scratch directory and returns its path.
    pub fn file(&self, name: &str, bytes: &[u8]) -> String {
        let p = self.scratch.join(name);
        std::fs::write(&p, bytes).expect("write input file");
        p.to_str().expect("utf-8 path").to_string()
    }

    /// Where the content with this SHA-256 (hex) is kept: `blobs/<2 hex>/<64 hex>`.
    pub fn blob_path(&self, sha256_hex: &str) -> PathBuf {
        self.dir
            .join("blobs")
            .join(&sha256_hex[..2])
            .join(sha256_hex)
    }

    /// Creates a ticket and returns its ULID.
    pub fn create(&self, title: &str) -> String {
        single_ulid(&self.ok(&["ticket", "create", "--title", title]))
    }

    /// Runs an add command and returns the item id it printed.
    pub fn add(&self, args: &[&str]) -> String {
        single_ulid(&self.ok(args))
    }

    /// `ticket show ID --json`, parsed.
    pub fn show(&self, id: &str) -> Value {
        json(&self.ok(&["ticket", "show", id, "--json"]))
    }

    /// True when `ticket show ID` finds the ticket; false on exit 5.
    pub fn has_ticket(&self, id: &str) -> bool {
        let o = self.run(&["ticket", "show", id, "--json"]);
        match o.code {
            0 => true,
            5 => false,
            _ => panic!("ticket show {id} on {}: {o:?}", self.name),
        }
    }

    /// `ticket list --json`, parsed.
    pub fn tickets(&self) -> Vec<Value> {
        match json(&self.ok(&["ticket", "list", "--json"])) {
            Value::Array(a) => a,
            other => panic!("ticket list --json is not an array: {other}"),
        }
    }

    /// The ticket's outsource status (`None` when `null`).
    pub fn outsource_status(&self, id: &str) -> Option<String> {
        let v = self.show(id);
        let s = v["outsource_status"].as_str().map(str::to_string);
        assert_eq!(
            v["outsource"]["status"].as_str(),
            s.as_deref(),
            "outsource_status and outsource.status differ on {}: {v}",
            self.name
        );
        s
    }

    /// `sync run --once`: exit 0, nothing on stdout, exactly the stats line on stderr.
    pub fn sync(&self) -> SyncStats {
        let o = self.run(&["sync", "run", "--once"]);
        assert_eq!(
            o.code, OK,
            "`sync run --once` on {} failed: {o:?}",
            self.name
        );
        assert_eq!(o.stdout, "", "`sync run --once` on {} printed", self.name);
        assert_eq!(
            o.stderr.lines().count(),
            1,
            "`sync run --once` on {}: stderr is not just the stats line: {:?}",
            self.name,
            o.stderr
        );
        parse_stats(o.stderr.trim_end())
    }

    /// `sync status --json`, parsed.
    pub fn sync_status(&self) -> Vec<Value> {
        match json(&self.ok(&["sync", "status", "--json"])) {
            Value::Array(a) => a,
            other => panic!("sync status --json is not an array: {other}"),
        }
    }

    /// The `sync status --json` row of one partner.
    pub fn channel(&self, partner: &str) -> Value {
        self.sync_status()
            .into_iter()
            .find(|r| r["partner"] == partner)
            .unwrap_or_else(|| panic!("{} has no partner {partner} in sync status", self.name))
    }

    /// Outbound (partner, seq, hash) of every partner.
    pub fn outbound_heads(&self) -> Vec<(String, u64, String)> {
        self.sync_status()
            .iter()
            .map(|r| {
                (
                    r["partner"].as_str().unwrap_or_default().to_string(),
                    r["outbound"]["seq"].as_u64().expect("outbound seq"),
                    r["outbound"]["hash"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                )
            })
            .collect()
    }

    /// `partner list --json`, parsed.
    pub fn partners(&self) -> Vec<Value> {
        match json(&self.ok(&["partner", "list", "--json"])) {
            Value::Array(a) => a,
            other => panic!("partner list --json is not an array: {other}"),
        }
    }

    /// The state of partner `name` in `partner list --json` (`None` when not listed).
    pub fn partner_state(&self, name: &str) -> Option<String> {
        self.partners()
            .iter()
            .find(|p| p["name"] == name)
            .map(|p| p["state"].as_str().expect("state").to_string())
    }

    /// The log length by `verify --json`, asserting the chain is intact.
    pub fn log_len(&self) -> u64 {
        let o = self.run(&["verify", "--json"]);
        assert_eq!(o.code, OK, "verify on {}: {o:?}", self.name);
        let v = json(o.stdout.trim());
        assert_eq!(v["ok"], true, "verify on {}: {v}", self.name);
        v["checked"].as_u64().expect("checked")
    }

    /// The sum of `quarantined` over all partners.
    pub fn quarantined(&self) -> u64 {
        self.sync_status()
            .iter()
            .map(|r| r["quarantined"].as_u64().expect("quarantined"))
            .sum()
    }

    /// Invites `partner` and returns the code (the last line of the output).
    pub fn invite(&self, partner: &str, extra: &[&str]) -> String {
        let mut args = vec!["partner", "invite", partner];
        args.extend_from_slice(extra);
        let out = self.ok(&args);
        out.lines().last().expect("invite prints lines").to_string()
    }
}

/// Pairs `lead` with `partner`: invite, join, then the partner's and the lead's daemons.
pub fn pair(lead: &Site, partner: &Site) {
    let code = lead.invite(&partner.name, &[]);
    partner.ok(&["partner", "join", &code, "--map-organization", "Lead Corp"]);
    partner.sync();
    lead.sync();
    assert_eq!(
        lead.partner_state(&partner.name).as_deref(),
        Some("paired"),
        "{} does not list {} as paired",
        lead.name,
        partner.name
    );
    assert_eq!(
        partner.partner_state(&lead.name).as_deref(),
        Some("paired"),
        "{} does not list {} as paired",
        partner.name,
        lead.name
    );
}

/// Delivers what `from` has pending to `to`: `from` publishes, `to` applies.
pub fn deliver(from: &Site, to: &Site) {
    from.sync();
    to.sync();
}

/// Runs both drains in turn twice, so that everything either side has is applied on the other.
pub fn settle(a: &Site, b: &Site) {
    a.sync();
    b.sync();
    a.sync();
    b.sync();
}

/// Asserts both sides show the same outsource status for the ticket.
#[track_caller]
pub fn assert_status(lead: &Site, partner: &Site, id: &str, want: &str) {
    let l = lead.outsource_status(id);
    let p = partner.outsource_status(id);
    assert_eq!(
        (l.as_deref(), p.as_deref()),
        (Some(want), Some(want)),
        "outsource status of {id}: {} says {l:?}, {} says {p:?}; expected {want:?} on both",
        lead.name,
        partner.name
    );
}

/// A fresh network with `acme` (alice) paired with `bolt` (bob) as its partner.
pub fn acme_and_bolt() -> (Net, Site, Site) {
    acme_and_bolt_on(false)
}

/// `acme_and_bolt`, with bolt on PostgreSQL when `bolt_on_postgres` is set.
pub fn acme_and_bolt_on(bolt_on_postgres: bool) -> (Net, Site, Site) {
    let net = Net::start();
    let acme = net.instance("acme", "alice");
    let bolt = net.instance_on("bolt", "bob", bolt_on_postgres);
    pair(&acme, &bolt);
    (net, acme, bolt)
}

/// The lead creates a ticket and sends it to the partner (hourly 80 EUR, 2 days to
/// respond); the partner receives it. Returns the ticket id.
pub fn sent(lead: &Site, partner: &Site, title: &str) -> String {
    let id = lead.create(title);
    lead.ok(&[
        "outsource",
        "send",
        &id,
        "--to",
        &partner.name,
        "--hourly-rate",
        "80",
        "--currency",
        "EUR",
        "--respond-within",
        "2d",
    ]);
    deliver(lead, partner);
    assert_status(lead, partner, &id, "Assigned");
    id
}

/// `sent`, then the partner accepts and the lead hears of it: the link is live (Accepted).
pub fn live(lead: &Site, partner: &Site, title: &str) -> String {
    let id = sent(lead, partner, title);
    partner.ok(&["outsource", "accept", &id]);
    deliver(partner, lead);
    assert_status(lead, partner, &id, "Accepted");
    id
}

/// The items of a `ticket show --json` view.
pub fn items_of(v: &Value) -> Vec<Value> {
    v["items"].as_array().expect("items array").clone()
}

/// The item with this id, if the view has it.
pub fn find_item(v: &Value, item: &str) -> Option<Value> {
    items_of(v).into_iter().find(|i| i["id"] == item)
}

/// The item with this id; panics naming the instance when missing.
#[track_caller]
pub fn get_item(site: &Site, ticket: &str, item: &str) -> Value {
    let v = site.show(ticket);
    find_item(&v, item).unwrap_or_else(|| panic!("{} has no item {item}: {v}", site.name))
}

/// Deterministic, incompressible test content of `len` bytes.
pub fn pseudo_random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}
