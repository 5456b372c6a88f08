"""``eip get`` / ``eip route`` / ``eip reload`` against a real management server on 127.0.0.1,
and ``eip reload`` against a real ``eip run``."""

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
from tests.cli_support import run_cli

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "t0ken"


class Routes(RouteBuilder):
    def __init__(self, gate: asyncio.Event) -> None:
        super().__init__()
        self.gate = gate

    def configure(self) -> None:
        self.from_("direct:orders").route_id("orders").set_body("ok").to("mock:orders")

        def refuse(exchange: Any) -> None:
            raise ValueError("customer 7 is closed")

        self.from_("direct:broken").route_id("broken").process(refuse)
        self.from_("timer:nightly?period=3600&delay=3600").route_id("nightly").to("mock:nightly")

        async def held(exchange: Any) -> None:
            await self.gate.wait()

        self.from_("direct:slow").route_id("slow").process(held)


@async_fixture
async def server() -> AsyncIterator[tuple[Context, str, asyncio.Event]]:
    gate = asyncio.Event()
    context = Context(shutdown_timeout=5, metrics=True)
    context.add_routes(Routes(gate))
    management = ManagementServer(context, "127.0.0.1", 0, token=TOKEN)
    await management.start()
    await context.start()
    try:
        yield context, management.base_url, gate
    finally:
        gate.set()
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
    context, url, _ = server
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
    assert {r["id"] for r in json.loads(out)["routes"]} == {"orders", "broken", "nightly", "slow"}
    code, out, _ = await cli("get", "route", "orders", "--url", url)
    assert code == 0
    assert out.startswith("route orders  (started)")
    assert "from direct:orders" in out
    assert "2. to(mock:orders)  [sent 1, failed 0]" in out  # each send's counters
    code, out, _ = await cli("get", "failures", "broken", "--url", url)
    assert code == 0
    assert "m-7" in out
    assert "ValueError: customer 7 is closed" in out


async def test_route_stop_and_start_need_the_token(server: Any) -> None:
    context, url, _ = server
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
    _, url, _ = server
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


async def test_route_suspend_resume_and_trigger(server: Any) -> None:
    context, url, _ = server
    code, out, err = await cli("route", "suspend", "orders", "--url", url, token=TOKEN)
    assert code == 0, err
    assert out.strip() == "route orders: suspended"
    assert context.routes["orders"].status.value == "suspended"
    code, out, err = await cli("route", "suspend", "orders", "--url", url, token=TOKEN)
    assert code == 1
    assert err.strip() == (
        "eip: error: POST /routes/orders/suspend: 409 route 'orders' is suspended, not "
        "started: cannot suspend it"
    )
    code, out, _ = await cli("route", "resume", "orders", "--url", url, token=TOKEN)
    assert (code, out.strip()) == (0, "route orders: started")
    code, out, err = await cli("route", "resume", "orders", "--url", url, token=TOKEN)
    assert code == 1
    assert "409 route 'orders' is started, not suspended" in err
    code, out, err = await cli("route", "trigger", "nightly", "--url", url, token=TOKEN)
    assert code == 0, err
    assert out.startswith("route nightly: triggered (exchange ")
    await context.mock("nightly").wait_for(1)
    code, _, err = await cli("route", "trigger", "orders", "--url", url, token=TOKEN)
    assert code == 1
    assert "not a timer or cron" in err
    assert len(err.strip().splitlines()) == 1


async def test_get_inflight(server: Any) -> None:
    context, url, gate = server
    sending = asyncio.create_task(
        context.template().send("direct:slow", "x", {"eip.message.id": "m-42"})
    )
    for _ in range(500):
        if context.routes["slow"].inflight_since:
            break
        await asyncio.sleep(0.01)
    code, out, err = await cli("get", "inflight", "slow", "--url", url)
    assert code == 0, err
    head, header, row = out.splitlines()
    assert head == "route slow: 1 in flight"
    assert header.split() == ["EXCHANGE", "MESSAGE", "ID", "AGE", "S", "WAITING", "FOR"]
    exchange_id, message_id, age = row.split()
    assert message_id == "m-42"
    assert float(age) >= 0
    code, out, _ = await cli("get", "inflight", "slow", "--url", url, "--json")
    assert json.loads(out)["exchanges"][0]["exchange_id"] == exchange_id
    code, _, err = await cli("get", "inflight", "--url", url)
    assert code == 2
    assert "needs a route id" in err
    gate.set()
    assert (await sending).exception is None


async def test_reload_where_the_server_cannot(server: Any) -> None:
    _, url, _ = server
    code, _, err = await cli("reload", "--url", url, token=TOKEN)
    assert code == 1
    assert err.strip() == (
        "eip: error: POST /reload: 409 this server cannot reload: it was not started by "
        "'eip run' from route files"
    )


def test_reload_of_a_running_eip_run(tmp_path: Path) -> None:
    from tests.test_reload import GREETING, start, stop
    from tests.test_reload import TOKEN as RUN_TOKEN

    server = start(tmp_path)
    token = {"EIP_MANAGEMENT_TOKEN": RUN_TOKEN}
    try:
        same = run_cli("reload", "--url", server.api, env=token)
        assert same.returncode == 0, same.stderr
        lines = same.stdout.splitlines()
        assert lines[0].startswith("reloaded in ")
        assert lines[1:] == [
            "  added:     -",
            "  changed:   -",
            "  removed:   -",
            "  unchanged: 3 route(s)",
        ]
        (server.routes / "greeting.py").write_text(GREETING.format(word="hi"))
        changed = run_cli("reload", "--url", server.api, env=token)
        assert changed.returncode == 0, changed.stderr
        assert "  changed:   greet" in changed.stdout.splitlines()
        assert server.get("/greet") == "HI"
        (server.routes / "greeting.py").write_text("this is not python(\n")
        broken = run_cli("reload", "--url", server.api, env=token)
        assert broken.returncode == 1
        assert broken.stderr.startswith("eip: error: POST /reload: 422 ")
        assert "greeting.py" in broken.stderr
        assert len(broken.stderr.strip().splitlines()) == 1
        assert server.get("/greet") == "HI"  # nothing changed
        refused = run_cli("reload", "--url", server.api, env={"EIP_MANAGEMENT_TOKEN": "nope"})
        assert refused.returncode == 1
        assert refused.stderr.startswith("eip: error: POST /reload: 401 ")
    finally:
        stop(server)
