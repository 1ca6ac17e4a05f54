//! End-to-end tests with live sync daemons: `ticketsync sync run` (no `--once`) for both
//! instances as child processes over a real nats-server. A change made with the CLI on one
//! side must show on the other within the timeout; the observed delay is reported in the
//! assertion messages, not bounded below the timeout. The daemons stop cleanly on SIGTERM.

mod common;
#[path = "common/two.rs"]
mod two;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ticketsync_testkit::wait_until;
use two::*;

/// How long a change may take to reach the other side.
const TIMEOUT: Duration = Duration::from_secs(5);

/// A `ticketsync sync run` child process; killed (SIGKILL) if the test ends without
/// stopping it.
struct Daemon {
    name: String,
    child: Option<Child>,
}

impl Daemon {
    fn start(site: &Site) -> Daemon {
        let child = Command::new(env!("CARGO_BIN_EXE_ticketsync"))
            .arg("--data-dir")
            .arg(&site.dir)
            .args(["sync", "run"])
            .env("TICKETSYNC_USER", &site.user)
            .env_remove("TICKETSYNC_DATA_DIR")
            .env_remove("TICKETSYNC_LOG")
            .env_remove("TICKETSYNC_NATS_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start ticketsync sync run");
        Daemon {
            name: site.name.clone(),
            child: Some(child),
        }
    }

