"""Suspend, resume, trigger and the exchanges in flight, through the control API of a real
management server on 127.0.0.1, while messages flow: nothing is lost or routed twice, intake
really stops, a timer really stops firing, and an HTTP route answers 503 while suspended."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pytest_asyncio import fixture as async_fixture

from eip import Context, Exchange, RouteBuilder
from eip.components.timer import TimerConsumer
from eip.errors import NoConsumerError
from eip.server.management import ManagementServer
from tests.cli_support import free_port

TOKEN = "ops-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
WORK = "seda:work?size=50"


async def pause(exchange: Exchange) -> None:
    await asyncio.sleep(0.002)  # an exchange that suspends, as one doing I/O does


class Routes(RouteBuilder):
    def __init__(self, gate: asyncio.Event) -> None:
        super().__init__()
        self.gate = gate

    def configure(self) -> None:
        self.from_("timer:tick?period=0.01").route_id("tick").to("mock:ticks")
        self.from_("timer:nightly?period=3600&delay=3600").route_id("nightly").to("mock:nightly")
        (
            self.from_("seda:work?size=50&concurrent_consumers=4")
            .route_id("work")
            .process(pause)
            .to("mock:worked")
        )
        self.from_("direct:calc").route_id("calc").process(pause).to("mock:calculated")

        async def held(exchange: Exchange) -> None:
            await self.gate.wait()

        self.from_("direct:slow").route_id("slow").process(held).to("mock:slow")
        self.from_("timer:long?period=3600&delay=3600").route_id("long").process(held)


@async_fixture
async def ops() -> AsyncIterator[Any]:
    started: list[tuple[Context, ManagementServer]] = []

    async def start(
        token: str | None = TOKEN, routes: RouteBuilder | None = None, **options: Any
    ) -> tuple[Context, httpx.AsyncClient, asyncio.Event]:
        gate = asyncio.Event()
        context = Context(shutdown_timeout=5, metrics=True, **options)
        context.add_routes(routes or Routes(gate))
        server = ManagementServer(context, "127.0.0.1", 0, token=token or "")
        await server.start()
        started.append((context, server))
        await context.start()
        return context, httpx.AsyncClient(base_url=server.base_url, timeout=10), gate

    try:
        yield start
    finally:
        for context, server in started:
            await context.stop()
            await server.stop()


async def until(check: Any, within: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def test_a_suspended_timer_stops_firing_and_resumes(ops: Any) -> None:
    context, client, _ = await ops()
    ticks = context.mock("ticks")
    await ticks.wait_for(5)
    answer = await client.post("/routes/tick/suspend", headers=AUTH)
    assert answer.status_code == 200
    assert answer.json() == {"id": "tick", "status": "suspended"}
    await asyncio.sleep(0.05)  # a run in progress finishes
    held = ticks.count
    await asyncio.sleep(0.2)  # twenty periods: not one fire
    assert ticks.count == held
    summary = (await client.get("/routes/tick")).json()
    assert (summary["status"], summary["ready"], summary["problem"]) == (
        "suspended",
        False,
        "route suspended",
    )
    ready = await client.get("/health/ready")
    assert ready.status_code == 503
    assert ready.json()["routes"]["tick"] == "route is suspended"
    resumed = await client.post("/routes/tick/resume", headers=AUTH)
    assert resumed.json() == {"id": "tick", "status": "started"}
    await ticks.wait_for(held + 5)
    assert (await client.post("/routes/tick/suspend", headers=AUTH)).status_code == 200
    await until(lambda: context.routes["tick"].inflight == 0)
    consumer = context.routes["tick"].consumer
    assert isinstance(consumer, TimerConsumer)
    assert ticks.count == consumer.counter  # every fire was routed to the end, none dropped


async def test_a_suspended_seda_route_keeps_its_queue_and_loses_nothing(ops: Any) -> None:
    context, client, _ = await ops()
    worked = context.mock("worked")
    total = 1000

    async def feed() -> None:
        template = context.template()
        for n in range(total):
            sent = await template.send(WORK, n)
            assert sent.exception is None

    feeder = asyncio.create_task(feed())
    await worked.wait_for(200)
    assert (await client.post("/routes/work/suspend", headers=AUTH)).status_code == 200
    await until(lambda: context.routes["work"].inflight == 0)  # in flight: finished
    held = worked.count
    await asyncio.sleep(0.3)
    assert worked.count == held  # no new message taken off the queue
    route = (await client.get("/routes")).json()["routes"]
    assert {r["id"]: r["status"] for r in route}["work"] == "suspended"
    consumer = context.routes["work"].consumer
    assert consumer is not None
    assert consumer.backlog == 50  # the queue is full: the sender waits (back-pressure)
    assert not feeder.done()
    assert (await client.post("/routes/work/resume", headers=AUTH)).status_code == 200
    await asyncio.wait_for(feeder, 10)
    await worked.wait_for(total, timeout=10)
    await asyncio.sleep(0.05)
    assert sorted(worked.received_bodies) == list(range(total))  # each exactly once


async def test_a_suspended_direct_route_makes_waiting_senders_wait(ops: Any) -> None:
    context, client, _ = await ops()
    calculated = context.mock("calculated")
    template = context.template()

    async def feed(start: int, count: int) -> list[BaseException | None]:
        results = []
        for n in range(start, start + count):
            results.append((await template.send("direct:calc?timeout=5", n)).exception)
        return results

    first = asyncio.create_task(feed(0, 300))
    await calculated.wait_for(50)
    assert (await client.post("/routes/calc/suspend", headers=AUTH)).status_code == 200
    held = calculated.count
    second = asyncio.create_task(feed(300, 50))
    await asyncio.sleep(0.2)
    assert calculated.count <= held + 1  # one send may have been inside the route already
    refused = await template.send("direct:calc", "no timeout")
    assert isinstance(refused.exception, NoConsumerError)  # a sender that does not wait
    assert (await client.post("/routes/calc/resume", headers=AUTH)).status_code == 200
    results = await asyncio.wait_for(asyncio.gather(first, second), 10)
    assert [r for batch in results for r in batch] == [None] * 350
    assert sorted(calculated.received_bodies) == list(range(350))


async def test_an_http_route_answers_503_while_suspended(ops: Any) -> None:
    port = free_port()
    gate = asyncio.Event()

    class Http(RouteBuilder):
        def configure(self) -> None:
            async def slow(exchange: Exchange) -> None:
                if exchange.body == b"slow":
                    await gate.wait()

            self.from_(f"http:/orders?port={port}").route_id("orders").process(slow).set_body("ok")

    _, client, _ = await ops(routes=Http())
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as web:
        assert (await web.post("/orders", content=b"x")).status_code == 200
        in_flight = asyncio.create_task(web.post("/orders", content=b"slow"))
        await asyncio.sleep(0.1)
        suspend = await client.post("/routes/orders/suspend", headers=AUTH)
        assert suspend.status_code == 200
        refused = await web.post("/orders", content=b"x")
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "5"
        assert refused.json() == {"error": "route suspended"}
        gate.set()
        finished = await in_flight  # the request in flight when it was suspended completes
        assert (finished.status_code, finished.text) == (200, "ok")
        assert (await client.post("/routes/orders/resume", headers=AUTH)).status_code == 200
        assert (await web.post("/orders", content=b"x")).status_code == 200


async def test_trigger_runs_a_timer_route_now(ops: Any) -> None:
    context, client, gate = await ops()
    nightly = context.mock("nightly")
    answer = await client.post("/routes/nightly/trigger", headers=AUTH)
    assert answer.status_code == 202
    body = answer.json()
    assert body["id"] == "nightly"
    assert body["exchange_id"]
    await nightly.wait_for(1)
    headers = nightly.received_headers[0]
    assert headers["eip.timer.name"] == "nightly"
    assert headers["eip.timer.counter"] == 1
    # suspended, a timer can still be run by hand; the schedule stays paused
    assert (await client.post("/routes/nightly/suspend", headers=AUTH)).status_code == 200
    assert (await client.post("/routes/nightly/trigger", headers=AUTH)).status_code == 202
    await nightly.wait_for(2)
    # a run in progress is not overlapped
    assert (await client.post("/routes/long/trigger", headers=AUTH)).status_code == 202
    again = await client.post("/routes/long/trigger", headers=AUTH)
    assert again.status_code == 409
    assert "running already" in again.json()["error"]
    gate.set()
    await until(lambda: context.routes["long"].inflight == 0)
    assert (await client.post("/routes/long/trigger", headers=AUTH)).status_code == 202


async def test_inflight_lists_a_slow_exchange_with_a_growing_age(ops: Any) -> None:
    context, client, gate = await ops()
    template = context.template()
    sending = asyncio.create_task(template.send("direct:slow", "x", {"eip.message.id": "m-9"}))
    await until(lambda: context.routes["slow"].inflight_since != {})
    first = (await client.get("/routes/slow/inflight")).json()
    assert first["route"] == "slow"
    assert first["inflight"] >= 1
    [entry] = first["exchanges"]
    assert entry["message_id"] == "m-9"
    assert entry["redelivery"] is None
    await asyncio.sleep(0.3)
    [later] = (await client.get("/routes/slow/inflight")).json()["exchanges"]
    assert later["exchange_id"] == entry["exchange_id"]
    assert later["age_seconds"] >= entry["age_seconds"] + 0.25
    gate.set()
    exchange = await sending
    assert exchange.exception is None
    assert exchange.id == entry["exchange_id"]
    assert (await client.get("/routes/slow/inflight")).json()["exchanges"] == []
    assert context.routes["slow"].inflight_since == {}


async def test_stop_and_start_of_a_suspended_route(ops: Any) -> None:
    context, client, _ = await ops()
    assert (await client.post("/routes/work/suspend", headers=AUTH)).status_code == 200
    stopped = await client.post("/routes/work/stop", headers=AUTH)
    assert stopped.json() == {"id": "work", "status": "stopped"}
    started = await client.post("/routes/work/start", headers=AUTH)
    assert started.json() == {"id": "work", "status": "started"}
    await context.template().send(WORK, "after")
    await context.mock("worked").wait_for(1)
    # start of a suspended route resumes it
    assert (await client.post("/routes/calc/suspend", headers=AUTH)).status_code == 200
    resumed = await client.post("/routes/calc/start", headers=AUTH)
    assert resumed.json() == {"id": "calc", "status": "started"}
    assert (await context.template().send("direct:calc", 1)).exception is None


async def test_shutdown_drains_a_suspended_seda_queue(ops: Any) -> None:
    context, client, _ = await ops()
    assert (await client.post("/routes/work/suspend", headers=AUTH)).status_code == 200
    template = context.template()
    for n in range(30):
        await template.send(WORK, n)
    await asyncio.sleep(0.05)
    worked = context.mock("worked")
    assert worked.count == 0
    await context.stop()
    assert sorted(worked.received_bodies) == list(range(30))  # in memory: drained, not lost


@pytest.mark.parametrize(
    ("token", "method", "path", "status", "words"),
    [
        (None, "POST", "/routes/tick/suspend", 403, "EIP_MANAGEMENT_TOKEN"),
        (None, "POST", "/routes/nightly/trigger", 403, "EIP_MANAGEMENT_TOKEN"),
        ("", "POST", "/routes/tick/resume", 401, "Bearer"),
        ("wrong", "POST", "/routes/tick/trigger", 401, "Bearer"),
        (TOKEN, "POST", "/routes/nope/suspend", 404, "no route 'nope'"),
        (TOKEN, "POST", "/routes/nope/trigger", 404, "routes: calc, long"),
        (TOKEN, "GET", "/routes/nope/inflight", 404, "no route 'nope'"),
        (TOKEN, "GET", "/routes/tick/suspend", 405, ""),
        (TOKEN, "POST", "/routes/tick/inflight", 405, ""),
        (TOKEN, "DELETE", "/routes/tick/trigger", 405, ""),
        (TOKEN, "POST", "/routes/tick/resume", 409, "is started, not suspended: nothing to resume"),
        (TOKEN, "POST", "/routes/calc/trigger", 409, "reads from direct:calc, not a timer or cron"),
    ],
)
async def test_refusals_say_why(
    ops: Any, token: str | None, method: str, path: str, status: int, words: str
) -> None:
    _, client, _ = await ops(token=None if token is None else TOKEN)
    headers = {} if not token else {"Authorization": f"Bearer {token}"}
    answer = await client.request(method, path, headers=headers)
    assert answer.status_code == status
    assert answer.headers["content-type"] == "application/json"
    assert words in answer.text


async def test_suspend_or_trigger_of_a_stopped_route_is_a_conflict(ops: Any) -> None:
    _, client, _ = await ops()
    assert (await client.post("/routes/nightly/stop", headers=AUTH)).status_code == 200
    suspend = await client.post("/routes/nightly/suspend", headers=AUTH)
    assert suspend.status_code == 409
    assert suspend.json() == {
        "error": "route 'nightly' is stopped, not started: cannot suspend it; start it first"
    }
    trigger = await client.post("/routes/nightly/trigger", headers=AUTH)
    assert trigger.status_code == 409
    assert trigger.json() == {"error": "route 'nightly' is stopped: start it first"}
    assert (await client.post("/routes/calc/suspend", headers=AUTH)).status_code == 200
    twice = await client.post("/routes/calc/suspend", headers=AUTH)
    assert twice.status_code == 409
    assert "is suspended, not started" in twice.json()["error"]


async def test_a_file_route_suspended_mid_file_keeps_one_poller(ops: Any, tmp_path: Path) -> None:
    gate = asyncio.Event()
    seen: list[str] = []

    class Files(RouteBuilder):
        def configure(self) -> None:
            async def slow(exchange: Exchange) -> None:
                seen.append(exchange.headers["eip.file.name"])
                if len(seen) == 1:
                    await gate.wait()

            self.from_(f"file:{tmp_path}?poll=0.02").route_id("files").process(slow)

    _, client, _ = await ops(routes=Files())
    (tmp_path / "first.txt").write_text("1")
    await until(lambda: seen == ["first.txt"])
    assert (await client.post("/routes/files/suspend", headers=AUTH)).status_code == 200
    assert (await client.post("/routes/files/resume", headers=AUTH)).status_code == 200
    gate.set()
    for n in range(10):
        (tmp_path / f"next-{n}.txt").write_text(str(n))
    await until(lambda: len(seen) >= 11)
    await asyncio.sleep(0.2)
    assert sorted(seen) == ["first.txt", *(f"next-{n}.txt" for n in range(10))]  # each once
    pollers = [t for t in asyncio.all_tasks() if t.get_name() == f"file:{tmp_path}"]
    assert len(pollers) == 1  # the one busy when suspended went on; no second one started
