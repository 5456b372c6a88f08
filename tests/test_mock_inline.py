"""A ``mock:`` send runs inline in the fused pipeline (MockEndpoint.inline_send): a count, and
the rest of an arrival only when there is more to do. Whatever is set on the endpoint after
the route started (a behaviour, a waiter, snapshots kept) must still take effect."""

from __future__ import annotations

import asyncio
from typing import Any

from eip import Context, Exchange, RouteBuilder
from eip.processors.base import shift_placeholders
from eip.runtime.step_counters import step_counters


def route(uri: str) -> RouteBuilder:
    class R(RouteBuilder):
        def configure(self) -> None:
            self.from_("direct:in").route_id("r").to(uri)

    return R()


async def test_a_lean_mock_is_counted_inline() -> None:
    context = Context()
    context.add_routes(route("mock:out?retain=0"))
    async with context:
        source = context.routes["r"].dispatch.eip_source  # type: ignore[attr-defined]
        assert ".count += 1" in source
        for n in range(3):
            await context.template().send("direct:in", n)
    out = context.mock("out")
    assert out.count == 3
    assert out.received == []
    out.expect_count(3)
    await out.assert_satisfied(timeout=0.1)


async def test_what_is_set_after_the_start_takes_effect() -> None:
    context = Context()
    context.add_routes(route("mock:out?retain=0"))
    seen: list[Any] = []
    async with context:
        template = context.template()
        out = context.mock("out")
        assert out.lean
        out.retain = 5  # snapshots from now on
        assert not out.lean
        await template.send("direct:in", "kept")
        out.retain = 0
        assert out.lean
        waiter = asyncio.create_task(out.wait_for(3, timeout=5))
        await asyncio.sleep(0)  # the waiter is waiting: arrivals must wake it
        assert not out.lean
        await template.send("direct:in", "woke")
        await template.send("direct:in", "woke too")
        await asyncio.wait_for(waiter, 1)
        assert out.lean
        out.whenever(lambda ex: seen.append(ex.body))
        assert not out.lean
        await template.send("direct:in", "behaved")
    assert [e.body for e in out.received] == ["kept"]
    assert seen == ["behaved"]
    assert out.count == 4


async def test_a_behaviour_that_fails_fails_the_exchange_and_is_counted_as_failed() -> None:
    context = Context(metrics=True)
    context.add_routes(route("mock:out?retain=0"))

    def refuse(_exchange: Exchange) -> None:
        raise ConnectionError("endpoint down")

    async with context:
        template = context.template()
        ok = await template.send("direct:in", 1)
        context.mock("out").whenever(refuse)
        failed = await template.send("direct:in", 2)
        model = context.routes["r"].model
        counters = list(step_counters(context).of(model).values())
    assert ok.exception is None
    assert isinstance(failed.exception, ConnectionError)
    assert [(c.sent, c.failed) for c in counters] == [(1, 1)]
    assert context.mock("out").count == 2


def test_placeholders_shift_and_escaped_braces_stay() -> None:
    line = "r = {0}(ex, '{{1}}') if {1} else {{}}"
    assert shift_placeholders(line, 3) == "r = {3}(ex, '{{1}}') if {4} else {{}}"
