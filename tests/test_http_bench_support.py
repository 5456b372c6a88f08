"""Smoke test of the HTTP benchmark harness (no timing assertions beyond "more than zero").

One echo server process serves every test here; the load drivers run it for ~1 s, the
in-process client driver for ~0.5 s. The consumer baseline app is checked in-process, without
a server. Both load drivers are tested on every machine: the Python one through
``drive_wrk(..., search_path=<a folder without wrk>)``, wrk where it is on the PATH (and where
it is not, that test checks that the harness says it uses the Python driver, and does).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from benchmarks._crm import Customer, ErpCustomer, make_messages, to_erp
from benchmarks._http_apps import crm_raw_app, echo_app
from benchmarks._http_support import (
    LoadError,
    LoadResult,
    ServerProcess,
    aiohttp_caller,
    check_result,
    drive_client,
    drive_wrk,
    load_driver,
    parse_wrk,
    start_server_process,
    wrk_script,
)
from tests.http_bench_apps import EXPECTED

BODY = make_messages(1)[0]
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def echo() -> Iterator[ServerProcess]:
    server = start_server_process("benchmarks._http_apps:echo_app", None)
    try:
        yield server
    finally:
        server.stop()
    assert not server.running()


def _assert_clean_run(result: LoadResult) -> None:
    assert result.requests > 0
    assert result.requests_per_s > 0
    assert (result.non_2xx, result.socket_errors) == (0, 0)
    assert 0 < result.p50_ms <= result.p99_ms


@pytest.fixture
def no_wrk(tmp_path: Path) -> str:
    """A PATH (one empty folder) on which wrk is not found."""
    return str(tmp_path)


async def test_wrk_drives_the_echo_server_when_on_the_path(echo: ServerProcess) -> None:
    wrk = shutil.which("wrk")
    driver = load_driver()
    result = await drive_wrk(f"{echo.url}/erp", BODY, connections=4, seconds=1)
    _assert_clean_run(result)
    assert result.tool == driver.tool
    if wrk is not None:
        assert (driver.tool, driver.program) == ("wrk", wrk)
        assert driver.note == f"load from wrk ({wrk})"
    else:  # a machine without wrk: the harness says so, and the Python driver did the run
        assert (driver.tool, driver.program) == ("python", sys.executable)
        assert driver.note.startswith("wrk not found on PATH: ")


async def test_without_wrk_the_python_driver_runs_the_load(
    echo: ServerProcess, no_wrk: str
) -> None:
    driver = load_driver(no_wrk)
    assert (driver.tool, driver.program) == ("python", sys.executable)
    assert "wrk not found on PATH" in driver.note
    assert "Python load generator" in driver.note
    result = await drive_wrk(
        f"{echo.url}/erp", BODY, connections=4, seconds=0.5, search_path=no_wrk
    )
    assert (result.tool, result.connections) == ("python", 4)
    _assert_clean_run(result)


@pytest.mark.parametrize("driver", ["PATH", "no wrk"])
async def test_each_driver_sends_the_content_type_it_is_given(no_wrk: str, driver: str) -> None:
    search_path = no_wrk if driver == "no wrk" else None
    with start_server_process("tests.http_bench_apps:content_type_app") as server:
        result = await drive_wrk(
            server.url,
            b"<x/>",
            connections=2,
            seconds=0.3,
            content_type=EXPECTED.decode(),
            search_path=search_path,
        )
        with pytest.raises(LoadError, match="status 415"):  # the JSON default is refused
            await drive_wrk(server.url, b"{}", connections=2, seconds=0.3, search_path=search_path)
    assert result.tool == load_driver(search_path).tool
    _assert_clean_run(result)


async def test_drive_client_with_the_aiohttp_baseline(echo: ServerProcess) -> None:
    call, close = await aiohttp_caller(f"{echo.url}/erp", BODY)
    try:
        rate = await drive_client(call, concurrency=10, seconds=0.5)
    finally:
        await close()
    assert rate > 0


async def test_drive_client_propagates_a_failed_call() -> None:
    calls = 0

    async def failing() -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("boom")

    with pytest.raises(ExceptionGroup) as caught:
        await drive_client(failing, concurrency=3, seconds=0.2)
    assert caught.group_contains(RuntimeError)
    assert calls == 3


@pytest.mark.parametrize("driver", ["PATH", "no wrk"])
async def test_a_non_2xx_reply_fails_the_load_run(
    echo: ServerProcess, no_wrk: str, driver: str
) -> None:
    # the echo app answers 413 to a body over 1 MiB
    search_path = no_wrk if driver == "no wrk" else None
    with pytest.raises(LoadError, match="status 413"):
        await drive_wrk(
            f"{echo.url}/erp",
            b"x" * ((1 << 20) + 1),
            connections=2,
            seconds=1,
            search_path=search_path,
        )


def test_the_python_generator_counts_non_2xx_replies(echo: ServerProcess, tmp_path: Path) -> None:
    """The generator itself (without the probe that drive_python_load runs first) counts every
    failed reply, so a server that fails part-way through a run fails the run too."""
    body = tmp_path / "big.body"
    body.write_bytes(b"x" * ((1 << 20) + 1))
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks._http_load", f"{echo.url}/erp", str(body), "2", "0.3"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    counts = json.loads(done.stdout.splitlines()[-1])
    assert counts["requests"] > 0
    assert counts["non_2xx"] == counts["requests"]
    result = LoadResult(**counts, connections=2, tool="python")
    with pytest.raises(LoadError, match=f"{counts['requests']} non-2xx"):
        check_result(result, f"{echo.url}/erp")


def test_wrk_errors_fail_the_result() -> None:
    line = (
        'EIPWRK {"requests":900,"duration_us":1000000,"p50_us":100,"p99_us":900,'
        '"status":3,"connect":0,"read":1,"write":0,"timeout":2}'
    )
    result = parse_wrk(f"Running 1s test\n{line}\n", connections=4)
    assert (result.requests_per_s, result.p50_ms, result.p99_ms) == (900, 0.1, 0.9)
    assert (result.non_2xx, result.socket_errors, result.ok) == (3, 3, False)
    with pytest.raises(LoadError, match="3 non-2xx"):
        check_result(result, "http://127.0.0.1:1/")


def test_wrk_script_escapes_the_body() -> None:
    script = wrk_script(b'{"a":"x\\"y\n"}')
    assert 'wrk.body = "{\\034a\\034:\\034x\\092\\034y\\010\\034}"' in script


async def _asgi(app: Any, method: str, body: bytes) -> tuple[int, dict[bytes, bytes], bytes]:
    chunks = [body[:100], body[100:]]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        chunk = chunks.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app({"type": "http", "method": method, "path": "/"}, receive, send)
    start, reply = sent
    return start["status"], dict(start["headers"]), reply["body"]


async def test_crm_raw_app_does_the_routes_work() -> None:
    app = crm_raw_app()
    for raw in make_messages(20):
        status, headers, body = await _asgi(app, "POST", raw)
        assert status == 200
        assert headers[b"content-type"] == b"application/json"
        assert int(headers[b"content-length"]) == len(body)
        expected = to_erp(msgspec.json.decode(raw, type=Customer))
        assert msgspec.json.decode(body, type=ErpCustomer) == expected
    assert (await _asgi(app, "POST", b'{"id": "x"}'))[0] == 400
    assert (await _asgi(app, "POST", b"\xff\xfe"))[0] == 400
    assert (await _asgi(app, "GET", b""))[0] == 405


async def test_echo_app_replies_json() -> None:
    status, headers, body = await _asgi(echo_app, "POST", BODY)
    assert status == 200
    assert headers[b"content-type"] == b"application/json"
    reply = msgspec.json.decode(body)
    assert reply["ok"] is True
    assert isinstance(reply["id"], int)
