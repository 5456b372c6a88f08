"""The live console in a real browser: Debian's chromium, driven through chromedriver (Selenium),
against ``eip run routes/`` started as an operator starts it.

Also the tool behind the README's picture: ``uv run python -m tests.test_console docs/console.png``
runs the example routes and saves a screenshot of their console.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.wait import WebDriverWait

pytestmark = pytest.mark.rabbitmq  # the example routes need the broker to be ready

ROOT = Path(__file__).resolve().parent.parent
TOKEN = f"console-test-{uuid.uuid4().hex}"
WEBHOOK_KEY = "console-test-webhook-key"
WEBHOOK_ROUTE = "crm-customer-webhook"
WAIT = 20.0  # seconds any one thing may take to show up
START = 40.0  # seconds eip run may take to be ready (it connects to RabbitMQ, loads WSDLs)
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,900",
)
#: Markup in a route's description and in its exception message: the console must show it as
#: text (an <img> here would mean data reached the page as HTML).
HOSTILE = '<img src=x onerror="window.__eipXss=1"><script>window.__eipXss=2</script>&amp;'
PROBE_ROUTES = f"""
from eip import RouteBuilder

HOSTILE = {HOSTILE!r}


def explode(exchange):
    raise ValueError("hostile " + HOSTILE)


class ConsoleProbe(RouteBuilder):
    def configure(self):
        (self.from_("timer:console-probe?repeat_count=1&delay=0.2")
             .route_id("console-probe")
             .description("probe " + HOSTILE)
             .process(explode))
"""
T = TypeVar("T")


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    ops: str  # the management port's base URL
    webhook: str  # the demo webhook's URL on the routes' HTTP port
    log: Path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _call(url: str, data: bytes | None = None, headers: dict[str, str] | None = None) -> Any:
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def _get(url: str) -> Any:
    status, body = _call(url)
    assert status == 200, (url, status, body)
    return body


def wait_for(
    what: str, probe: Callable[[], T | None], server: Server | None = None, within: float = WAIT
) -> T:
    """``probe()`` once it is truthy, polled for at most ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        value = probe()
        if value:
            return value
        if server is not None and server.process.poll() is not None:
            pytest.fail(f"eip run exited while waiting for {what}:\n{server.log.read_text()}")
        if time.monotonic() > deadline:
            tail = server.log.read_text()[-4000:] if server is not None else ""
            pytest.fail(f"{what}: not within {within:g} s\n{tail}")
        time.sleep(0.1)


def start_server(data: Path, extra_routes: list[Path]) -> Server:
    """``eip run routes/`` (and ``extra_routes``) on free ports, ready and done with the demo's
    own webhooks."""
    http_port, management_port = _free_port(), _free_port()
    env = {
        **os.environ,
        "EIP_DATA_DIR": str(data),
        "EIP_HTTP_PORT": str(http_port),
        "EIP_MANAGEMENT_TOKEN": TOKEN,
        "CRM_WEBHOOK_KEYS": WEBHOOK_KEY,
    }
    log = data / "eip-run.log"
    data.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:  # a file, not a pipe nobody reads: the server never blocks
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "eip.cli", "run", "routes/", *map(str, extra_routes)),
                *("--management-port", str(management_port), "--management-host", "127.0.0.1"),
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Server(
        process,
        f"http://127.0.0.1:{management_port}",
        f"http://127.0.0.1:{http_port}/webhooks/crm/customer-changed",
        log,
    )
    wait_for("readiness", lambda: _ready(server), server, within=START)
    # The demo posts two webhooks (one is retried, then dead-lettered): let them finish first.
    wait_for("the demo's webhooks", lambda: _webhook_demo_done(server), server)
    return server


def _ready(server: Server) -> bool:
    try:
        return bool(_call(f"{server.ops}/health/ready")[0] == 200)
    except OSError:
        return False


def _webhook_demo_done(server: Server) -> bool:
    counters = route_info(server, WEBHOOK_ROUTE)["counters"]
    return bool(counters["exchanges_total"] >= 2 and counters["inflight"] == 0)


def stop_server(server: Server) -> None:
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(timeout=10)


def route_info(server: Server, route_id: str) -> dict[str, Any]:
    info: dict[str, Any] = _get(f"{server.ops}/routes/{route_id}")
    return info


