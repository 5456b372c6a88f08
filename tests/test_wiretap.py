"""Wire tap: never blocks or fails the route, copies, bounded queue with drops, drain on stop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest

from eip import Context, Exchange, ExchangePattern, RouteBuilder
from eip.dsl.builder import RouteDefinition
from eip.processors.wiretap import WireTap
from eip.testing import ManualClock


def route(configure: Callable[[RouteDefinition], Any]) -> RouteBuilder:
    class R(RouteBuilder):
        def configure(self) -> None:
            configure(self.from_("direct:in").route_id("r"))

    return R()


async def start(context: Context, configure: Callable[[RouteDefinition], Any]) -> WireTap:
    context.add_routes(route(configure))
    await context.start()
    (tap,) = [s for s in context.routes["r"].services if isinstance(s, WireTap)]
    return tap


def blocked_until(gate: asyncio.Event) -> Callable[[Exchange], Any]:
    async def wait(exchange: Exchange) -> None:
        await gate.wait()

    return wait


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def test_the_route_does_not_wait_for_the_tap(eip_context: Context) -> None:
    gate = asyncio.Event()
    eip_context.mock("tap").whenever(blocked_until(gate))
    tap = await start(eip_context, lambda r: r.wire_tap("mock:tap").to("mock:out"))
    exchange = await eip_context.template().send("direct:in", "x")
    assert exchange.exception is None
    assert eip_context.mock("out").received_bodies == ["x"]
    await settle()
    assert eip_context.mock("tap").count == 1  # arrived, and is still blocked there
    assert tap.sent == 0
    gate.set()
    await settle()
    assert tap.sent == 1


async def test_the_tap_gets_an_in_only_copy_taken_at_the_tap(eip_context: Context) -> None:
    await start(
        eip_context,
        lambda r: (
            r.set_header("h", 1)
            .wire_tap("mock:tap")
            .set_header("h", 2)
            .set_body("changed")
            .to("mock:out")
        ),
    )
    reply = await eip_context.template().request("direct:in", "x")
    await settle()
    tapped = eip_context.mock("tap").received[0]
    assert (tapped.body, tapped.headers) == ("x", {"h": 1})
    assert tapped.pattern is ExchangePattern.IN_ONLY
    assert reply == "changed"


async def test_copy_false_sends_the_body_only(eip_context: Context) -> None:
    await start(eip_context, lambda r: r.set_property("p", 1).wire_tap("mock:tap", copy=False))
    await eip_context.template().send("direct:in", "x", {"h": 1})
    await settle()
    tapped = eip_context.mock("tap").received[0]
    assert (tapped.body, tapped.headers, tapped.properties) == ("x", {}, {})


async def test_queue_is_bounded_and_drops_are_counted_and_logged(
    eip_context: Context, caplog: pytest.LogCaptureFixture
) -> None:
    gate = asyncio.Event()
    eip_context.mock("tap").whenever(blocked_until(gate))
    tap = await start(eip_context, lambda r: r.wire_tap("mock:tap", max_pending=2).to("mock:out"))
    template = eip_context.template()
    await template.send("direct:in", 0)
    await settle()  # the worker took 0 and is blocked on it
    with caplog.at_level(logging.WARNING, logger="eip.wiretap"):
        for n in range(1, 6):
            await template.send("direct:in", n)
    assert eip_context.mock("out").count == 6
    assert (tap.pending, tap.dropped) == (2, 3)
    assert [r.getMessage() for r in caplog.records] == [
        "wire tap to mock:tap is 2 copies behind: dropped 1 so far"
    ]
    gate.set()
    await settle()
    assert eip_context.mock("tap").received_bodies == [0, 1, 2]
    assert (tap.sent, tap.pending) == (3, 0)


async def test_a_failing_tap_never_fails_the_route(eip_context: Context) -> None:
    def broken(exchange: Exchange) -> None:
        raise ConnectionError("tap target down")

    eip_context.mock("tap").whenever(broken)
    tap = await start(eip_context, lambda r: r.wire_tap("mock:tap").to("mock:out"))
    exchange = await eip_context.template().send("direct:in", "x")
    await settle()
    assert exchange.exception is None
    assert eip_context.mock("out").count == 1
    assert (tap.failed, tap.sent) == (1, 0)


async def test_tapped_exchanges_are_completed_by_the_tap(eip_context: Context) -> None:
    completed: list[Any] = []
    eip_context.mock("tap").whenever(
        lambda ex: ex.on_completion(on_success=lambda e: completed.append(e.body))
    )
    await start(eip_context, lambda r: r.wire_tap("mock:tap"))
    await eip_context.template().send("direct:in", "x")
    await settle()
    assert completed == ["x"]


async def test_stop_drains_the_queue(eip_context: Context) -> None:
    gate = asyncio.Event()
    eip_context.mock("tap").whenever(blocked_until(gate))
    tap = await start(eip_context, lambda r: r.wire_tap("mock:tap"))
    for n in range(3):
        await eip_context.template().send("direct:in", n)
    stopping = asyncio.create_task(eip_context.stop())
    await settle()
    assert not stopping.done()  # waiting for the tap
    gate.set()
    await asyncio.wait_for(stopping, 1)
    assert eip_context.mock("tap").received_bodies == [0, 1, 2]
    assert (tap.sent, tap.dropped) == (3, 0)


async def test_stop_gives_up_after_the_drain_timeout(manual_clock: ManualClock) -> None:
    context = Context(clock=manual_clock, shutdown_timeout=0.05)
    gate = asyncio.Event()
    context.mock("tap").whenever(blocked_until(gate))
    tap = await start(context, lambda r: r.wire_tap("mock:tap"))
    for n in range(3):
        await context.template().send("direct:in", n)
    await asyncio.wait_for(context.stop(), 1)
    assert tap.dropped == 3  # the one being sent was cancelled, the queued ones dropped
    assert tap.pending == 0
