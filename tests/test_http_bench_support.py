"""Smoke test of the HTTP benchmark harness (no timing assertions beyond "more than zero").

One echo server process serves every test here; wrk drives it for ~1 s, the in-process client
driver for ~0.5 s. The consumer baseline app is checked in-process, without a server.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec
import pytest

from benchmarks._crm import Customer, ErpCustomer, make_messages, to_erp
from benchmarks._http_apps import crm_raw_app, echo_app
from benchmarks._http_support import (
    LoadError,
    ServerProcess,
    aiohttp_caller,
    check_result,
    drive_client,
    drive_python_load,
    drive_wrk,
    parse_wrk,
    start_server_process,
    wrk_script,
)

BODY = make_messages(1)[0]


@pytest.fixture(scope="module")
def echo() -> Iterator[ServerProcess]:
    server = start_server_process("benchmarks._http_apps:echo_app", None)
    try:
        yield server
    finally:
        server.stop()
    assert not server.running()


async def test_wrk_drives_the_echo_server(echo: ServerProcess) -> None:
    result = await drive_wrk(f"{echo.url}/erp", BODY, connections=4, seconds=1)
    assert result.tool == "wrk"
    assert result.requests > 0
    assert result.requests_per_s > 0
    assert result.non_2xx == 0
    assert result.socket_errors == 0
    assert 0 < result.p50_ms <= result.p99_ms


async def test_python_load_fallback(echo: ServerProcess) -> None:
    result = await drive_python_load(f"{echo.url}/erp", BODY, connections=4, seconds=0.3)
    assert result.tool == "python"
    assert result.requests > 0
    assert result.requests_per_s > 0
    assert (result.non_2xx, result.socket_errors) == (0, 0)
    assert 0 < result.p50_ms <= result.p99_ms


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


async def test_a_non_2xx_reply_fails_the_load_run(echo: ServerProcess) -> None:
    # the echo app answers 413 to a body over 1 MiB
    with pytest.raises(LoadError, match="status 413"):
        await drive_wrk(f"{echo.url}/erp", b"x" * ((1 << 20) + 1), connections=2, seconds=1)


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
