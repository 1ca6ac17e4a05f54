//! `ticketsync-bench`: measures the figures of the benchmark contract (`make bench`), each
//! next to the raw baseline it is compared to, measured in the same run, and writes them as
//! JSON. Sizes default to the contract's and can be lowered to iterate.

mod local;
mod log;
mod repl;
mod report;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::Parser;
use ticketsync_app::{Instance, CONFIG_FILE};
use ticketsync_testkit::NatsServer;

use report::Report;

#[derive(Parser, Debug)]
#[command(about = "ticketsync's benchmark: each figure next to its raw baseline")]
struct Args {
    /// Sections to run (default all): append, single, history, log (rebuild and verify, or
    /// one of them alone: rebuild, verify), repl.
    #[arg(long, env = "BENCH_ONLY", value_delimiter = ',')]
    only: Vec<String>,
    /// Events appended by the batched append figure.
    #[arg(long, env = "BENCH_APPEND_EVENTS", default_value_t = 200_000)]
    append_events: u64,
    /// Events per batched append.
    #[arg(long, default_value_t = 1_000)]
    append_batch: u64,
    /// Streams each batched append spans.
    #[arg(long, default_value_t = 10)]
    append_streams: u64,
    /// Commits of the one-event-per-commit figure.
    #[arg(long, env = "BENCH_SINGLE_EVENTS", default_value_t = 2_000)]
    single_events: u64,
    /// Commands on one ticket for the history-growth figure.
    #[arg(long, env = "BENCH_HISTORY", default_value_t = 5_000)]
    history: u64,
    /// Commands compared at the start and at the end of that history.
    #[arg(long, default_value_t = 1_000)]
    history_window: u64,
    /// Events in the log that rebuild and verify walk.
    #[arg(long, env = "BENCH_LOG_EVENTS", default_value_t = 1_000_000)]
    log_events: u64,
    /// Events replicated from acme to bolt by the daemons.
    #[arg(long, env = "BENCH_REPL_EVENTS", default_value_t = 1_000_000)]
    repl_events: u64,
    /// Outsourced tickets the replicated events are spread over.
    #[arg(long, env = "BENCH_REPL_TICKETS", default_value_t = 10_000)]
    repl_tickets: u64,
    /// Messages of the raw JetStream publish baseline.
    #[arg(long, env = "BENCH_RAW_MSGS", default_value_t = 200_000)]
    raw_msgs: u64,
    /// Longest wait for the replication to finish, in seconds.
    #[arg(long, default_value_t = 900)]
    repl_timeout_secs: u64,
    /// Events per second offered while measuring replication latency.
    #[arg(long, default_value_t = 1_000)]
    latency_rate: u64,
    #[arg(long, default_value_t = 5)]
    latency_secs: u64,
    /// One commit on acme every this many ms during the latency run.
    #[arg(long, default_value_t = 10)]
    latency_tick_ms: u64,
    /// The `ticketsync` binary the daemons run (default: next to this one).
    #[arg(long, env = "TICKETSYNC_BIN")]
    ticketsync: Option<PathBuf>,
    /// Where the instances are created (a temporary directory inside it).
    #[arg(long, env = "BENCH_TMP")]
    tmp: Option<PathBuf>,
    /// Keep the generated log of the `log` section in this directory, and reuse it when it
    /// already holds one (for profiling rebuild and verify without generating again).
    #[arg(long, env = "BENCH_LOG_DIR")]
    log_dir: Option<PathBuf>,
    /// Write the sync daemons' logs (`daemon-acme.log`, `daemon-bolt.log`) into this
    /// directory, kept after the run; by default they go into the temporary directory.
    /// With `BENCH_DAEMON_LOG` set to
    /// `ticketsync_store=debug,ticketsync_sync=debug,ticketsync_projections=debug`, the
    /// applier's log says where its time went (`scripts/repl-stages.py` sums it up).
    #[arg(long, env = "BENCH_DAEMON_LOGS")]
    daemon_logs: Option<PathBuf>,
    #[arg(long, default_value = "target/bench/latest.json")]
    out: PathBuf,
}

