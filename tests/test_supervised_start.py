"""Supervised start (issue 11, point 6), against the real broker: a route whose broker is
unreachable at start waits and is retried in the background while the other routes run;
readiness and the control API say which route waits and why; once the broker answers, the
route starts and consumes. Library use (no ``supervise``) keeps failing fast, and what waiting
cannot cure (an invalid route, a busy address) stays fatal under supervision too."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from eip import Context, LifecycleError, RouteBuilder, RouteDefinitionError, soap_client
from eip.components.rabbitmq._amqp import Channel, Connection, Properties, connect
from eip.runtime.route import RouteStatus
from eip.runtime.supervisor import StartSupervisor, StartWait, retryable
from eip.server.management import ManagementServer, readiness
from tests.rabbitmq.faultproxy import FaultProxy
from tests.rabbitmq.support import unique, until
from tests.rabbitmq.vhosts import BrokerVhost, broker_vhost

__all__ = ["broker_vhost"]  # the fixture, imported for the tests below

WSDL = str(Path(__file__).parent / "soap" / "wsdl" / "crm_erp.wsdl")


def routes(configure: Callable[[RouteBuilder], object]) -> RouteBuilder:
    class R(RouteBuilder):
        def configure(self) -> None:
            configure(self)

    return R()


def supervised(**options: Any) -> Context:
    """A supervised context that retries fast (20 ms doubling to 200 ms), so tests are short."""
    return Context(
        shutdown_timeout=5, supervise=True, supervise_delay=0.02, supervise_max_delay=0.2, **options
    )


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.asynccontextmanager
async def management(context: Context) -> AsyncIterator[httpx.AsyncClient]:
    server = ManagementServer(context, "127.0.0.1", 0, token="")
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=5) as client:
            yield client
    finally:
        await server.stop()


@contextlib.asynccontextmanager
async def vhost_channel(vhost: BrokerVhost) -> AsyncIterator[Channel]:
    connection: Connection = await connect(vhost.url)
    try:
        yield await connection.channel(publisher_confirms=True)
    finally:
        await connection.close()


async def consume_one(channel: Channel, queue: str) -> bytes:
    """The body of the next message on ``queue`` (within 5 s), taken without an ack."""
    got: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def take(deliveries: list[Any]) -> None:
        if deliveries and not got.done():
            got.set_result(deliveries[0].body)

    tag = await channel.basic_consume(queue, take, no_ack=True)
    try:
        return await asyncio.wait_for(got, 5)
    finally:
        await channel.basic_cancel(tag)


def supervisor_tasks() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("start ") and not t.done()]


async def test_a_route_whose_broker_refuses_waits_while_the_others_run(
    broker_vhost: BrokerVhost, tmp_path: Path
) -> None:
    queue = unique("supervised.in")
    inbox = tmp_path / "inbox"
    async with FaultProxy() as proxy:
        proxy.refuse()
        context = supervised()
        context.add_routes(
            routes(
                lambda b: (
                    b.from_(f"rabbitmq:?queue={queue}&url={broker_vhost.url_via(proxy.port)}")
                    .route_id("orders-in")
                    .to("mock:orders"),
                    b.from_("direct:plain").route_id("plain").to("mock:plain"),
                    b.from_(f"file:{inbox}?poll=0.05").route_id("files").to("mock:files"),
                )
            )
        )
        await context.start()  # does not raise: the rabbitmq route waits
        try:
            async with management(context) as client:
                # Every other route runs meanwhile.
                await context.template().send("direct:plain", "hello")
                assert context.mock("plain").received_bodies == ["hello"]
                inbox.mkdir(exist_ok=True)
                (inbox / "a.txt").write_bytes(b"from a file")
                await context.mock("files").expect_bodies(b"from a file").assert_satisfied(5)
                # It keeps trying; readiness names the route, the attempts and the error.
                await until(lambda: proxy.refused >= 3, what="three refused attempts")
                assert context.routes["orders-in"].status is RouteStatus.STARTING
                assert not context.ready
                ready, problems = readiness(context)
                assert not ready
                assert "orders-in" in problems
                # While an attempt is connecting, the link says so too (a race with the
                # backoff: between attempts the link is closed and only the route is named).
                assert all(
                    name == "orders-in" or name.startswith("rabbitmq amqp://") for name in problems
                ), problems
                assert problems["orders-in"].startswith("waiting to start (attempt ")
                assert (
                    "cannot connect to RabbitMQ at amqp://guest:***@127.0.0.1:"
                    in (problems["orders-in"])
                )
                assert set(context.waiting) == {"orders-in"}
                answer = await client.get("/health/ready")
                assert answer.status_code == 503
                assert "waiting to start" in answer.json()["routes"]["orders-in"]
                summary = {r["id"]: r for r in (await client.get("/routes")).json()["routes"]}
                assert summary["orders-in"]["waiting"].startswith("waiting to start (attempt ")
                assert summary["orders-in"]["ready"] is False
                assert summary["plain"]["waiting"] is None
                assert summary["plain"]["ready"] is True
                assert "guest:guest" not in answer.text

                # The broker answers again: the route starts and consumes.
                proxy.accept()
                await until(
                    lambda: context.routes["orders-in"].status is RouteStatus.STARTED,
                    what="the waiting route started",
                )
                async with vhost_channel(broker_vhost) as channel:
                    await channel.wait_confirm(channel.publish(b"order 1", "", queue, Properties()))
                await context.mock("orders").expect_bodies(b"order 1").assert_satisfied(5)
                assert context.routes["orders-in"].waiting is None
                await until(lambda: context.ready, what="the context is ready")
                assert (await client.get("/health/ready")).status_code == 200
        finally:
            await context.stop()
    assert supervisor_tasks() == []


async def test_routes_that_send_to_a_producer_that_cannot_start_wait_for_it(
    broker_vhost: BrokerVhost,
) -> None:
    queue = unique("supervised.out")
    async with vhost_channel(broker_vhost) as channel:
        await channel.queue_declare(queue)  # the producer sends to it; it declares nothing
    async with FaultProxy() as proxy:
        proxy.refuse()
        target = f"rabbitmq:?routing_key={queue}&url={broker_vhost.url_via(proxy.port)}"
        context = supervised()
        context.add_routes(
            routes(
                lambda b: (
                    b.from_("direct:orders").route_id("orders-out").to(target),
                    b.from_("direct:other").route_id("other").to("mock:other"),
                )
            )
        )
        await context.start()
        try:
            await context.template().send("direct:other", "still works")
            assert context.mock("other").received_bodies == ["still works"]
            await until(lambda: proxy.refused >= 2, what="two refused attempts")
            waiting = context.routes["orders-out"].waiting
            assert waiting is not None
            assert waiting.startswith("waiting to start (attempt ")
            assert f"its producer rabbitmq:?routing_key={queue}" in waiting
            assert "cannot connect to RabbitMQ" in waiting
            problems = readiness(context)[1]
            assert "orders-out" in problems
            # While an attempt is connecting, the link and its producer say so too.
            assert all(
                name == "orders-out" or name.startswith(("rabbitmq amqp://", "producer rabbitmq:"))
                for name in problems
            ), problems
            # The route does not take messages while it waits (its consumer is not there).
            failed = await context.template().send("direct:orders", b"too early")
            assert failed.exception is not None

            proxy.accept()
            await until(
                lambda: context.routes["orders-out"].status is RouteStatus.STARTED,
                what="the route started once its producer did",
            )
            sent = await context.template().send("direct:orders", b"order 2")
            assert sent.exception is None
            async with vhost_channel(broker_vhost) as channel:
                assert await consume_one(channel, queue) == b"order 2"
            assert readiness(context) == (True, {})
        finally:
            await context.stop()


async def test_stopping_the_context_cancels_the_retries() -> None:
    closed = f"amqp://guest:guest@127.0.0.1:{closed_port()}/"
    async with FaultProxy(target_port=closed_port()) as proxy:
        proxy.refuse()
        refusing = f"amqp://guest:guest@127.0.0.1:{proxy.port}/"
        context = supervised()
        context.add_routes(
            routes(
                lambda b: (
                    b.from_(f"rabbitmq:?queue=q&url={closed}").route_id("r").to("mock:x"),
                    b.from_(f"rabbitmq:?queue=q&url={refusing}").route_id("r2").to("mock:y"),
                )
            )
        )
        await context.start()
        await until(lambda: proxy.refused >= 2, what="retries through the proxy")
        assert len(supervisor_tasks()) == 2
        began = time.monotonic()
        await context.stop()
        assert time.monotonic() - began < 2  # nothing waits for a backoff to run out
        assert supervisor_tasks() == []
        assert context.waiting == {}
        assert context.routes["r"].status is RouteStatus.STOPPED
        refused = proxy.refused
        await asyncio.sleep(0.5)  # several backoffs' worth: no attempt comes any more
        assert proxy.refused == refused


async def test_stop_route_ends_the_waiting_and_start_route_tries_at_once() -> None:
    url = f"amqp://guest:guest@127.0.0.1:{closed_port()}/"
    context = Context(
        shutdown_timeout=5, supervise=True, supervise_delay=30, supervise_max_delay=30
    )
    context.add_routes(routes(lambda b: b.from_(f"rabbitmq:?queue=q&url={url}").route_id("r")))
    await context.start()
    try:
        route = context.routes["r"]
        assert route.waiting is not None
        assert "(attempt 1, next in " in route.waiting
        with pytest.raises(LifecycleError, match="cannot connect to RabbitMQ"):
            await context.start_route("r")  # tried now, not in 30 s
        assert route.waiting is not None
        assert "(attempt 2, next in " in route.waiting
        await context.stop_route("r")
        assert route.waiting is None
        assert route.status is RouteStatus.STOPPED
        assert supervisor_tasks() == []
        assert "r" in readiness(context)[1]  # an auto-started route that is stopped
    finally:
        await context.stop()


async def test_library_use_keeps_failing_fast() -> None:
    url = f"amqp://guest:guest@127.0.0.1:{closed_port()}/"
    context = Context(shutdown_timeout=5)
    context.add_routes(
        routes(
            lambda b: (
                b.from_("direct:plain").route_id("plain").to("mock:plain"),
                b.from_(f"rabbitmq:?queue=q&url={url}").route_id("r"),
            )
        )
    )
    with pytest.raises(LifecycleError, match="route 'r' could not start its consumer"):
        await context.start()
    assert not context.started
    assert context.supervisor is None


async def test_an_invalid_route_found_at_start_stays_fatal_under_supervision() -> None:
    unknown = soap_client(
        "erp",
        wsdl=WSDL,
        wsdl_port="CustomerSoap11Port",
        address="http://127.0.0.1:9/erp",
        operation="DeleteCustomer",
    )
    context = supervised()
    context.add_routes(routes(lambda b: b.from_("direct:x").route_id("call").to(unknown)))
    with pytest.raises(RouteDefinitionError, match="no operation 'DeleteCustomer'"):
        await context.start()
    assert not context.started


async def test_a_busy_address_stays_fatal_under_supervision() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        context = supervised()
        context.component("http").configure(port=port, host="127.0.0.1")  # type: ignore[attr-defined]
        context.add_routes(routes(lambda b: b.from_("http:/hello").route_id("hello")))
        with pytest.raises(LifecycleError, match="in use by another process") as caught:
            await context.start()
        assert not retryable(caught.value)
    assert not context.started


async def test_the_backoff_doubles_with_jitter_up_to_its_cap() -> None:
    async def never(route: Any) -> None:
        raise AssertionError("not started in this test")

    supervisor = StartSupervisor(never, lambda route, error: str(error), delay=1, max_delay=30)
    delays = [supervisor.backoff(attempt) for attempt in range(1, 9)]
    for attempt, (delay, base) in enumerate(
        zip(delays, [1, 2, 4, 8, 16, 30, 30, 30], strict=True), 1
    ):
        assert base * 0.8 <= delay <= base, (attempt, delay)
    assert len({round(supervisor.backoff(3), 6) for _ in range(20)}) > 1  # spread, not fixed
    exact = StartSupervisor(never, lambda r, e: "", delay=1, max_delay=30, jitter=0)
    assert [exact.backoff(n) for n in (1, 2, 3, 6, 100)] == [1, 2, 4, 30, 30]
    with pytest.raises(ValueError, match="delay"):
        StartSupervisor(never, lambda r, e: "", delay=5, max_delay=1)
    wait = StartWait("cannot connect to RabbitMQ at amqp://127.0.0.1:1/")
    wait.attempts = 3
    wait.next_at = asyncio.get_running_loop().time() + 4
    assert wait.describe().startswith("waiting to start (attempt 3, next in 4.0s): cannot conn")
    wait.gave_up = True
    assert wait.describe().startswith("failed to start (attempt 3, not retried): ")


# -- eip run ------------------------------------------------------------------------------------
# ENABLE when eip/cli.py has --fail-fast (and `eip run` supervises by default): rename to
# test_eip_run_fail_fast_exits_when_a_broker_is_unreachable. Not collected until then (its name
# does not start with test_), so it is neither run nor skipped.
def test_eip_run_fail_fast_exits_when_a_broker_is_unreachable(tmp_path: Path) -> None:
    port = closed_port()
    path = tmp_path / "broker_routes.py"
    path.write_text(
        "from eip import RouteBuilder\n\n\n"
        "class BrokerRoutes(RouteBuilder):\n"
        "    def configure(self) -> None:\n"
        f'        self.from_("rabbitmq:?queue=q&url=amqp://guest:guest@127.0.0.1:{port}/")'
        '.route_id("orders-in").to("log:orders")\n'
        '        self.from_("direct:plain").route_id("plain").to("log:plain")\n'
    )
    command = [sys.executable, "-m", "eip.cli", "run", "--fail-fast", "--no-management"]
    result = subprocess.run(
        [*command, "--http-port", "0", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("eip: error: ")]
    assert len(errors) == 1, result.stderr
    assert "route 'orders-in' could not start its consumer" in errors[0]
    assert f"cannot connect to RabbitMQ at amqp://guest:***@127.0.0.1:{port}/" in errors[0]
