"""``eip get`` / ``eip route`` against a real management server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from pytest_asyncio import fixture as async_fixture

from eip import Context, RouteBuilder
from eip.server.management import ManagementServer

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "t0ken"


class Routes(RouteBuilder):
    def configure(self) -> None:
        self.from_("direct:orders").route_id("orders").set_body("ok")

        def refuse(exchange: Any) -> None:
            raise ValueError("customer 7 is closed")

        self.from_("direct:broken").route_id("broken").process(refuse)


@async_fixture
async def server() -> AsyncIterator[tuple[Context, str]]:
    context = Context(shutdown_timeout=5, metrics=True)
    context.add_routes(Routes())
    management = ManagementServer(context, "127.0.0.1", 0, token=TOKEN)
    await management.start()
    await context.start()
    try:
        yield context, management.base_url
    finally:
        await context.stop()
        await management.stop()


async def cli(*args: str, token: str | None = None) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if k != "EIP_MANAGEMENT_TOKEN"}
    if token is not None:
        env["EIP_MANAGEMENT_TOKEN"] = token
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "eip.cli",
        *args,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_get_routes_route_and_failures(server: Any) -> None:
    context, url = server
    await context.template().send("direct:orders", "x")
    await context.template().send("direct:broken", "y", {"eip.message.id": "m-7"})
    code, out, err = await cli("get", "routes", "--url", url)
    assert code == 0, err
    header, *rows = out.splitlines()
    assert header.split()[:5] == ["ROUTE", "STATUS", "TOTAL", "FAILED", "INFLIGHT"]
    table = {row.split()[0]: row.split() for row in rows}
    assert table["orders"][1:4] == ["started", "1", "0"]
    assert table["broken"][1:4] == ["started", "1", "1"]
    assert "ValueError" in out
    code, out, _ = await cli("get", "routes", "--url", url, "--json")
    assert code == 0
    assert {r["id"] for r in json.loads(out)["routes"]} == {"orders", "broken"}
    code, out, _ = await cli("get", "route", "orders", "--url", url)
    assert code == 0
    assert out.startswith("route orders  (started)")
    assert "from direct:orders" in out
    code, out, _ = await cli("get", "failures", "broken", "--url", url)
    assert code == 0
    assert "m-7" in out
    assert "ValueError: customer 7 is closed" in out


async def test_route_stop_and_start_need_the_token(server: Any) -> None:
    context, url = server
    code, out, err = await cli("route", "stop", "orders", "--url", url)
    assert code == 1
    assert err.strip().startswith("eip: error: POST /routes/orders/stop: 401")
    assert "Traceback" not in err
    assert context.routes["orders"].status.value == "started"
    code, out, err = await cli("route", "stop", "orders", "--url", url, token=TOKEN)
    assert code == 0, err
    assert out.strip() == "route orders: stopped"
    assert context.routes["orders"].status.value == "stopped"
    code, out, _ = await cli("route", "start", "orders", "--url", url, token=TOKEN)
    assert out.strip() == "route orders: started"


async def test_unknown_route_and_a_server_that_is_down(server: Any) -> None:
    _, url = server
    code, _, err = await cli("get", "route", "nope", "--url", url)
    assert code == 1
    assert "404 no route 'nope'" in err
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: nobody answers there
        code, _, err = await cli("get", "routes", "--url", f"http://127.0.0.1:{port}")
    assert code == 1
    assert len(err.strip().splitlines()) == 1
    assert err.startswith(f"eip: error: no eip server answers at http://127.0.0.1:{port}")