    /// Sends SIGTERM and waits; asserts the daemon exited 0 and printed its counters.
    fn stop(mut self) -> SyncStats {
        let child = self.child.take().expect("running");
        let pid = child.id();
        assert!(common::signal(pid, "TERM"), "kill -TERM {pid} failed");
        let out = child.wait_with_output().expect("wait for the daemon");
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(
            out.status.code(),
            Some(0),
            "the {} daemon did not exit 0 on SIGTERM: {:?}, stderr: {stderr}",
            self.name,
            out.status
        );
        let line = stderr
            .lines()
            .find(|l| l.starts_with("sync: published"))
            .unwrap_or_else(|| panic!("no counters from the {} daemon: {stderr:?}", self.name));
        parse_stats(line)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Waits until `cond` holds and returns how long it took.
fn observe(what: &str, cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    wait_until(TIMEOUT, what, cond);
    start.elapsed()
}

#[test]
fn given_live_daemons_when_either_side_changes_an_outsourced_ticket_then_the_other_side_shows_it_within_the_timeout(
) {
    let (_net, acme, bolt) = acme_and_bolt();
    let id = sent(&acme, &bolt, "Live");
    let da = Daemon::start(&acme);
    let db = Daemon::start(&bolt);

    // partner accepts: the lead sees Accepted
    bolt.ok(&["outsource", "accept", &id]);
    let d1 = observe("acme to show Accepted", || {
        acme.outsource_status(&id).as_deref() == Some("Accepted")
    });

    // lead adds a note: the partner shows it
    let note = acme.add(&["note", "add", &id, "--text", "Gate code 4711"]);
    let d2 = observe("bolt to show acme's note", || {
        find_item(&bolt.show(&id), &note).is_some_and(|i| i["text"] == "Gate code 4711")
    });

    // partner logs time: the lead shows it, and In Progress
    let time = bolt.add(&["time", "add", &id, "--hours", "1.25"]);
    let d3 = observe("acme to show bolt's time", || {
        let v = acme.show(&id);
        v["outsource_status"] == "In Progress"
            && find_item(&v, &time).is_some_and(|i| i["hours"] == "1.25")
    });

    // partner completes, lead approves
    bolt.ok(&["outsource", "complete", &id]);
    let d4 = observe("acme to show Waiting Approval", || {
        acme.outsource_status(&id).as_deref() == Some("Waiting Approval")
    });
    acme.ok(&["outsource", "approve", &id]);
    let d5 = observe("bolt to show Complete", || {
        bolt.outsource_status(&id).as_deref() == Some("Complete")
    });
    // the partner's daemon issues its invoice on the approval: the lead records it
    let d6 = observe("acme to record bolt's invoice", || {
        let o = acme.run(&["invoice", "show", &id, "--json"]);
        o.code == 0
            && serde_json::from_str::<serde_json::Value>(&o.stdout)
                .is_ok_and(|v| v["number"] == "BOLT-000001" && v["agrees"] == true)
    });
    let delays = [d1, d2, d3, d4, d5, d6];

    let sa = da.stop();
    let sb = db.stop();
    assert!(
        sa.applied >= 3 && sb.applied >= 2,
        "the daemons did the work (acme {sa:?}, bolt {sb:?}); delays observed: {delays:?}"
    );
    // stopped cleanly: both sides hold the same channel heads
    let (a, b) = (acme.channel("bolt"), bolt.channel("acme"));
    assert_eq!(
        (&b["outbound"]["seq"], &b["outbound"]["hash"]),
        (&a["inbound"]["seq"], &a["inbound"]["hash"]),
        "delays observed: {delays:?}"
    );
    assert_eq!(
        (&a["outbound"]["seq"], &a["outbound"]["hash"]),
        (&b["inbound"]["seq"], &b["inbound"]["hash"]),
        "delays observed: {delays:?}"
    );
    assert_eq!(
        (a["outbound"]["lag"].clone(), b["outbound"]["lag"].clone()),
        (serde_json::Value::from(0), serde_json::Value::from(0)),
        "delays observed: {delays:?}"
    );
    eprintln!("live sync delays (accept, note, time, complete, approve): {delays:?}");
}

#[test]
fn given_live_daemons_started_before_pairing_when_the_partner_joins_then_the_lead_lists_it_as_paired_and_a_ticket_arrives(
) {
    let net = Net::start();
    let acme = net.instance("acme", "alice");
    let bolt = net.instance("bolt", "bob");
    let da = Daemon::start(&acme);
    let db = Daemon::start(&bolt);

    let code = acme.invite("bolt", &[]);
    bolt.ok(&["partner", "join", &code]);
    let d1 = observe("acme to list bolt as paired", || {
        acme.partner_state("bolt").as_deref() == Some("paired")
    });
    let id = acme.create("After live pairing");
    acme.ok(&[
        "outsource",
        "send",
        &id,
        "--to",
        "bolt",
        "--hourly-rate",
        "80",
    ]);
    let d2 = observe("bolt to receive the ticket", || {
        bolt.has_ticket(&id) && bolt.outsource_status(&id).as_deref() == Some("Assigned")
    });
    let sa = da.stop();
    let sb = db.stop();
    assert!(
        sa.applied >= 1 && sb.applied >= 1,
        "acme {sa:?}, bolt {sb:?}; delays observed: pairing {d1:?}, send {d2:?}"
    );
    eprintln!("live pairing delay {d1:?}, send delay {d2:?}");
}

/// Bolt's log head and its ticket projection's checkpoint, read from the database file
/// alone (no `ticketsync` command, which would catch the projection up itself).
fn head_and_checkpoint(site: &Site) -> (u64, u64) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        use ticketsync_store::Store as _;
        let s = ticketsync_store::SqliteStore::open(&site.dir.join(ticketsync_app::DB_FILE))
            .await
            .expect("open the database");
        let head = s.head().await.expect("head").position;
        let cp = s
            .projection_checkpoint(ticketsync_projections::TICKETS)
            .await
            .expect("checkpoint");
        (head, cp)
    })
}

#[test]
fn given_live_daemons_when_the_lead_adds_notes_then_the_partners_daemon_projects_them_on_its_own_and_the_lead_s_commands_wake_its_relay(
) {
    let (_net, acme, bolt) = acme_and_bolt();
    let id = sent(&acme, &bolt, "Projected by the daemon");
    let wake = ticketsync_app::wake::wake_path(&acme.dir);
    assert!(!wake.exists(), "no daemon yet, no wake socket");
    let da = Daemon::start(&acme);
    let db = Daemon::start(&bolt);
    wait_until(TIMEOUT, "acme's daemon to bind its wake socket", || {
        wake.exists()
    });
    bolt.ok(&["outsource", "accept", &id]);
    observe("acme to show Accepted", || {
        acme.outsource_status(&id).as_deref() == Some("Accepted")
    });
    let (head_before, _) = head_and_checkpoint(&bolt);
    for i in 0..3 {
        acme.add(&["note", "add", &id, "--text", &format!("Note {i}")]);
    }
    // Three notes arrive as three events; bolt's projection follows its log with no
    // command run on bolt.
    let d = observe("bolt's daemon to apply and project the three notes", || {
        let (head, cp) = head_and_checkpoint(&bolt);
        head >= head_before + 3 && cp == head
    });
    let sa = da.stop();
    let sb = db.stop();
    assert!(
        !wake.exists(),
        "the daemon removes its wake socket when it stops"
    );
    assert!(
        sa.published >= 3 && sb.applied >= 3,
        "acme {sa:?}, bolt {sb:?}; delay {d:?}"
    );
    let v = bolt.show(&id);
    for i in 0..3 {
        let text = format!("Note {i}");
        assert!(
            v["items"]
                .as_array()
                .is_some_and(|items| items.iter().any(|it| it["text"] == text.as_str())),
            "bolt shows {text}: {v}"
        );
    }
}

