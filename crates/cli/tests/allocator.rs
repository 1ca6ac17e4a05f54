//! The `ticketsync` binary allocates through jemalloc with its own settings (see `main.rs`):
//! jemalloc's statistics at exit name them.
#![cfg(target_os = "linux")]

use std::process::Command;

#[test]
fn the_binary_runs_jemalloc_with_one_arena_and_half_second_decay() {
    let out = Command::new(env!("CARGO_BIN_EXE_ticketsync"))
        .arg("--version")
        // Only adds printing the statistics at exit; the built-in settings stay.
        .env("_RJEM_MALLOC_CONF", "stats_print:true")
        .output()
        .expect("run ticketsync --version");
    assert!(out.status.success(), "{out:?}");
    let stats = String::from_utf8_lossy(&out.stderr);
    for want in [
        "opt.narenas: 1",
        "opt.dirty_decay_ms: 500",
        "opt.muzzy_decay_ms: 0",
        "opt.background_thread: true",
    ] {
        assert!(
            stats.contains(want),
            "no {want:?} in jemalloc's statistics:\n{stats}"
        );
    }
}
