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