#[test]
fn given_a_running_daemon_when_a_second_one_starts_on_the_same_instance_then_it_exits_8_naming_the_first_which_keeps_syncing(
) {
    let (_net, acme, bolt) = acme_and_bolt();
    let id = sent(&acme, &bolt, "Locked");
    let da = Daemon::start(&acme);
    let db = Daemon::start(&bolt);
    let pid = da.child.as_ref().expect("running").id().to_string();
    wait_until(TIMEOUT, "acme's daemon to hold its lock", || {
        std::fs::read_to_string(acme.dir.join("sync.lock")).is_ok_and(|t| t.trim() == pid)
    });

    for args in [&["sync", "run", "--once"][..], &["sync", "run"][..]] {
        let o = acme.run(args);
        common::assert_one_line_error(&o, 8, &format!("ticketsync {}", args.join(" ")));
        assert!(
            o.stderr.contains(&format!("process {pid}")) && o.stderr.contains("stop it first"),
            "the refusal names the running daemon and what to do: {}",
            o.stderr
        );
    }

    // The first daemon was not disturbed: it still applies what the partner sends.
    bolt.ok(&["outsource", "accept", &id]);
    observe("acme to show Accepted", || {
        acme.outsource_status(&id).as_deref() == Some("Accepted")
    });
    da.stop();
    db.stop();
}

#[test]
fn given_documents_of_a_retired_projection_when_the_daemon_runs_then_it_deletes_them_in_the_background_and_the_live_one_stays(
) {
    use ticketsync_store::SqliteStore;
    use ticketsync_sync::nats::HOUSEKEEPING_RECLAIM;
    let (_net, acme, bolt) = acme_and_bolt();
    let id = sent(&acme, &bolt, "Reclaimed");
    // What a store schema upgrade that retires a projection leaves: a retired generation's
    // documents, more than one housekeeping round deletes.
    let retired = i64::from(2 * HOUSEKEEPING_RECLAIM + 1);
    let docs = SqliteStore::projections_path(&acme.dir.join("ticketsync.db"));
    let generation: i64 = common::block_on(async {
        let mut c = common::connect(&docs).await;
        let g = sqlx::query("INSERT INTO projection_generations (name, position) VALUES (NULL, 0)")
            .execute(&mut c)
            .await
            .expect("a retired generation")
            .last_insert_rowid();
        sqlx::query(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?2) \
             INSERT INTO projection_docs (generation, key, doc) \
             SELECT ?1, 'old/' || i, x'7b7d' FROM n",
        )
        .bind(g)
        .bind(retired)
        .execute(&mut c)
        .await
        .expect("its documents");
        g
    });
    let left = || -> i64 {
        common::block_on(async {
            let mut c = common::connect(&docs).await;
            sqlx::query_scalar("SELECT count(*) FROM projection_docs WHERE generation = ?")
                .bind(generation)
                .fetch_one(&mut c)
                .await
                .expect("count the retired documents")
        })
    };
    assert_eq!(left(), retired);

    let da = Daemon::start(&acme);
    wait_until(
        Duration::from_secs(30),
        "acme's daemon to delete the retired generation's documents",
        || left() == 0,
    );
    // The live projection is untouched.
    assert!(acme.has_ticket(&id));
    assert_eq!(acme.show(&id)["title"], "Reclaimed");
    da.stop();
}
