#!/usr/bin/env bash
# Drives the gateway with real clients: the official Python SDKs from PyPI (in .venv, created on
# first use), Claude Code and Codex CLI from npm (pinned in tests/clients/package.json, installed
# into tests/clients/node_modules).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r tests/clients/requirements.txt

# Claude Code ships a native binary through an optional dependency; its postinstall puts it in
# place. `npm ci` would need a lock file per platform, so install the pinned version instead.
if command -v npm >/dev/null 2>&1; then
  wanted=$(sed -n 's/.*"@anthropic-ai\/claude-code": "\(.*\)".*/\1/p' tests/clients/package.json)
  installed=$(sed -n 's/.*"version": "\(.*\)".*/\1/p' \
    tests/clients/node_modules/@anthropic-ai/claude-code/package.json 2>/dev/null || true)
  wanted_codex=$(sed -n 's/.*"@openai\/codex": "\(.*\)".*/\1/p' tests/clients/package.json)
  installed_codex=$(sed -n 's/.*"version": "\(.*\)".*/\1/p' \
    tests/clients/node_modules/@openai/codex/package.json 2>/dev/null || true)
  # Codex's native binary comes in an optional dependency: never install with --omit=optional.
  if [ "$installed" != "$wanted" ] || [ "$installed_codex" != "$wanted_codex" ]; then
    (cd tests/clients && npm install --no-audit --no-fund --no-package-lock --loglevel=error)
  fi
else
  echo "npm not found: the Claude Code test will be skipped" >&2
fi

# The console's browser test drives Debian's chromium through chromedriver (WebDriver); a CJK
# font so the Chinese pages' screenshots are legible.
if ! command -v chromedriver >/dev/null 2>&1 || ! fc-list 2>/dev/null | grep -qi "wenquanyi\|noto sans cjk"; then
  SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver fonts-wqy-microhei >/dev/null
fi

cargo build --quiet --bin kiro-gateway
export KIRO_GATEWAY_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/kiro-gateway"
export CLAUDE_CODE_BIN="$PWD/tests/clients/node_modules/.bin/claude"
export CODEX_BIN="$PWD/tests/clients/node_modules/.bin/codex"
.venv/bin/python -m pytest -q tests/clients
