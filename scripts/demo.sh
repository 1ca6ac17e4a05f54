#!/usr/bin/env bash
# The demo: one instance on embedded SQLite in a temporary directory. Creates a ticket,
# logs the work on it, shows it, then replays, verifies and rebuilds the log.
set -euo pipefail
cd "$(dirname "$0")/.."
TS=${TICKETSYNC_BIN:-$PWD/target/release/ticketsync}
work=$(mktemp -d "${TMPDIR:-/tmp}/ticketsync-demo.XXXXXX")
trap 'rm -rf "$work"' EXIT
export TICKETSYNC_DATA_DIR="$work/acme" TICKETSYNC_USER=alice
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "init instance acme (SQLite in $TICKETSYNC_DATA_DIR)"
"$TS" init --instance acme
step "create a ticket"
id=$("$TS" ticket create --title "Printer on floor 3 jams" --customer "Contoso" \
  --description "Paper jams on every second page since Monday.")
echo "$id"
step "work on it"
"$TS" ticket status "$id" "In Progress"
"$TS" note add "$id" --text "Called the customer; replacing the pickup roller."
"$TS" note add "$id" --text "Customer is on the premium plan." --internal
"$TS" time add "$id" --hours 1.5 --offset 0.25 --summary "Replaced pickup roller" --role Technician
"$TS" charge add "$id" --description "Pickup roller" --quantity 1 --unit-cost 18.40 --unit-price 29.90
printf 'roller part no. RM1-0037\n' > "$work/part.txt"
"$TS" attach add "$id" "$work/part.txt"
"$TS" ticket status "$id" Complete
step "the ticket"
"$TS" ticket show "$id"
step "replay (JSON lines, first 2)"
"$TS" replay --json --to 2
step "verify the hash chain"
"$TS" verify
step "rebuild the projection from the log"
"$TS" rebuild
