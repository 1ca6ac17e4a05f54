//! Harness for the fault-injection tests: `ticketsync sync run` daemons as child processes
//! that can be killed with SIGKILL or stopped with SIGTERM, an in-process event generator
//! (`ticketsync_app::Instance::execute` on a partner's data directory, thousands of events
//! fast), exactly-once accounting by event id over `replay --json`, channel heads from
//! `sync status --json`, and a plain async-nats client for publishing copies and forgeries.
//!
//! Included with `#[path = "common/faults.rs"] mod faults;` next to `mod common;` and
//! `#[path = "common/two.rs"] mod two;`.

#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use serde_json::Value;
use ticketsync_app::Instance;
use ticketsync_domain::{
    Command as DomainCommand, InstanceId, ItemId, LinkId, OutsourceCommand, OutsourceStatus,
    TicketId, TimeEntry,
};
use ticketsync_testkit::wait_until;
use ulid::Ulid;

use crate::common::{block_on, connect, json_lines, signal};
use crate::two::{deliver, parse_stats, Site, SyncStats};

/// How long the whole system may take to drain after the faults stop.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a daemon may take to exit after SIGTERM.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// A small seeded PRNG (xorshift64*), so a failing run can be repeated with its seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `lo..hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo).max(1)
    }
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = (self.next_u64() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    }
}

