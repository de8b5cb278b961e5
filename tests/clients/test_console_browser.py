"""The web console in a real browser: Debian's chromium driven through chromedriver (WebDriver).

An operator signs in, creates a user with a quota and a key, creates an agent, tops it up and
gives it a key; the reseller signs in, creates its own user, transfers credit to it and makes
it a key; that user sends a chat request with the key and then sees its usage chart. Every
page visited is saved as a PNG under target/console-screenshots/ so a person can look at them.

The gateway runs in demo mode (built-in fake Kiro) with its own SQLite database.
"""
import os
import shutil
import socket
import subprocess
import tempfile
import time

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import (
    NoSuchElementException,
    StaleElementReferenceException,
    WebDriverException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

ADMIN_KEY = "console-browser-admin-key"
SHOTS = os.path.join(os.environ.get("CARGO_TARGET_DIR", "target"), "console-screenshots")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def console():
    binary = os.environ.get("KIRO_GATEWAY_BIN", "target/debug/kiro-gateway")
    work = tempfile.mkdtemp(prefix="kg-console-")
    port = _free_port()
    env = dict(os.environ)
    for name in ("REFRESH_TOKEN", "KIRO_CREDS_FILE", "KIRO_CLI_DB_FILE", "PROXY_API_KEY"):
        env.pop(name, None)
    env.update(
        {
            "ADMIN_API_KEY": ADMIN_KEY,
            "DATABASE_URL": f"sqlite://{work}/gw.db",
            "SERVER_HOST": "127.0.0.1",
            "SERVER_PORT": str(port),
        }
    )
    log = open(os.path.join(work, "gateway.log"), "w")
    proc = subprocess.Popen(
        [binary, "serve", "--demo", "--secret-key-file", os.path.join(work, "secret.key")],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"gateway exited early; see {log.name}")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.time() > deadline:
            proc.kill()
            raise RuntimeError(f"gateway did not start; see {log.name}")
        time.sleep(0.1)
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()
    shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def browser():
    chromium = shutil.which("chromium")
    driver_path = shutil.which("chromedriver")
    assert chromium and driver_path, "apt-get install chromium chromium-driver (scripts/client-tests.sh does)"
    profile = tempfile.mkdtemp(prefix="kg-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        "--window-size=1366,900",
        "--lang=en-US",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.implicitly_wait(2)
    os.makedirs(SHOTS, exist_ok=True)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def shot(driver, name):
    # Full page: grow the window to the document's height first.
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1366, max(900, min(height + 40, 4000)))
    driver.save_screenshot(os.path.join(SHOTS, f"{name}.png"))
    driver.set_window_size(1366, 900)


# A find that lands while Chromium swaps documents can hit a node already gone ("stale", or
# "Node with given id does not belong to the document"): look again until the page settles.
SETTLING = (NoSuchElementException, StaleElementReferenceException, WebDriverException)


def by_testid(driver, name):
    return WebDriverWait(driver, 30, ignored_exceptions=SETTLING).until(
        lambda d: d.find_element(By.CSS_SELECTOR, f'[data-testid="{name}"]')
    )


def text_of(driver, name):
    return WebDriverWait(driver, 30, ignored_exceptions=SETTLING).until(
        lambda d: by_testid(d, name).text
    )


def is_gone(element):
    """True once the element left the document. Selenium's `staleness_of` knows only the stale
    error; Chromium may instead answer "Node with given id does not belong to the document",
    which says the same thing."""
    try:
        element.is_enabled()
        return False
    except (StaleElementReferenceException, WebDriverException):
        return True


def submit(driver, button):
    """Clicks a submit button (an element, or its data-testid, which is looked up again if the
    page was still settling) and waits for the next page to have loaded."""
    for attempt in range(5):
        try:
            element = by_testid(driver, button) if isinstance(button, str) else button
            old = driver.find_element(By.TAG_NAME, "html")
            element.click()
            break
        except SETTLING:
            if attempt == 4 or not isinstance(button, str):
                raise
            time.sleep(0.3)
    WebDriverWait(driver, 30).until(lambda _: is_gone(old))
    WebDriverWait(driver, 30).until(
        lambda d: d.execute_script("return document.readyState") == "complete"
    )


def fill(driver, form, fields):
    for name, value in fields.items():
        element = form.find_element(By.NAME, name)
        if element.tag_name == "select":
            element.find_element(By.CSS_SELECTOR, f'option[value="{value}"]').click()
        else:
            element.clear()
            element.send_keys(value)


def sign_in(driver, url, key):
    driver.delete_all_cookies()
    driver.get(url + "/console/login")
    by_testid(driver, "login-key").send_keys(key)
    submit(driver, "login-submit")


def chat(url, key, text):
    response = httpx.post(
        url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": "claude-sonnet-4.5", "messages": [{"role": "user", "content": text}]},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_operator_reseller_and_user_in_a_real_browser(console, browser):
    d = browser
    # --- the operator ---
    d.get(console + "/console/login")
    shot(d, "00-login")
    by_testid(d, "login-key").send_keys("sk-not-a-key")
    submit(d, "login-submit")
    assert "not valid" in text_of(d, "login-error")
    sign_in(d, console, ADMIN_KEY)
    assert d.current_url.endswith("/console/admin")
    assert by_testid(d, "chart-24h").tag_name == "svg"
    # The session cookie is out of JavaScript's reach.
    assert "kg_console" not in d.execute_script("return document.cookie")

    d.get(console + "/console/admin/users")
    form = by_testid(d, "new-user")
    fill(d, form, {"name": "alice", "quota": "25"})
    submit(d, "new-user-submit")
    assert "/console/admin/users/" in d.current_url
    assert "Saved." in text_of(d, "flash")
    shot(d, "02-admin-user")
    form = by_testid(d, "user-new-key")
    fill(d, form, {"name": "alice laptop"})
    submit(d, "create-key")
    alice_key = text_of(d, "new-key")
    assert alice_key.startswith("sk-")
    shot(d, "03-admin-key-created")

    # A few requests so the overview has something to show.
    for i in range(3):
        chat(console, alice_key, f"hello {i}")

    d.get(console + "/console/admin/agents")
    fill(d, by_testid(d, "new-agent"), {"name": "reseller-one"})
    submit(d, "new-agent-submit")
    agent_id = d.find_element(By.CSS_SELECTOR, '[data-testid^="agent-balance-"]').get_attribute("data-testid").rsplit("-", 1)[1]
    by_testid(d, f"topup-amount-{agent_id}").send_keys("100")
    submit(d, f"topup-submit-{agent_id}")
    assert by_testid(d, f"agent-balance-{agent_id}").text == "100"
    shot(d, "04-admin-agents")
    d.get(console + "/console/admin/keys")
    fill(d, by_testid(d, "new-key"), {"kind": "agent", "agent_id": agent_id, "name": "reseller key"})
    submit(d, "create-admin-key")
    agent_key = text_of(d, "new-key")
    assert agent_key.startswith("sk-")

    for name, path in [
        ("06-admin-users", "/console/admin/users"),
        ("07-admin-keys", "/console/admin/keys"),
        ("08-admin-models", "/console/admin/models"),
        ("09-admin-usage-by-model", "/console/admin/usage?group_by=model"),
        ("10-admin-usage-by-hour", "/console/admin/usage?group_by=hour"),
        ("11-admin-audit", "/console/admin/audit"),
        ("12-admin-debug", "/console/admin/debug"),
    ]:
        d.get(console + path)
        assert d.find_element(By.TAG_NAME, "h1").text
        shot(d, name)
    # The overview counts the chats.
    d.get(console + "/console/admin")
    assert text_of(d, "card-requests") == "3"
    # An account added by pasting a refresh token (the fake Kiro's), then bulk actions:
    # select every account, disable, enable again.
    d.get(console + "/console/admin/accounts")
    fill(d, by_testid(d, "account-add-form"), {"name": "pasted", "refresh_token": "aorFAKE-refresh-token-0001"})
    submit(d, "account-add")
    assert "Saved." in text_of(d, "flash")
    assert "pasted" in text_of(d, "accounts")
    d.find_element(By.CSS_SELECTOR, 'input[data-select-all="id"]').click()
    submit(d, "bulk-disable")
    assert "disabled" in text_of(d, "accounts")
    d.find_element(By.CSS_SELECTOR, 'input[data-select-all="id"]').click()
    submit(d, "bulk-enable")
    assert "healthy" in text_of(d, "accounts")
    # Kiro's usage limits for the account, fetched from the fake's getUsageLimits.
    cell = d.find_element(By.CSS_SELECTOR, '[data-testid^="usage-limits-"]')
    account_id = cell.get_attribute("data-testid").rsplit("-", 1)[1]
    assert "not fetched" in cell.text
    submit(d, f"usage-{account_id}")
    assert "15.50 / 550" in text_of(d, f"usage-limits-{account_id}")
    # The table fits a 1366 px window: no sideways scrolling.
    scroll = d.execute_script(
        "const t = document.querySelector('[data-testid=accounts]').parentElement;"
        "return [t.scrollWidth, t.clientWidth];"
    )
    assert scroll[0] <= scroll[1], scroll
    shot(d, "05-admin-accounts")
    d.get(console + "/console/admin")
    assert text_of(d, "card-accounts") == "1 / 1"
    shot(d, "01-admin-overview")
    submit(d, "logout")
    assert d.current_url.endswith("/console/login")

    # --- the reseller ---
    sign_in(d, console, agent_key)
    assert d.current_url.endswith("/console/agent"), d.page_source
    assert text_of(d, "agent-balance") == "100"
    # Not the operator's pages.
    d.get(console + "/console/admin")
    assert "Not allowed" in d.find_element(By.TAG_NAME, "h1").text
    d.get(console + "/console/agent")
    fill(d, by_testid(d, "agent-new-user-form"), {"name": "bob"})
    submit(d, "agent-new-user-submit")
    assert "/console/agent/users/" in d.current_url
    by_testid(d, "transfer-amount").send_keys("20")
    submit(d, "transfer-submit")
    assert text_of(d, "agent-balance") == "80"
    assert text_of(d, "agent-user-quota").startswith("0 / 20")
    shot(d, "20-agent-user")
    fill(d, by_testid(d, "agent-new-key"), {"name": "bob key"})
    submit(d, "create-key")
    bob_key = text_of(d, "new-key")
    assert bob_key.startswith("sk-")
    d.get(console + "/console/agent")
    shot(d, "21-agent-overview")
    d.get(console + "/console/agent/transfers")
    assert "20" in text_of(d, "agent-transfers")
    shot(d, "22-agent-transfers")

    # --- the user ---
    answer = chat(console, bob_key, "hello from bob")
    assert answer["choices"][0]["message"]["content"]
    sign_in(d, console, bob_key)
    assert d.current_url.endswith("/console/user")
    def today_bar():
        bars = d.find_elements(By.CSS_SELECTOR, '[data-testid="user-usage-chart"] rect.bar')
        assert len(bars) == 30, "one bar per day of the last 30"
        return float(bars[-1].get_attribute("height"))

    deadline = time.time() + 10
    while today_bar() <= 0:
        assert time.time() < deadline, "the usage chart never showed the request"
        time.sleep(0.3)
        d.refresh()
    assert "hello" not in d.page_source, "the page shows usage, not content"
    assert "/v1" in text_of(d, "base-url")
    shot(d, "30-user-overview")
    d.get(console + "/console/user/keys")
    shot(d, "31-user-keys")
    d.get(console + "/console/user/models")
    shot(d, "32-user-models")
    # Chinese.
    submit(d, "lang")
    d.get(console + "/console/user")
    assert "概览" in d.find_element(By.TAG_NAME, "h1").text
    shot(d, "33-user-overview-zh")


def test_operator_signs_in_an_account_through_builder_id(console, browser):
    """The add-account wizard: Builder ID against the demo's fake, Allow on its page."""
    d = browser
    sign_in(d, console, ADMIN_KEY)
    d.get(console + "/console/admin/accounts")
    form = by_testid(d, "signin-form")
    fill(d, form, {"method": "builder-id", "name": "wizard-browser"})
    shot(d, "20-admin-signin-form")
    submit(d, "signin-start")
    flow = d.current_url
    assert "/console/admin/accounts/login/" in flow
    assert by_testid(d, "signin-status").get_attribute("data-status") == "pending"
    code = text_of(d, "signin-user-code")
    assert code
    shot(d, "21-admin-signin-pending")
    # The operator opens the verification page (the fake's) and presses Allow.
    d.get(by_testid(d, "signin-verify").get_attribute("href"))
    assert code in d.page_source
    submit(d, d.find_element(By.CSS_SELECTOR, 'button[value="allow"]'))
    # Back on the flow page, the meta refresh brings the result without any click.
    d.get(flow)
    WebDriverWait(d, 40, ignored_exceptions=(StaleElementReferenceException, NoSuchElementException)).until(
        lambda drv: drv.find_element(By.CSS_SELECTOR, '[data-testid="signin-status"]').get_attribute("data-status")
        in ("succeeded", "failed", "denied", "expired")
    )
    assert by_testid(d, "signin-status").get_attribute("data-status") == "succeeded", d.page_source
    assert "wizard-browser" in text_of(d, "signin-account")
    shot(d, "22-admin-signin-succeeded")
    submit(d, "signin-account")
    assert "wizard-browser" in text_of(d, "accounts")
