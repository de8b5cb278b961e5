"""Starts one kiro-gateway in demo mode (built-in fake Kiro upstream) for the client tests."""
import os
import socket
import subprocess
import time

import httpx
import pytest

API_KEY = "client-test-key"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def gateway_url():
    binary = os.environ.get("KIRO_GATEWAY_BIN", "target/debug/kiro-gateway")
    port = _free_port()
    env = dict(os.environ)
    env.update(
        {
            "PROXY_API_KEY": API_KEY,
            "SERVER_HOST": "127.0.0.1",
            "SERVER_PORT": str(port),
            "LOG_LEVEL": "info",
        }
    )
    for name in ("REFRESH_TOKEN", "KIRO_CREDS_FILE", "KIRO_CLI_DB_FILE", "DATABASE_URL"):
        env.pop(name, None)
    log = open(os.path.join(os.environ.get("TMPDIR", "/tmp"), f"kiro-gateway-clients-{port}.log"), "w")
    proc = subprocess.Popen([binary, "serve", "--demo"], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"gateway exited early with {proc.returncode}; see {log.name}")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.time() > deadline:
            proc.kill()
            raise RuntimeError(f"gateway did not become healthy; see {log.name}")
        time.sleep(0.1)
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture()
def api_key():
    return API_KEY
