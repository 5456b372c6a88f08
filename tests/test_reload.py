"""Reload of a running ``eip run``: POST /reload, SIGHUP, ``--reload``; a broken file changes
nothing; a changed config value restarts the routes that use it, and only those.

Each test runs a real ``eip run`` process on free ports, with HTTP routes (so what a route
does is visible from outside) in route files of its own, and edits those files.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.cli_support import ROOT, free_port

TOKEN = "reload-test-token"

GREETING = """
from eip import RouteBuilder

WORD = "{word}"


def shout(exchange):
    return WORD.upper()


class Greeting(RouteBuilder):
    def configure(self) -> None:
        self.from_("http:/greet").route_id("greet").transform(shout)
"""

STEADY = """
from eip import RouteBuilder


class Steady(RouteBuilder):
    def configure(self) -> None:
        self.from_("http:/steady/{{steady.path}}").route_id("steady").set_body("steady")
        self.from_("http:/other").route_id("other").set_body("other")
"""


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    routes: Path
    api: str
    http: str
    log: Path

    def get(self, path: str) -> str:
        with urllib.request.urlopen(f"{self.http}{path}", timeout=5) as answer:
            return str(answer.read().decode())

    def call(self, path: str, method: str = "GET", token: str | None = TOKEN) -> tuple[int, Any]:
        request = urllib.request.Request(f"{self.api}{path}", method=method)
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def route(self, route_id: str) -> dict[str, Any]:
        return dict(self.call(f"/routes/{route_id}")[1])

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def wait(what: str, check: Callable[[], bool], server: Server, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (OSError, urllib.error.URLError, ValueError):
            pass
        assert server.process.poll() is None, f"eip run exited:\n{server.output()}"
        time.sleep(0.1)
    raise AssertionError(f"{what} not reached within {within}s:\n{server.output()}")


def start(tmp_path: Path, *flags: str) -> Server:
    routes = tmp_path / "routes"
    routes.mkdir()
    (routes / "greeting.py").write_text(GREETING.format(word="hello"))
    (routes / "steady.py").write_text(STEADY)
    (tmp_path / "eip.toml").write_text('[steady]\npath = "one"\n')
    http_port, api_port = free_port(), free_port()
    log = tmp_path / "eip-run.log"
    env = {**os.environ, "EIP_MANAGEMENT_TOKEN": TOKEN, "PYTHONPATH": str(ROOT)}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "eip.cli", "run", str(routes), *flags),
                *("--http-port", str(http_port), "--http-host", "127.0.0.1"),
                *("--management-port", str(api_port), "--management-host", "127.0.0.1"),
            ],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Server(
        process, routes, f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{http_port}", log
    )
    wait("readiness", lambda: server.call("/health/ready")[0] == 200, server)
    return server


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    running = start(tmp_path)
    yield running
    stop(running)


def stop(server: Server) -> None:
    server.process.send_signal(signal.SIGTERM)
    try:
        server.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


def edit(file: Path, text: str) -> None:
    file.write_text(text)


def test_post_reload_swaps_only_the_changed_route(server: Server) -> None:
    assert server.get("/greet") == "HELLO"
    for _ in range(3):
        server.get("/steady/one")
    steady_before = server.route("steady")["counters"]["exchanges_total"]
    edit(server.routes / "greeting.py", GREETING.format(word="bonjour"))
    status, answer = server.call("/reload", "POST")
    assert status == 200, answer
    assert answer["ok"] is True
    assert answer["changed"] == ["greet"]
    assert sorted(answer["unchanged"]) == ["other", "steady"]
    assert answer["added"] == answer["removed"] == []
    assert answer["aborted"] == {"greet": 0}
    assert server.get("/greet") == "BONJOUR"
    # The unchanged route is the same object: its counters went on, not from zero.
    assert server.route("steady")["counters"]["exchanges_total"] == steady_before
    assert server.call("/health/ready")[0] == 200


def test_a_helper_function_change_counts_as_a_change(server: Server) -> None:
    edit(
        server.routes / "greeting.py",
        GREETING.format(word="hello").replace("WORD.upper()", "WORD.title()"),
    )
    status, answer = server.call("/reload", "POST")
    assert (status, answer["changed"]) == (200, ["greet"]), answer
    assert server.get("/greet") == "Hello"


def test_lines_moving_and_an_untouched_reload_change_nothing(server: Server) -> None:
    edit(server.routes / "steady.py", "\n\n# a comment above\n" + STEADY)
    status, answer = server.call("/reload", "POST")
    assert status == 200, answer
    assert answer["changed"] == answer["added"] == answer["removed"] == []
    assert sorted(answer["unchanged"]) == ["greet", "other", "steady"]


def test_added_and_removed_routes(server: Server) -> None:
    edit(server.routes / "steady.py", STEADY.replace('"other"', '"renamed"'))
    status, answer = server.call("/reload", "POST")
    assert status == 200, answer
    assert answer["added"] == ["renamed"]
    assert answer["removed"] == ["other"]
    routes = {r["id"] for r in server.call("/routes")[1]["routes"]}
    assert routes == {"greet", "steady", "renamed"}
    assert server.get("/other") == "renamed"  # the path is served by the renamed route now


@pytest.mark.parametrize(
    ("broken", "expected"),
    [
        ("class Greeting(:\n", "greeting.py:"),  # a syntax error, with its line
        (
            GREETING.format(word="x").replace('"http:/greet"', '"http:/greet?nosuch=1"'),
            "nosuch",
        ),
        (GREETING.format(word="x").replace('"greet"', '"steady"'), "used twice"),
    ],
    ids=["syntax-error", "unknown-option", "duplicate-id"],
)
def test_a_broken_file_changes_nothing(server: Server, broken: str, expected: str) -> None:
    edit(server.routes / "greeting.py", broken)
    status, answer = server.call("/reload", "POST")
    assert status == 422, answer
    assert answer["ok"] is False
    assert expected in answer["error"]
    assert server.get("/greet") == "HELLO"  # the old route still runs
    assert server.call("/health/ready")[0] == 200
    assert "reload failed, nothing changed" in server.output()
    # Fixed again, the next reload takes it.
    edit(server.routes / "greeting.py", GREETING.format(word="fixed"))
    status, answer = server.call("/reload", "POST")
    assert (status, answer["changed"]) == (200, ["greet"]), answer
    assert server.get("/greet") == "FIXED"


def test_a_changed_config_value_restarts_the_routes_that_use_it(server: Server) -> None:
    assert server.get("/steady/one") == "steady"
    (server.routes.parent / "eip.toml").write_text('[steady]\npath = "two"\n')
    status, answer = server.call("/reload", "POST")
    assert status == 200, answer
    assert answer["changed"] == ["steady"]
    assert sorted(answer["unchanged"]) == ["greet", "other"]
    assert server.get("/steady/two") == "steady"
    with pytest.raises(urllib.error.HTTPError) as gone:
        server.get("/steady/one")
    assert gone.value.code == 404


def test_reload_needs_the_token(server: Server) -> None:
    status, answer = server.call("/reload", "POST", token=None)
    assert status == 401
    assert "Bearer" in answer["error"]
    assert server.call("/reload", "GET")[0] == 405


def test_sighup_reloads(server: Server) -> None:
    edit(server.routes / "greeting.py", GREETING.format(word="hup"))
    server.process.send_signal(signal.SIGHUP)
    wait("the reloaded route", lambda: server.get("/greet") == "HUP", server)
    assert "reloaded in" in server.output()


def test_watching_reloads_on_save(tmp_path: Path) -> None:
    server = start(tmp_path, "--reload")
    try:
        edit(server.routes / "greeting.py", GREETING.format(word="watched"))
        wait("the reloaded route", lambda: server.get("/greet") == "WATCHED", server)
        edit(server.routes / "greeting.py", "broken(\n")
        wait("the failed reload", lambda: "reload failed" in server.output(), server)
        assert server.get("/greet") == "WATCHED"
    finally:
        stop(server)