def open_browser(profile: Path) -> webdriver.Chrome:
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    driver_path = shutil.which("chromedriver")
    assert driver_path, "chromedriver is missing: apt-get install -y chromium-driver"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    driver.set_page_load_timeout(WAIT)
    driver.set_script_timeout(WAIT)
    return driver


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("console")
    probe = base / "console_probe_routes.py"
    probe.write_text(PROBE_ROUTES)
    running = start_server(base / "data", [probe])
    try:
        yield running
    finally:
        stop_server(running)


@pytest.fixture(scope="module")
def browser(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    driver = open_browser(tmp_path_factory.mktemp("chromium-profile"))
    try:
        driver.get(f"{server.ops}/console")
        yield driver
    finally:
        driver.quit()


def card(browser: WebDriver, route_id: str) -> WebElement:
    return browser.find_element(By.CSS_SELECTOR, f'section.route[data-route="{route_id}"]')


def shown(browser: WebDriver, route_id: str, selector: str) -> str:
    text: str = browser.execute_script(
        "const el = document.querySelector("
        "'section.route[data-route=\"' + arguments[0] + '\"] ' + arguments[1]);"
        "return el ? el.textContent : null;",
        route_id,
        selector,
    )
    return text


FROM_SLOT = 'g.node[data-kind="from"] text.counter'


def test_every_route_is_drawn_with_its_counters(server: Server, browser: WebDriver) -> None:
    routes = {r["id"]: r for r in _get(f"{server.ops}/routes")["routes"]}
    drawn = browser.execute_script(
        "return [...document.querySelectorAll('svg g.route[data-route]')].map(g => g.dataset.route)"
    )
    assert sorted(drawn) == sorted(routes)
    listed = browser.execute_script(
        "return [...document.querySelectorAll('#index a')].map(a => a.dataset.route)"
    )
    assert listed == drawn  # the index on the left names them in the same order
    assert len(routes) > 10  # the example routes, and the probe
    for route_id in routes:  # each picture has its nodes, the from node among them
        nodes = card(browser, route_id).find_elements(By.CSS_SELECTOR, "g.node")
        assert len(nodes) >= 2, route_id
        assert nodes[0].get_attribute("data-kind") == "from"
    slot = re.compile(r"\d+ ex \u00b7 \d+ failed \u00b7 \d+ in flight")
    wait_for(
        "every route's counters on its title and its from node",
        lambda: all(
            slot.fullmatch(shown(browser, r, FROM_SLOT) or "")
            and (shown(browser, r, '[data-counter="total"]') or "").isdigit()
            for r in routes
        ),
    )
    total = route_info(server, WEBHOOK_ROUTE)["counters"]["exchanges_total"]
    assert shown(browser, WEBHOOK_ROUTE, '[data-counter="total"]') == str(total)
    assert shown(browser, WEBHOOK_ROUTE, ".status") == "started"
    assert browser.find_element(By.ID, "ready").text == "ready"
    assert browser.find_element(By.CSS_SELECTOR, "#problems").text == ""


def test_counters_rise_after_messages_are_sent(server: Server, browser: WebDriver) -> None:
    before = route_info(server, WEBHOOK_ROUTE)["counters"]["exchanges_total"]
    wait_for(
        "the page showing the current count",
        lambda: shown(browser, WEBHOOK_ROUTE, '[data-counter="total"]') == str(before),
    )
    sample = (ROOT / "routes" / "samples" / "webhooks" / "evt-20261123-0001.json").read_bytes()
    headers = {"content-type": "application/json", "x-api-key": WEBHOOK_KEY}
    for _ in range(3):
        status, body = _call(server.webhook, sample, headers)
        assert (status, body["status"]) == (200, "synced")
    after = before + 3
    assert route_info(server, WEBHOOK_ROUTE)["counters"]["exchanges_total"] == after
    wait_for(
        "the risen counters on the title and the from node",
        lambda: (
            shown(browser, WEBHOOK_ROUTE, '[data-counter="total"]') == str(after)
            and (shown(browser, WEBHOOK_ROUTE, FROM_SLOT) or "").startswith(f"{after} ex \u00b7")
        ),
    )


def test_api_data_is_shown_as_text_and_failures_on_their_node(
    server: Server, browser: webdriver.Chrome
) -> None:
    failures = wait_for(
        "the probe's failure in the history",
        lambda: _get(f"{server.ops}/routes/console-probe/failures")["failures"],
    )
    message = failures[0]["message"]
    assert "<img src=x" in message
    rows = wait_for(
        "the probe's failure on the page",
        lambda: card(browser, "console-probe").find_elements(By.CSS_SELECTOR, "tbody tr"),
    )
    probe = card(browser, "console-probe")
    probe.find_element(By.CSS_SELECTOR, "details.failures summary").click()
    cells = [td.text for td in rows[0].find_elements(By.TAG_NAME, "td")]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", cells[0]), cells
    assert cells[1:] == ["ValueError", message, "process(explode)"]
    assert probe.find_element(By.CSS_SELECTOR, ".count").text == str(len(failures))
    assert probe.find_element(By.CSS_SELECTOR, ".desc").text == f"probe {HOSTILE}"
    assert probe.find_elements(By.CSS_SELECTOR, "img, script") == []
    assert browser.execute_script("return window.__eipXss === undefined")
    wait_for(  # the failing step is marked, and says how many recent failures it had
        "the failing node marked",
        lambda: (
            shown(
                browser, "console-probe", 'g.node.failing[data-node="console-probe/1"] text.counter'
            )
            == f"\u2717 {len(failures)} recent"
        ),
    )
    index_entry = 'a[data-route="console-probe"] .fails'
    assert browser.find_element(By.CSS_SELECTOR, f"#index {index_entry}").text == (
        f"\u2717 {len(failures)}"
    )
    problems = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert problems == []  # no CSP refusals, no script errors, no failed loads


def test_console_headers_allow_only_its_own_inline_code(server: Server) -> None:
    with urllib.request.urlopen(f"{server.ops}/console", timeout=10) as response:
        policy = response.headers["content-security-policy"]
        page = response.read().decode()
        assert response.headers["x-content-type-options"] == "nosniff"
    nonce = re.search(r"script-src 'nonce-([^']+)'", policy)
    assert nonce is not None, policy
    assert f"style-src 'nonce-{nonce.group(1)}'" in policy
    assert "default-src 'none'" in policy
    assert "unsafe-inline" not in policy
    assert f'<script nonce="{nonce.group(1)}">' in page
    assert "<img" not in page  # the probe's description, escaped by the server
    with urllib.request.urlopen(f"{server.ops}/console", timeout=10) as again:
        assert again.headers["content-security-policy"] != policy  # a fresh nonce each time


def test_stop_and_start_a_route_from_the_page(server: Server, browser: WebDriver) -> None:
    webhook = card(browser, WEBHOOK_ROUTE)
    button = webhook.find_element(By.CSS_SELECTOR, "button.toggle")
    message = webhook.find_element(By.CSS_SELECTOR, ".message")
    token = browser.find_element(By.ID, "token")
    # in view, and not under the sticky header (WebDriver scrolls only what is off screen)
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", button)
    token.clear()
    button.click()  # no token: refused, with the API's own words
    status, refusal = _call(f"{server.ops}/routes/{WEBHOOK_ROUTE}/stop", b"")
    assert status == 401
    WebDriverWait(browser, WAIT).until(lambda _: message.text == f"401: {refusal['error']}")
    assert route_info(server, WEBHOOK_ROUTE)["status"] == "started"

    token.send_keys(TOKEN)
    assert browser.execute_script("return sessionStorage.getItem('eip.console.token')") == TOKEN
    button.click()
    wait_for("the route stopped", lambda: route_info(server, WEBHOOK_ROUTE)["status"] == "stopped")
    WebDriverWait(browser, WAIT).until(
        lambda _: shown(browser, WEBHOOK_ROUTE, ".status") == "stopped" and button.text == "Start"
    )
    assert webhook.get_attribute("data-status") == "stopped"
    assert route_info(server, "crm-customer-import")["status"] == "started"  # the others run

    button.click()
    wait_for("the route started", lambda: route_info(server, WEBHOOK_ROUTE)["status"] == "started")
    WebDriverWait(browser, WAIT).until(
        lambda _: shown(browser, WEBHOOK_ROUTE, ".status") == "started" and button.text == "Stop"
    )


def test_suspend_and_resume_a_route_from_the_page(server: Server, browser: WebDriver) -> None:
    webhook = card(browser, WEBHOOK_ROUTE)
    pause = webhook.find_element(By.CSS_SELECTOR, "button.pause")
    toggle = webhook.find_element(By.CSS_SELECTOR, "button.toggle")
    token = browser.find_element(By.ID, "token")
    token.clear()
    token.send_keys(TOKEN)
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", pause)
    WebDriverWait(browser, WAIT).until(lambda _: pause.is_displayed() and pause.text == "Suspend")
    pause.click()
    wait_for(
        "the route suspended", lambda: route_info(server, WEBHOOK_ROUTE)["status"] == "suspended"
    )
    WebDriverWait(browser, WAIT).until(
        lambda _: (
            shown(browser, WEBHOOK_ROUTE, ".status") == "suspended"
            and pause.text == "Resume"
            and toggle.text == "Stop"
        )  # a suspended route can still be stopped
    )
    sample = (ROOT / "routes" / "samples" / "webhooks" / "evt-20261123-0001.json").read_bytes()
    headers = {"content-type": "application/json", "x-api-key": WEBHOOK_KEY}
    status, body = _call(server.webhook, sample, headers)
    assert (status, body) == (503, {"error": "route suspended"})  # clients are told to retry
    pause.click()
    wait_for("the route resumed", lambda: route_info(server, WEBHOOK_ROUTE)["status"] == "started")
    WebDriverWait(browser, WAIT).until(
        lambda _: shown(browser, WEBHOOK_ROUTE, ".status") == "started" and pause.text == "Suspend"
    )
    status, body = _call(server.webhook, sample, headers)
    assert (status, body["status"]) == (200, "synced")


def test_each_send_shows_its_counters_on_its_node(server: Server, browser: WebDriver) -> None:
    erp = f"{WEBHOOK_ROUTE}/4"  # the ERP call: to({{demo.erp.url}}/api/customers...)
    steps = {s["node"]: s for s in route_info(server, WEBHOOK_ROUTE)["steps"]}
    sends = steps[erp]["sends"]
    assert steps[erp]["kind"] == "to"
    assert sends["sent"] >= 3  # the syncs the earlier tests made
    assert sends["mean_ms"] > 0  # an HTTP call waits: it is timed
    sample = (ROOT / "routes" / "samples" / "webhooks" / "evt-20261123-0001.json").read_bytes()
    headers = {"content-type": "application/json", "x-api-key": WEBHOOK_KEY}
    assert _call(server.webhook, sample, headers)[0] == 200
    after = route_info(server, WEBHOOK_ROUTE)["steps"][3]["sends"]
    assert after["sent"] == sends["sent"] + 1
    slot = f'g.node[data-node="{erp}"] text.counter'
    pattern = re.compile(rf"{after['sent']} sent( \u00b7 \d+ failed)? \u00b7 [\d.]+ ms.*")
    wait_for(
        "the ERP call's counters on its node",
        lambda: pattern.fullmatch(shown(browser, WEBHOOK_ROUTE, slot) or ""),
    )


def screenshot(path: Path, route_id: str = WEBHOOK_ROUTE) -> None:
    """The example routes' console as the README shows it: the webhook route in view, with
    its recent failures open."""
    with tempfile.TemporaryDirectory() as tmp:
        running = start_server(Path(tmp) / "data", [])
        try:
            driver = open_browser(Path(tmp) / "profile")
            try:
                driver.set_window_size(1440, 1400)
                driver.get(f"{running.ops}/console")
                WebDriverWait(driver, WAIT).until(
                    lambda _: card(driver, route_id).find_elements(By.CSS_SELECTOR, "tbody tr")
                )
                section = card(driver, route_id)
                section.find_element(By.CSS_SELECTOR, "details.failures summary").click()
                driver.execute_script("arguments[0].scrollIntoView({block: 'start'})", section)
                time.sleep(2.5)  # one more poll: every counter and node mark in place
                driver.save_screenshot(str(path))
            finally:
                driver.quit()
        finally:
            stop_server(running)


if __name__ == "__main__":
    screenshot(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/console.png"))
