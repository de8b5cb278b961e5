#!/usr/bin/env bash
# Runs every test suite of kiro-gateway: formatting, lints, unit and end-to-end tests, and the
# real-client tests (official `openai` and `anthropic` Python packages against the gateway in
# demo mode). Sets up what it needs itself: a Python venv under .venv.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo test (unit and end-to-end; store tests on SQLite, a throwaway PostgreSQL and Redis)"
# shellcheck source=scripts/pg.sh
source scripts/pg.sh
# shellcheck source=scripts/redis.sh
source scripts/redis.sh
cargo test --workspace

step "real clients (Python SDKs against the gateway)"
bash scripts/client-tests.sh
