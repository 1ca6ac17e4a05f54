//! The `ticketsync` binary: parses the command line, runs the command, maps errors to exit codes.

mod billing;
mod cli;
mod commands;
mod exit;
mod partners;
mod render;

use std::process::ExitCode;

use clap::Parser;

/// Most glibc malloc arenas the process keeps. glibc's default (eight per core) gives each
/// thread that allocates at the same time as another (tokio's workers, SQLite's and the
/// log readers' threads) an arena of its own, each keeping what was freed in it: measured
/// with the sync daemon over 300k replicated events, peak RSS 71 MiB with the default and
/// 49 MiB with two, at the same throughput.
#[cfg(target_env = "gnu")]
const MALLOC_ARENAS: libc::c_int = 2;

/// Rust's allocations go to jemalloc (SQLite's, made in C, stay with glibc's malloc, which
/// `MALLOC_ARENAS` tunes). Profiling the sync daemon showed glibc's arena locks contended
/// between tokio's workers and the store's threads (futex waits inside malloc and free):
/// over 1M replicated events, jemalloc took the daemon from 26.3k to 37.3k events/s and its
/// CPU from 40 to 29 s.
#[cfg(target_os = "linux")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's settings, which it reads at its first allocation from this symbol (the
/// `_RJEM_MALLOC_CONF` environment variable still overrides them): one arena (its
/// per-thread caches keep most allocations off the arena's lock), unused pages handed back
/// half a second after they are freed, by a background thread. The daemon's peak RSS over
/// 1M replicated events: 65.5 MiB with two arenas and a second's decay, 55.8 with these,
/// at the same speed; with jemalloc's defaults (four arenas per core, ten seconds) it was
/// near 95 MiB, and purging at once cost a fifth of the speed.
#[cfg(target_os = "linux")]
#[export_name = "_rjem_malloc_conf"]
static JEMALLOC_CONF: JemallocConf =
    JemallocConf(c"narenas:1,dirty_decay_ms:500,muzzy_decay_ms:0,background_thread:true".as_ptr());

/// A C string pointer, as jemalloc's `malloc_conf` is declared (`const char *`).
#[cfg(target_os = "linux")]
#[repr(transparent)]
struct JemallocConf(*const std::ffi::c_char);

// SAFETY: it points at a static, immutable, NUL-terminated string.
#[cfg(target_os = "linux")]
unsafe impl Sync for JemallocConf {}

fn main() -> ExitCode {
    // Before any thread starts; an explicit MALLOC_ARENA_MAX in the environment wins.
    #[cfg(target_env = "gnu")]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets an allocator parameter; it is called before any other
        // thread exists, and a refusal (0) leaves glibc's default in place.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, MALLOC_ARENAS);
        }
    }
    let cli = match cli::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            if !e.use_stderr() {
                // --help and --version: clap's full text on stdout, exit 0.
                let _ = e.print();
                return ExitCode::from(exit::OK);
            }
            // Usage errors: one line (clap adds usage and tips on further lines).
            // The message may continue on indented lines (the missing arguments); join them.
            let text = e.render().to_string();
            let msg: Vec<&str> = text
                .lines()
                .take_while(|l| !l.trim().is_empty() && !l.starts_with("Usage:"))
                .map(str::trim)
                .collect();
            eprintln!("{}", msg.join(" "));
            return ExitCode::from(exit::USAGE);
        }
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TICKETSYNC_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::OTHER);
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            // One line: the outermost message and its causes, joined.
            // Causes whose text the outer message already carries are left out.
            let mut msg = String::new();
            for cause in e.chain() {
                let c = cause.to_string();
                if !msg.contains(&c) {
                    if !msg.is_empty() {
                        msg.push_str(": ");
                    }
                    msg.push_str(&c);
                }
            }
            eprintln!("error: {}", msg.replace('\n', " "));
            ExitCode::from(exit::code_for(&e))
        }
    }
}
