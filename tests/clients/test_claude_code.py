"""Claude Code itself (`@anthropic-ai/claude-code`, pinned in package.json) in print mode against
the gateway, offline: telemetry, auto-update and non-essential traffic are off, and HOME is an
empty directory so no user settings or login apply. Its only connection is to the gateway
(checked with strace while building this test: without the switches it also resolves
api.anthropic.com and calls /api/hello on the base URL)."""
import os
import subprocess

import pytest

CLAUDE = os.environ.get("CLAUDE_CODE_BIN", "tests/clients/node_modules/.bin/claude")


def _run_claude(gateway_url, api_key, tmp_path, *args):
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": gateway_url,
        "ANTHROPIC_API_KEY": api_key,
        "DISABLE_TELEMETRY": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    }
    return subprocess.run(
        [CLAUDE, *args],
        env=env,
        cwd=str(tmp_path),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=180,
    )


# Skips only when the binary is not installed (no npm); a run that fails fails the test.
needs_claude = pytest.mark.skipif(
    not os.path.exists(CLAUDE), reason=f"Claude Code is not installed at {CLAUDE} (npm missing?)"
)


@needs_claude
@pytest.mark.parametrize(
    "model",
    [
        "claude-sonnet-4-5",
        # Claude Code's own aliases: `sonnet` is sent as `claude-sonnet-5-5` with `system`
        # messages inside `messages` (per-turn-control beta); `haiku` as `claude-haiku-5-5`.
        "sonnet",
        "haiku",
        "claude-3-5-haiku-20241022",
    ],
)
def test_claude_code_prints_the_upstream_answer(gateway_url, api_key, tmp_path, model):
    result = _run_claude(
        gateway_url, api_key, tmp_path, "-p", "Say hello [fake:text:HELLO-FROM-FAKE]", "--model", model
    )
    assert result.returncode == 0, f"stdout={result.stdout!r} stderr={result.stderr!r}"
    assert "HELLO-FROM-FAKE" in result.stdout, f"stdout={result.stdout!r} stderr={result.stderr!r}"
