"""Recipient list: recipients from a header string or a list, invalid endpoints, caching."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from eip import Context, Exchange, RouteBuilder, RouteDefinitionError, header, mock
from eip.dsl.builder import RouteDefinition
from eip.processors.recipient_list import ResolveEndpointError
from eip.processors.strategies import collect_bodies
from eip.testing import ManualClock


def route(configure: Callable[[RouteDefinition], Any]) -> RouteBuilder:
    class R(RouteBuilder):
        def configure(self) -> None:
            configure(self.from_("direct:in").route_id("r"))

    return R()


async def start(context: Context, configure: Callable[[RouteDefinition], Any]) -> None:
    context.add_routes(route(configure))
    await context.start()


async def test_recipients_from_a_header_string(eip_context: Context) -> None:
    await start(eip_context, lambda r: r.recipient_list(header("to")).to("mock:after"))
    template = eip_context.template()
    await template.send("direct:in", 1, {"to": "mock:a, mock:b"})
    await template.send("direct:in", 2, {"to": "mock:b"})
    await template.send("direct:in", 3, {"to": ""})
    assert eip_context.mock("a").received_bodies == [1]
    assert eip_context.mock("b").received_bodies == [1, 2]
    assert eip_context.mock("after").received_bodies == [1, 2, 3]


async def test_custom_delimiter_and_blank_parts(eip_context: Context) -> None:
    await start(eip_context, lambda r: r.recipient_list(header("to"), ";"))
    await eip_context.template().send("direct:in", "x", {"to": " mock:a ;; mock:b;"})
    assert eip_context.mock("a").count == 1
    assert eip_context.mock("b").count == 1


async def test_recipients_from_a_list_of_uris_and_specs(eip_context: Context) -> None:
    await start(
        eip_context,
        lambda r: r.recipient_list(lambda ex: ["mock:a", mock("b"), "mock:c?retain=5"]),
    )
    await eip_context.template().send("direct:in", "x")
    assert [eip_context.mock(n).count for n in "abc"] == [1, 1, 1]


async def test_async_expression(eip_context: Context) -> None:
    async def lookup(exchange: Exchange) -> str:
        await asyncio.sleep(0)
        return "mock:a,mock:b"

    await start(eip_context, lambda r: r.recipient_list(lookup))
    await eip_context.template().send("direct:in", "x")
    assert eip_context.mock("a").count == eip_context.mock("b").count == 1


async def test_unknown_endpoint_fails_with_a_clear_error(eip_context: Context) -> None:
    await start(eip_context, lambda r: r.recipient_list(header("to")).to("mock:after"))
    exchange = await eip_context.template().send("direct:in", "x", {"to": "mock:a,nope:b"})
    error = exchange.exception
    assert isinstance(error, ResolveEndpointError)
    assert "recipient 'nope:b' is not a valid endpoint" in str(error)
    assert "unknown endpoint scheme 'nope:'" in str(error)
    assert isinstance(error.__cause__, RouteDefinitionError)
    assert eip_context.mock("a").count == 0  # resolved before anything is sent
    assert eip_context.mock("after").count == 0


async def test_bad_option_and_non_endpoint_values_fail(eip_context: Context) -> None:
    await start(eip_context, lambda r: r.recipient_list(lambda ex: ex.body))
    template = eip_context.template()
    exchange = await template.send("direct:in", ["mock:a?colour=red"])
    assert "unknown option 'colour'" in str(exchange.exception)
    exchange = await template.send("direct:in", ["mock:a", 42])
    assert isinstance(exchange.exception, ResolveEndpointError)
    assert "expected endpoint URIs or specs, got int" in str(exchange.exception)


async def test_ignore_invalid_endpoints(eip_context: Context) -> None:
    await start(
        eip_context,
        lambda r: r.recipient_list(lambda ex: ex.body, ignore_invalid_endpoints=True).to(
            "mock:after"
        ),
    )
    template = eip_context.template()
    for _ in range(2):
        exchange = await template.send("direct:in", ["nope:x", "mock:a", 42, "mock:b?bad=1"])
        assert exchange.exception is None
    assert eip_context.mock("a").count == 2
    assert eip_context.mock("after").count == 2


async def test_resolved_recipients_are_cached_so_later_sends_stay_sync(
    eip_context: Context,
) -> None:
    await start(eip_context, lambda r: r.recipient_list(header("to")))
    await eip_context.template().send("direct:in", "first", {"to": "mock:a"})
    result = eip_context.routes["r"].dispatch(Exchange("second", {"to": "mock:a"}))
    assert result is None
    assert eip_context.mock("a").received_bodies == ["first", "second"]


async def test_small_cache_still_sends_to_every_recipient(eip_context: Context) -> None:
    await start(eip_context, lambda r: r.recipient_list(header("to"), cache_size=1))
    for _ in range(3):
        await eip_context.template().send("direct:in", "x", {"to": "mock:a,mock:b,mock:c"})
    assert [eip_context.mock(n).count for n in "abc"] == [3, 3, 3]


async def test_aggregation_and_parallel(eip_context: Context, manual_clock: ManualClock) -> None:
    async def slow_reply(exchange: Exchange) -> None:
        await manual_clock.sleep(1)
        exchange.body = "slow"

    eip_context.mock("slow").whenever(slow_reply)
    eip_context.mock("fast").whenever(lambda ex: setattr(ex, "body", "fast"))
    await start(
        eip_context,
        lambda r: r.recipient_list(header("to"), parallel=True, aggregate=collect_bodies),
    )
    task = asyncio.create_task(
        eip_context.template().request("direct:in", "x", {"to": "mock:slow,mock:fast"})
    )
    await manual_clock.wait_for_sleepers(1)
    await manual_clock.advance(1)
    assert await task == ["slow", "fast"]


async def test_invalid_options_fail_at_start(eip_context: Context) -> None:
    eip_context.add_routes(route(lambda r: r.recipient_list(header("to"), cache_size=0)))
    with pytest.raises(RouteDefinitionError, match="cache_size must be >= 1"):
        await eip_context.start()
