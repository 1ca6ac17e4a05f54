#!/usr/bin/env python3
"""Sums up where the applying daemon's time went in a replication bench run.

Reads a daemon log written with
  BENCH_DAEMON_LOG=ticketsync_store=debug,ticketsync_sync=debug,ticketsync_projections=debug BENCH_DAEMON_LOGS=DIR
and prints, for the inbound task and the projection loop, how long each was busy and how
much of that was inside its write transaction (waiting for the write lock, committing) and,
for the inbound task, outside it.
Usage: scripts/repl-stages.py DIR/daemon-bolt.log
"""
import re
import sys
from datetime import datetime

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def field(line, name):
    m = re.search(name + r"=(\d+)", line)
    return int(m.group(1)) if m else 0


def main(path):
    lines = [ANSI.sub("", l) for l in open(path, encoding="utf-8", errors="replace")]
    kinds = {
        "inbound batch committed": "inbound batches",
        "inbound run written": "inbound writes",
        "projections caught up": "projection calls",
        "projection batch written": "projection writes",
        "projection batch computed": "projection batches computed",
    }
    seen = {k: [] for k in kinds}
    for l in lines:
        for k in kinds:
            if k in l:
                seen[k].append(l)
    if not any(seen.values()):
        sys.exit(f"{path}: no debug timings (run the bench with BENCH_DAEMON_LOG set)")
    secs = lambda ls, f: sum(field(l, f) for l in ls) / 1e6
    batches = seen["inbound batch committed"]
    if batches:
        t0 = datetime.fromisoformat(batches[0][:26])
        t1 = datetime.fromisoformat(batches[-1][:26])
        print(f"inbound: {len(batches)} batches over {(t1 - t0).total_seconds():.1f} s, "
              f"{sum(field(l, 'applied') for l in batches)} entries, "
              f"busy {secs(batches, 'apply_us'):.2f} s")
    for key, label in [("inbound run written", "inbound writes"),
                       ("projection batch written", "projection writes")]:
        ls = seen[key]
        if ls:
            print(f"{label}: {len(ls)}, in transaction {secs(ls, 'total_us'):.2f} s "
                  f"(lock wait {secs(ls, 'lock_wait_us'):.2f} s, commit {secs(ls, 'commit_us'):.2f} s)")
        if ls and key == "inbound run written" and batches:
            # What the applier does before it writes: decoding, ticket states, the domain's
            # rules. It and the transaction take turns: the two add up to its busy time.
            outside = secs(batches, "apply_us") - secs(ls, "total_us")
            print(f"inbound outside its transaction (decoding, ticket states, rules): {outside:.2f} s")
    ls = seen["projection batch computed"]
    if ls:
        print(f"projection batches computed: {len(ls)}, {sum(field(l, 'entries') for l in ls)} "
              f"entries, loading {secs(ls, 'load_us'):.2f} s, applying {secs(ls, 'apply_us'):.2f} s")
    calls = seen["projections caught up"]
    if calls:
        print(f"projection: {len(calls)} catch-ups, busy {secs(calls, 'projection_us'):.2f} s")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