fn wants(a: &Args, section: &str) -> bool {
    a.only.is_empty() || a.only.iter().any(|s| s == section)
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    format!("{cpus} cpus, {model}")
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let a = Args::parse();
    let base = a.tmp.clone().unwrap_or_else(std::env::temp_dir);
    let tmp = tempfile::Builder::new()
        .prefix("ticketsync-bench-")
        .tempdir_in(&base)
        .with_context(|| format!("cannot create a directory in {}", base.display()))?;
    let dir = tmp.path();
    let mut report = Report {
        started_at: chrono_now(),
        machine: machine(),
        figures: vec![],
    };
    println!(
        "ticketsync-bench on {} (data in {})",
        report.machine,
        dir.display()
    );
    if wants(&a, "append") {
        report.push(
            local::append_batched(dir, a.append_events, a.append_batch, a.append_streams).await?,
        );
    }
    if wants(&a, "single") {
        report.push(local::append_single(dir, a.single_events).await?);
    }
    if wants(&a, "history") {
        report.push(local::command_cost(dir, a.history, a.history_window).await?);
    }
    let (rebuild, verify) = (
        wants(&a, "log") || wants(&a, "rebuild"),
        wants(&a, "log") || wants(&a, "verify"),
    );
    if rebuild || verify {
        let kept = a.log_dir.clone();
        let log_dir = kept.clone().unwrap_or_else(|| dir.join("log"));
        let inst = if kept.is_some() && log_dir.join(CONFIG_FILE).exists() {
            eprintln!("   reusing the log in {}", log_dir.display());
            Instance::open(&log_dir, Some("alice".into())).await?
        } else {
            eprintln!(
                "   generating {} events for rebuild and verify",
                a.log_events
            );
            log::generate(&log_dir, a.log_events).await?
        };
        if rebuild {
            report.push(log::rebuild_figure(&inst).await?);
        }
        if verify {
            report.push(log::verify_figure(&inst).await?);
        }
        drop(inst);
        if kept.is_none() {
            std::fs::remove_dir_all(&log_dir).context("cannot remove the generated log")?;
        }
    }
    if wants(&a, "repl") {
        let bin = match &a.ticketsync {
            Some(b) => b.clone(),
            None => std::env::current_exe()?
                .parent()
                .map(|p| p.join("ticketsync"))
                .context("no directory for the ticketsync binary")?,
        };
        let nats = NatsServer::start();
        let root = dir.join("repl");
        std::fs::create_dir_all(&root)?;
        eprintln!(
            "   pairing acme and bolt, outsourcing {} tickets",
            a.repl_tickets
        );
        let pair = repl::setup(&root, &nats.url(), a.repl_tickets).await?;
        eprintln!("   queueing {} events on acme for bolt", a.repl_events);
        repl::generate_notes(&pair, a.repl_events).await?;
        let o = repl::ReplOptions {
            events: a.repl_events,
            raw_msgs: a.raw_msgs,
            timeout: Duration::from_secs(a.repl_timeout_secs),
            latency_rate: a.latency_rate,
            latency_secs: a.latency_secs,
            latency_tick: Duration::from_millis(a.latency_tick_ms.max(1)),
            bin,
            nats_pid: nats.pid(),
        };
        let logs = match &a.daemon_logs {
            Some(d) => {
                std::fs::create_dir_all(d)
                    .with_context(|| format!("cannot create {}", d.display()))?;
                d.clone()
            }
            None => root.clone(),
        };
        for f in repl::run(&pair, &o, &logs).await? {
            report.push(f);
        }
    }
    report.print_summary();
    report.write_json(&a.out)?;
    println!("wrote {}", a.out.display());
    Ok(())
}

fn chrono_now() -> String {
    ticketsync_domain::Timestamp(ticketsync_app::now_ms()).to_string()
}
