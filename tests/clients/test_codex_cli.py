"""Codex CLI itself (`@openai/codex`, pinned in package.json; its Linux binary ships inside the npm
package) in `codex exec` mode against the gateway and the fake Kiro, offline. Codex talks to a
provider of its own (`kiro`, not `openai`: that name would switch on remote compaction) over the
Responses API with WebSockets off, so its only connection is `POST /v1/responses`.

The model is `gpt-5.5`, aliased on the gateway to a Kiro model: Codex's bundled metadata for that
slug offers the freeform `apply_patch` tool, which an unknown slug does not get."""
import json
import os
import socket
import subprocess
import time

import httpx
import pytest

CODEX = os.environ.get("CODEX_BIN", "tests/clients/node_modules/.bin/codex")
KEY = "codex-test-key"
MODEL = "gpt-5.5"

# Skips only when the binary is not installed (no npm); a run that fails fails the test.
needs_codex = pytest.mark.skipif(
    not os.path.exists(CODEX), reason=f"Codex CLI is not installed at {CODEX} (npm missing?)"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def codex_gateway(tmp_path_factory):
    """A gateway of its own: demo mode, no database, the Codex model alias."""
    binary = os.environ.get("KIRO_GATEWAY_BIN", "target/debug/kiro-gateway")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("REFRESH_TOKEN", "KIRO_CREDS_FILE", "KIRO_CLI_DB_FILE")}
    env.update(
        {
            "PROXY_API_KEY": KEY,
            "SERVER_HOST": "127.0.0.1",
            "SERVER_PORT": str(port),
            "DATABASE_URL": "none",
            "MODEL_ALIASES": f"{MODEL}=claude-sonnet-4.5",
            "LOG_LEVEL": "info",
        }
    )
    log_path = tmp_path_factory.mktemp("gateway") / "gateway.log"
    log = open(log_path, "w")
    proc = subprocess.Popen([binary, "serve", "--demo"], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"gateway exited early with {proc.returncode}; see {log_path}")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.time() > deadline:
            proc.kill()
            raise RuntimeError(f"gateway did not become healthy; see {log_path}")
        time.sleep(0.1)
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def _codex_exec(url, tmp_path, prompt):
    """Runs one `codex exec` turn in `tmp_path/work`; returns (result, events, last message)."""
    home = tmp_path / "codex-home"
    home.mkdir(exist_ok=True)
    (home / "config.toml").write_text(
        f"""model = "{MODEL}"
model_provider = "kiro"
check_for_update_on_startup = false
web_search = "disabled"

[model_providers.kiro]
name = "kiro-gateway"
base_url = "{url}/v1"
env_key = "KIRO_GATEWAY_KEY"
wire_api = "responses"
supports_websockets = false
request_max_retries = 0
stream_max_retries = 0
stream_idle_timeout_ms = 60000
"""
    )
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    last = tmp_path / "last.txt"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "CODEX_HOME": str(home),
        "KIRO_GATEWAY_KEY": KEY,
    }
    result = subprocess.run(
        [
            CODEX,
            "exec",
            "--skip-git-repo-check",
            "--ephemeral",
            # Codex's Linux sandbox needs namespaces CI containers rarely grant; the commands
            # run in a temporary directory either way.
            "--sandbox",
            "danger-full-access",
            "--json",
            "-o",
            str(last),
            prompt,
        ],
        env=env,
        cwd=str(work),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=180,
    )
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    message = last.read_text() if last.exists() else ""
    return result, events, message


@needs_codex
def test_codex_runs_a_text_turn(codex_gateway, tmp_path):
    result, events, message = _codex_exec(codex_gateway, tmp_path, "Reply with exactly [fake:text:PONG-FROM-KIRO]")
    assert result.returncode == 0, f"stdout={result.stdout!r} stderr={result.stderr!r}"
    assert message.strip() == "PONG-FROM-KIRO"
    completed = [e for e in events if e.get("type") == "turn.completed"]
    assert completed, events
    assert completed[-1]["usage"]["input_tokens"] > 0
    assert not [e for e in events if e.get("type") in ("turn.failed", "error")], events


@needs_codex
def test_codex_runs_a_shell_command_and_an_apply_patch_then_sends_their_outputs(codex_gateway, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "hello.txt").write_text("hello\n")
    result, events, message = _codex_exec(codex_gateway, tmp_path, "Fix hello.txt [fake:shell_and_patch]")
    assert result.returncode == 0, f"stdout={result.stdout!r} stderr={result.stderr!r}"
    # Codex ran both calls in the working directory ...
    assert (work / "shell.txt").read_text() == "shell-ran-ok\n"
    assert (work / "hello.txt").read_text() == "hello, patched by apply_patch\n"
    kinds = [e["item"]["type"] for e in events if e.get("type") == "item.completed"]
    assert "command_execution" in kinds and "file_change" in kinds, kinds
    # ... and its next request carried both outputs: the fake's answer quotes the tool results
    # it received (the shell's output and apply_patch's report on hello.txt).
    assert "The tool said" in message, message
    assert "shell-ran-ok" in message, message
    assert "hello.txt" in message, message
