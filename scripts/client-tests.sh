#!/usr/bin/env bash
# Drives the gateway with the official Python SDKs from PyPI. Creates .venv on first use.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r tests/clients/requirements.txt

cargo build --quiet --bin kiro-gateway
export KIRO_GATEWAY_BIN="$PWD/target/debug/kiro-gateway"
.venv/bin/python -m pytest -q tests/clients