/// The seed of a test's RNG: `FAULTS_SEED` when set (to repeat a run), else `default`.
pub fn seed(default: u64) -> u64 {
    std::env::var("FAULTS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// A `ticketsync sync run` child process. Its stderr goes to a file next to the data
/// directories (a pipe nobody reads could fill up and block it). Killed with SIGKILL if the
/// test ends without stopping it.
pub struct Daemon {
    pub name: String,
    child: Option<Child>,
    log: PathBuf,
}

/// How many daemons this test process started (names their log files).
static STARTED: AtomicUsize = AtomicUsize::new(0);

impl Daemon {
    pub fn start(site: &Site) -> Daemon {
        let n = STARTED.fetch_add(1, Ordering::SeqCst);
        let log = site
            .dir
            .with_file_name(format!("{}-daemon-{n}.log", site.name));
        let err = File::create(&log).expect("daemon log file");
        let child = Command::new(env!("CARGO_BIN_EXE_ticketsync"))
            .arg("--data-dir")
            .arg(&site.dir)
            .args(["sync", "run"])
            .env("TICKETSYNC_USER", &site.user)
            .env("TICKETSYNC_LOG", "info")
            .env_remove("TICKETSYNC_DATA_DIR")
            .env_remove("TICKETSYNC_NATS_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(err))
            .spawn()
            .expect("start ticketsync sync run");
        Daemon {
            name: site.name.clone(),
            child: Some(child),
            log,
        }
    }

    /// Starts the daemon and waits until it runs its channels (its SIGTERM handler is
    /// installed by then: a SIGTERM in the first milliseconds of a process, before the
    /// handler exists, ends it by the signal's default action instead).
    pub fn start_ready(site: &Site) -> Daemon {
        let d = Daemon::start(site);
        wait_until(
            STOP_TIMEOUT,
            &format!("the {} daemon to start its channels", site.name),
            || d.log_text().contains("starting channels"),
        );
        d
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// What the daemon wrote on stderr so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: no chance to finish anything.
    pub fn kill9(mut self) {
        let mut c = self.child.take().expect("running");
        c.kill().expect("SIGKILL the daemon");
        c.wait().expect("reap the daemon");
    }

    /// SIGSTOP: the daemon freezes where it is (its connections stay open) until `term`
    /// continues it, so work can pile up for it meanwhile.
    pub fn pause(&self) {
        assert!(
            signal(self.pid(), "STOP"),
            "kill -STOP {} failed",
            self.pid()
        );
    }

    /// SIGCONT: a paused daemon goes on.
    pub fn resume(&self) {
        assert!(
            signal(self.pid(), "CONT"),
            "kill -CONT {} failed",
            self.pid()
        );
    }

    /// SIGTERM (then SIGCONT, for a paused daemon: it wakes with the SIGTERM pending and
    /// handles it amid the work that piled up), then waits (bounded) for the exit; returns
    /// the status and the counters line.
    pub fn term(mut self) -> (ExitStatus, Option<SyncStats>, String) {
        let mut child = self.child.take().expect("running");
        let pid = child.id();
        assert!(signal(pid, "TERM"), "kill -TERM {pid} failed");
        // A running daemon ignores SIGCONT; one that already exited makes this fail, which
        // is fine.
        signal(pid, "CONT");
        let mut status = None;
        let exited = ticketsync_testkit::poll_until(STOP_TIMEOUT, || {
            status = child.try_wait().expect("wait for the daemon");
            status.is_some()
        });
        if !exited {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the {} daemon did not exit within {STOP_TIMEOUT:?} of SIGTERM; log:\n{}",
                self.name,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
        let status = status.expect("exited");
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let stats = log
            .lines()
            .find(|l| l.starts_with("sync: published"))
            .map(parse_stats);
        (status, stats, log)
    }

    /// SIGTERM and asserts a clean exit (0, counters printed); returns the counters.
    pub fn stop(self) -> SyncStats {
        let name = self.name.clone();
        let (status, stats, log) = self.term();
        assert_eq!(
            status.code(),
            Some(0),
            "the {name} daemon did not exit 0 on SIGTERM: {status:?}; log:\n{log}"
        );
        stats.unwrap_or_else(|| panic!("no counters from the {name} daemon; log:\n{log}"))
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

/// `n` tickets the lead creates and sends to the partner, which accepts them: all live
/// (Accepted) on both sides. In-process for speed (a command's cost grows with its
/// ticket's length, so the fault runs spread their events over many tickets); delivered
/// with `sync run --once` and checked with `ticket list --json` on both sides.
pub fn live_tickets(lead: &Site, partner: &Site, n: usize) -> Vec<String> {
    // The first is sent with the CLI; its terms are the template for the others, so this
    // does not depend on how terms are built.
    let first = lead.create("Fault run ticket 0");
    lead.ok(&[
        "outsource",
        "send",
        &first,
        "--to",
        &partner.name,
        "--hourly-rate",
        "80",
        "--currency",
        "EUR",
    ]);
    let first: TicketId = first.parse().expect("ticket id");
    let mut ids = vec![first];
    ids.extend((1..n).map(|_| TicketId(Ulid::new())));
    let (ld, lu) = (lead.dir.clone(), lead.user.clone());
    let to = InstanceId::parse(&partner.name).expect("partner name");
    let sent = ids.clone();
    block_on(async move {
        let inst = Instance::open(&ld, Some(lu)).await.expect("open the lead");
        let (t, _) = inst.load(first).await.expect("load the first ticket");
        let terms = t.expect("the first ticket").links[0].terms[0].clone();
        for (i, id) in sent.iter().enumerate().skip(1) {
            inst.execute(
                *id,
                DomainCommand::CreateTicket {
                    title: format!("Fault run ticket {i}"),
                    description: String::new(),
                    customer: None,
                },
            )
            .await
            .expect("create a ticket");
            inst.execute(
                *id,
                DomainCommand::Outsource(OutsourceCommand::Send {
                    link: LinkId(Ulid::new()),
                    partner: to.clone(),
                    terms: terms.clone(),
                }),
            )
            .await
            .expect("send a ticket");
        }
    });
    deliver(lead, partner);
    let (pd, pu) = (partner.dir.clone(), partner.user.clone());
    let accepted = ids.clone();
    block_on(async move {
        let inst = Instance::open(&pd, Some(pu))
            .await
            .expect("open the partner");
        for id in &accepted {
            inst.execute(
                *id,
                DomainCommand::Outsource(OutsourceCommand::Accept { organization: None }),
            )
            .await
            .expect("accept a ticket");
        }
    });
    deliver(partner, lead);
    for site in [lead, partner] {
        let (dir, user, all) = (site.dir.clone(), site.user.clone(), ids.clone());
        let live = block_on(async move {
            let inst = Instance::open(&dir, Some(user)).await.expect("open");
            let mut live = 0;
            for id in all {
                let (t, _) = inst.load(id).await.expect("load");
                if t.and_then(|t| t.links.last().map(|l| l.status))
                    == Some(OutsourceStatus::Accepted)
                {
                    live += 1;
                }
            }
            live
        });
        assert_eq!(
            live, n,
            "{} does not hold all {n} tickets Accepted",
            site.name
        );
    }
    // and the CLI agrees on the first one
    crate::two::assert_status(lead, partner, &first.to_string(), "Accepted");
    let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
    ids
}

/// The distinct WARN and ERROR messages of a daemon log (ANSI colours, timestamps and
/// numbers left out, so that repeats collapse), each with how often it occurred.
pub fn warnings(logs: &[String]) -> Vec<(String, usize)> {
    let mut seen: Vec<(String, usize)> = vec![];
    for line in logs.iter().flat_map(|l| l.lines()) {
        let mut plain = String::new();
        let mut in_escape = false;
        for c in line.chars() {
            match (in_escape, c) {
                (false, '\u{1b}') => in_escape = true,
                (true, 'm') => in_escape = false,
                (true, _) => {}
                (false, c) if c.is_ascii_digit() => {
                    if !plain.ends_with('#') {
                        plain.push('#');
                    }
                }
                (false, c) => plain.push(c),
            }
        }
        let Some(at) = plain.find(" WARN ").or_else(|| plain.find(" ERROR ")) else {
            continue;
        };
        let msg: String = plain[at + 1..].chars().take(200).collect();
        match seen.iter_mut().find(|(m, _)| *m == msg) {
            Some((_, n)) => *n += 1,
            None => seen.push((msg, 1)),
        }
    }
    seen
}

/// What the generator adds.
#[derive(Clone, Copy, Debug)]
pub enum Mix {
    /// Notes only.
    Notes,
    /// Notes, and every `n`th a time entry.
    NotesAndTimeEvery(usize),
}

/// Adds events to tickets of one instance in-process, on a thread with its own runtime, as
/// fast as the store commits them. `done` counts commands executed so far.
pub struct Generator {
    pub done: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Vec<String>>>,
}

impl Generator {
    /// Starts adding `n` items, round robin over `tickets`, as `site`'s user.
    pub fn start(site: &Site, tickets: &[String], n: usize, mix: Mix) -> Generator {
        let dir = site.dir.clone();
        let user = site.user.clone();
        let tickets: Vec<TicketId> = tickets
            .iter()
            .map(|t| t.parse().expect("ticket id"))
            .collect();
        let done = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (d, s) = (done.clone(), stop.clone());
        let handle = std::thread::spawn(move || {
            block_on(async move {
                let inst = Instance::open(&dir, Some(user))
                    .await
                    .expect("open the instance in-process");
                let mut ids = Vec::with_capacity(n + 8);
                for i in 0..n {
                    if s.load(Ordering::SeqCst) {
                        break;
                    }
                    let cmd = command(i, mix);
                    let written = inst
                        .execute(tickets[i % tickets.len()], cmd)
                        .await
                        .unwrap_or_else(|e| panic!("in-process command {i} failed: {e:#}"));
                    ids.extend(written.iter().map(|e| e.event_id.to_string()));
                    d.fetch_add(1, Ordering::SeqCst);
                }
                ids
            })
        });
        Generator {
            done,
            stop,
            handle: Some(handle),
        }
    }

    pub fn count(&self) -> usize {
        self.done.load(Ordering::SeqCst)
    }

    pub fn finished(&self) -> bool {
        self.handle.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Waits for the generator and returns the ids of every event it appended.
    pub fn join(mut self) -> Vec<String> {
        self.handle
            .take()
            .expect("joined once")
            .join()
            .expect("the generator thread panicked")
    }
}

impl Drop for Generator {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn command(i: usize, mix: Mix) -> DomainCommand {
    let item = ItemId(Ulid::new());
    match mix {
        Mix::NotesAndTimeEvery(k) if k > 0 && i % k == k - 1 => DomainCommand::AddTime {
            item,
            entry: TimeEntry {
                hours: Decimal::new(25, 2),
                offset_hours: Decimal::ZERO,
                resource: "bob".into(),
                role: None,
                summary: format!("fault run work {i}"),
                date: chrono::NaiveDate::from_ymd_opt(2026, 11, 22).expect("a date"),
                billable: true,
            },
        },
        _ => DomainCommand::AddNote {
            item,
            text: format!("fault run note {i}"),
            internal: false,
        },
    }
}

/// Runs `n` commands in-process right now (not in the background); returns the event ids.
pub fn generate(site: &Site, tickets: &[String], n: usize, mix: Mix) -> Vec<String> {
    Generator::start(site, tickets, n, mix).join()
}

/// How often each event id occurs in `site`'s log (`replay --json`).
pub fn event_counts(site: &Site) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for l in json_lines(&site.ok(&["replay", "--json"])) {
        let id = l["event_id"].as_str().expect("event_id").to_string();
        *m.entry(id).or_insert(0) += 1;
    }
    m
}

/// Exactly-once accounting of `expected` event ids in the receiver's log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub expected: usize,
    pub lost: usize,
    pub duplicated: usize,
    /// Event ids held more than once anywhere in the log (not only the expected ones).
    pub duplicated_anywhere: usize,
}

pub fn tally(receiver: &Site, expected: &[String]) -> Tally {
    let counts = event_counts(receiver);
    let distinct: HashSet<&String> = expected.iter().collect();
    assert_eq!(
        distinct.len(),
        expected.len(),
        "the generator returned the same event id twice"
    );
    Tally {
        expected: expected.len(),
        lost: expected
            .iter()
            .filter(|id| !counts.contains_key(*id))
            .count(),
        duplicated: expected
            .iter()
            .map(|id| counts.get(id).copied().unwrap_or(0).saturating_sub(1))
            .sum(),
        duplicated_anywhere: counts.values().map(|c| c.saturating_sub(1)).sum(),
    }
}

/// (seq, hash) of a channel head in a `sync status --json` row.
pub fn head_of(row: &Value, dir: &str) -> (u64, String) {
    (
        row[dir]["seq"].as_u64().expect("seq"),
        row[dir]["hash"].as_str().expect("hash").to_string(),
    )
}

/// The sender's outbound head to `receiver` and the receiver's inbound head from `sender`,
/// both from `sync status --json`.
pub fn heads(sender: &Site, receiver: &Site) -> ((u64, String), (u64, String)) {
    (
        head_of(&sender.channel(&receiver.name), "outbound"),
        head_of(&receiver.channel(&sender.name), "inbound"),
    )
}

/// Quick in-process reads of channel heads while daemons run (the CLI is slower).
pub struct Probe {
    rt: tokio::runtime::Runtime,
    sender: Instance,
    receiver: Instance,
    to: String,
    from: String,
}

impl Probe {
    pub fn new(sender: &Site, receiver: &Site) -> Probe {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let (s, r) = rt.block_on(async {
            (
                Instance::open(&sender.dir, Some(sender.user.clone()))
                    .await
                    .expect("open the sender"),
                Instance::open(&receiver.dir, Some(receiver.user.clone()))
                    .await
                    .expect("open the receiver"),
            )
        });
        Probe {
            rt,
            sender: s,
            receiver: r,
            to: receiver.name.clone(),
            from: sender.name.clone(),
        }
    }
    /// The sender's outbound head seq.
    pub fn sent(&self) -> u64 {
        self.rt
            .block_on(self.sender.store.outbox_head(&self.to))
            .expect("outbox head")
            .seq
    }
    /// The highest outbound seq the broker acknowledged to the sender.
    pub fn acked(&self) -> u64 {
        self.rt
            .block_on(self.sender.store.outbox_acked(&self.to))
            .expect("outbox acked")
    }
    /// The receiver's inbound checkpoint seq.
    pub fn received(&self) -> u64 {
        self.rt
            .block_on(self.receiver.store.inbound_head(&self.from))
            .expect("inbound head")
            .seq
    }
    /// True when the receiver's inbound head equals the sender's outbound head (seq and hash).
    pub fn drained(&self) -> bool {
        self.rt.block_on(async {
            let a = self.sender.store.outbox_head(&self.to).await;
            let b = self.receiver.store.inbound_head(&self.from).await;
            matches!((a, b), (Ok(a), Ok(b)) if a == b)
        })
    }
}

/// Waits until the receiver holds the sender's whole channel; the message names the seqs.
pub fn wait_drained(probe: &Probe, what: &str) {
    let start = Instant::now();
    let mut last = (0, 0);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_until(DRAIN_TIMEOUT, what, || {
            last = (probe.sent(), probe.received());
            probe.drained()
        })
    }));
    if let Err(e) = r {
        panic!(
            "{}; after {:?} the sender's head is {} and the receiver's checkpoint {}",
            e.downcast_ref::<String>().cloned().unwrap_or_default(),
            start.elapsed(),
            last.0,
            last.1
        );
    }
}

/// A ticket's state as `site` folds it from its log (in-process).
pub fn load_ticket(site: &Site, id: &str) -> ticketsync_domain::Ticket {
    let (dir, user) = (site.dir.clone(), site.user.clone());
    let tid: TicketId = id.parse().expect("ticket id");
    block_on(async move {
        let inst = Instance::open(&dir, Some(user)).await.expect("open");
        inst.load(tid)
            .await
            .expect("load")
            .0
            .expect("the ticket exists")
    })
}

/// Polls `cond` until it holds or `timeout` passes; says which (for observing what a
/// test does not assert).
pub fn observe_until(timeout: Duration, cond: impl FnMut() -> bool) -> bool {
    ticketsync_testkit::poll_until(timeout, cond)
}

/// The pair's secret as the partner's SQLite file holds it (`partners.secret`).
pub fn secret_of(site: &Site, partner: &str) -> [u8; 32] {
    let db = site.dir.join("ticketsync.db");
    let partner = partner.to_string();
    block_on(async move {
        let mut c = connect(&db).await;
        let v: Vec<u8> = sqlx::query_scalar("SELECT secret FROM partners WHERE name = ?")
            .bind(&partner)
            .fetch_one(&mut c)
            .await
            .expect("partners.secret");
        v.try_into().expect("a 32-byte secret")
    })
}

/// The signed messages `sender`'s daemon would publish for its outbox entries after seq
/// `after` (built by `ticketsync_sync::outbound_messages`), in small batches of random
/// size (1 to 8 entries) so that there are many to shuffle.
pub fn signed_messages(sender: &Site, to: &str, after: u64, rng: &mut Rng) -> Vec<Vec<u8>> {
    let (dir, user, to) = (sender.dir.clone(), sender.user.clone(), to.to_string());
    let limits: Vec<u32> = (0..100_000).map(|_| rng.range(1, 9) as u32).collect();
    block_on(async move {
        let inst = Instance::open(&dir, Some(user))
            .await
            .expect("open the sender");
        let p = inst
            .store
            .get_partner(&to)
            .await
            .expect("read partner")
            .expect("a partner");
        let head = inst.store.outbox_head(&to).await.expect("outbox head").seq;
        let (mut out, mut cursor, mut i) = (vec![], after, 0);
        while cursor < head {
            let msgs = ticketsync_sync::outbound_messages(&inst, &p, cursor, limits[i])
                .await
                .expect("pack the outbox");
            i += 1;
            for (last, bytes) in msgs {
                cursor = last;
                out.push(bytes);
            }
        }
        out
    })
}

/// The `sync quarantine --json` records of `site`.
pub fn quarantine(site: &Site) -> Vec<Value> {
    match crate::common::json(&site.ok(&["sync", "quarantine", "--json"])) {
        Value::Array(a) => a,
        other => panic!("sync quarantine --json is not an array: {other}"),
    }
}

/// A plain NATS client (not ticketsync's), for publishing copies and forgeries.
pub struct Raw {
    pub rt: tokio::runtime::Runtime,
    pub client: async_nats::Client,
    pub js: async_nats::jetstream::Context,
}

impl Raw {
    pub fn connect(url: &str) -> Raw {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let client = rt
            .block_on(async_nats::connect(url))
            .expect("connect a plain NATS client");
        let js = {
            let _in_runtime = rt.enter();
            async_nats::jetstream::new(client.clone())
        };
        Raw { rt, client, js }
    }

    /// Every message the stream holds now, in stream order.
    pub fn stream_messages(&self, stream: &str) -> Vec<Vec<u8>> {
        self.rt.block_on(async {
            let mut s = self.js.get_stream(stream).await.expect("get the stream");
            let info = s.info().await.expect("stream info").clone();
            let mut out = vec![];
            for seq in info.state.first_sequence..=info.state.last_sequence {
                if let Ok(m) = s.get_raw_message(seq).await {
                    out.push(m.payload.to_vec());
                }
            }
            out
        })
    }

    /// How many messages the stream holds (0 when it does not exist).
    pub fn stream_len(&self, stream: &str) -> u64 {
        use async_nats::jetstream::context::GetStreamErrorKind;
        self.rt.block_on(async {
            match self.js.get_stream(stream).await {
                Ok(mut s) => s.info().await.expect("stream info").state.messages,
                Err(e) if matches!(e.kind(), GetStreamErrorKind::JetStream(ref j) if j.error_code() == async_nats::jetstream::ErrorCode::STREAM_NOT_FOUND) => 0,
                Err(e) => panic!("cannot read stream {stream}: {e}"),
            }
        })
    }

    /// True when the durable consumer has nothing left to deliver and nothing unacknowledged.
    pub fn consumer_idle(&self, stream: &str, durable: &str) -> bool {
        self.rt.block_on(async {
            let Ok(s) = self.js.get_stream(stream).await else {
                return false;
            };
            match s.consumer_info(durable).await {
                Ok(i) => i.num_pending == 0 && i.num_ack_pending == 0,
                Err(_) => false,
            }
        })
    }

    /// Publishes to JetStream with a `Nats-Msg-Id` and waits for the broker's ack.
    pub fn publish(&self, subject: &str, msg_id: &str, payload: Vec<u8>) {
        self.rt.block_on(async {
            let mut h = async_nats::HeaderMap::new();
            h.insert(async_nats::header::NATS_MESSAGE_ID, msg_id);
            self.js
                .publish_with_headers(subject.to_string(), h, payload.into())
                .await
                .expect("publish")
                .await
                .expect("broker ack");
        })
    }
}
