"""Start means ready; stop drains in-flight exchanges and takes no new ones."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from eip import (
    Context,
    Exchange,
    LifecycleError,
    RedeliveryPolicy,
    RouteBuilder,
    default_error_handler,
)
from eip.components.base import Component, Consumer, EndpointSpec, Producer
from eip.runtime.route import Route, RouteStatus
from eip.testing import ManualClock


class Gate:
    """An async processor that holds exchanges until opened."""

    def __init__(self) -> None:
        self.opened = asyncio.Event()
        self.entered = 0
        self.left = 0

    async def __call__(self, exchange: Exchange) -> None:
        self.entered += 1
        await self.opened.wait()
        self.left += 1


async def test_stop_lets_in_flight_finish_and_takes_no_new(
    eip_context: Context, manual_clock: ManualClock
) -> None:
    gate = Gate()

    class R(RouteBuilder):
        def configure(self) -> None:
            self.from_("timer:tick?period=1").route_id("ticker").process(gate).to("mock:done")

    eip_context.add_routes(R())
    await eip_context.start()
    await manual_clock.advance(0)
    assert gate.entered == 1
    stopping = asyncio.create_task(eip_context.stop())
    await asyncio.sleep(0.05)
    assert not stopping.done()  # waits for the in-flight exchange
    assert eip_context.routes["ticker"].status is RouteStatus.STOPPING
    await manual_clock.advance(10)  # the timer would have fired 10 more times
    gate.opened.set()
    await asyncio.wait_for(stopping, 5)
    assert gate.entered == 1
    assert eip_context.mock("done").count == 1
    assert eip_context.routes["ticker"].status is RouteStatus.STOPPED


async def test_upstream_in_flight_still_reaches_direct_during_shutdown(
    eip_context: Context, manual_clock: ManualClock
) -> None:
    gate = Gate()

    class R(RouteBuilder):
        def configure(self) -> None:
            self.from_("timer:t?repeat_count=1").route_id("up").process(gate).to("direct:down")
            self.from_("direct:down").route_id("down").to("mock:down")

    eip_context.add_routes(R())
    await eip_context.start()
    await manual_clock.advance(0)
    stopping = asyncio.create_task(eip_context.stop())
    await asyncio.sleep(0.02)
    gate.opened.set()
    await asyncio.wait_for(stopping, 5)
    assert eip_context.mock("down").count == 1


async def test_shutdown_timeout_gives_up(caplog: pytest.LogCaptureFixture) -> None:
    gate = Gate()

    class R(RouteBuilder):
        def configure(self) -> None:
            self.from_("seda:q").route_id("stuck").process(gate)

    context = Context(shutdown_timeout=0.1)
    context.add_routes(R())
    await context.start()
    await context.template().send("seda:q", 1)
    await asyncio.sleep(0.01)
    with caplog.at_level(logging.WARNING, logger="eip.context"):
        await asyncio.wait_for(context.stop(), 5)
    assert "still in flight" in caplog.text
    assert "stuck" in caplog.text
    assert not context.started


async def test_route_start_stop_and_readiness(eip_context: Context) -> None:
    class R(RouteBuilder):
        def configure(self) -> None:
            self.from_("direct:a").route_id("a").to("mock:a")
            self.from_("direct:b").route_id("b").auto_startup(False).to("mock:b")

    eip_context.add_routes(R())
    assert not eip_context.ready
    await eip_context.start()
    assert eip_context.ready
    assert eip_context.routes["b"].status is RouteStatus.STOPPED
    exchange = await eip_context.template().send("direct:b", 1)
    assert exchange.exception is not None
    await eip_context.start_route("b")
    await eip_context.template().send("direct:b", 2)
    assert eip_context.mock("b").received_bodies == [2]
    await eip_context.stop_route("a")
    assert eip_context.routes["a"].status is RouteStatus.STOPPED
    assert not eip_context.ready
    with pytest.raises(LifecycleError, match="no route 'zzz'"):
        await eip_context.start_route("zzz")


class NeverSpec(EndpointSpec, frozen=True):
    scheme = "never"
    name: str


class NeverConsumer(Consumer):
    async def start(self) -> None:
        raise ConnectionRefusedError("broker unreachable")

    async def stop(self) -> None:
        pass


class NeverComponent(Component):
    scheme = "never"
    spec_type = NeverSpec
    stopped = False

    def create_producer(self, spec: Any) -> Producer:
        raise NotImplementedError

    def create_consumer(self, spec: Any, route: Route) -> Consumer:
        return NeverConsumer(route)

    async def stop(self) -> None:
        NeverComponent.stopped = True


async def test_consumer_start_failure_is_clear_and_cleans_up() -> None:
    class R(RouteBuilder):
        def configure(self) -> None:
            self.from_("direct:ok").route_id("ok").to("mock:x")
            self.from_("never:x").route_id("bad").to("mock:x")

    context = Context()
    context.add_component(NeverComponent)
    context.add_routes(R())
    with pytest.raises(LifecycleError) as info:
        await context.start()
    assert "route 'bad' could not start its consumer never:x" in str(info.value)
    assert isinstance(info.value.__cause__, ConnectionRefusedError)
    assert not context.started
    assert NeverComponent.stopped
    assert context.routes["ok"].status is RouteStatus.STOPPED


def _failing_erp_route(delay: float) -> RouteBuilder:
    class R(RouteBuilder):
        def configure(self) -> None:
            policy = RedeliveryPolicy(max_redeliveries=3, delay=delay)
            self.error_handler(default_error_handler(policy))
            self.from_("direct:in").route_id("orders").to("mock:erp")

    return R()


async def test_draining_says_what_it_waits_for_until_the_timeout(
    eip_context: Context, manual_clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    eip_context.add_routes(_failing_erp_route(delay=60))
    eip_context.shutdown_timeout = 0.6
    eip_context.drain_log_interval = 0.1
    await eip_context.start()
    eip_context.mock("erp").fail_times(9, lambda: ConnectionError("erp down"))
    sending = asyncio.create_task(eip_context.template().send("direct:in", "x"))
    await manual_clock.wait_for_sleepers(1)  # in its first backoff, of 60 s on the manual clock
    try:
        with caplog.at_level(logging.INFO, logger="eip.context"):
            await asyncio.wait_for(eip_context.stop(), 5)
    finally:
        sending.cancel()
        await asyncio.gather(sending, return_exceptions=True)
    messages = [r.getMessage() for r in caplog.records if r.name == "eip.context"]
    draining = [m for m in messages if m.startswith("draining (")]
    assert len(draining) >= 3  # at once, then every drain_log_interval until the timeout
    waiting = (
        "s left of the shutdown timeout): route orders: 1 in flight, 1 in redelivery backoff "
        "(exchange {} at mock:erp, redelivery attempt 1 of 3 in 60.0s, after the shutdown "
        "timeout: it will be aborted)"
    )
    exchange_id = draining[0].split("(exchange ")[1].split(" ")[0]
    assert all(m.endswith(waiting.format(exchange_id)) for m in draining)
    (timeout,) = [m for m in messages if m.startswith("shutdown timeout reached")]
    assert timeout.endswith(": " + waiting.format(exchange_id).split("): ", 1)[1])
    assert eip_context.mock("erp").count == 1


async def test_a_redelivery_due_within_the_shutdown_timeout_still_happens(
    eip_context: Context, manual_clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    eip_context.add_routes(_failing_erp_route(delay=2))
    await eip_context.start()
    eip_context.mock("erp").fail_times(1, lambda: ConnectionError("erp down"))
    sending = asyncio.create_task(eip_context.template().send("direct:in", "x"))
    await manual_clock.wait_for_sleepers(1)
    with caplog.at_level(logging.INFO, logger="eip.context"):
        stopping = asyncio.create_task(eip_context.stop())
        for _ in range(250):  # the first draining line comes at once
            if any(r.getMessage().startswith("draining (") for r in caplog.records):
                break
            await asyncio.sleep(0.02)
        await manual_clock.advance(2)
        exchange = await asyncio.wait_for(sending, 5)
        await asyncio.wait_for(stopping, 5)
    assert exchange.exception is None  # redelivered during shutdown, and it succeeded
    assert eip_context.mock("erp").count == 2
    messages = [r.getMessage() for r in caplog.records if r.name == "eip.context"]
    (draining,) = [m for m in messages if m.startswith("draining (")]
    assert draining.endswith(", redelivery attempt 1 of 3 in 2.0s)")
    assert any(m.startswith("drained in ") for m in messages)
    assert not any(m.startswith("shutdown timeout reached") for m in messages)
