"""Content enricher: default merge, custom strategy, async resources, error handling."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from eip import (
    Context,
    Exchange,
    ExchangePattern,
    RedeliveryPolicy,
    RouteBuilder,
    RouteDefinitionError,
    dead_letter_channel,
)
from eip.dsl.builder import RouteDefinition


class Routes(RouteBuilder):
    def __init__(self, configure: Callable[[RouteDefinition], Any], dlc: bool = False) -> None:
        super().__init__()
        self._configure = configure
        self._dlc = dlc

    def configure(self) -> None:
        if self._dlc:
            policy = RedeliveryPolicy(max_redeliveries=2, delay=0)
            self.error_handler(dead_letter_channel("mock:dlq", redelivery=policy))
        self._configure(self.from_("direct:in").route_id("r"))
        (
            self.from_("direct:customer")
            .route_id("customer")
            .set_header("resource", "yes")
            .transform(lambda ex: {"name": "Ada", "id": ex.body["id"]})
        )


async def start(context: Context, configure: Callable[[RouteDefinition], Any], **kw: Any) -> None:
    context.add_routes(Routes(configure, **kw))
    await context.start()


async def test_default_takes_the_reply_body_and_keeps_headers(eip_context: Context) -> None:
    await start(eip_context, lambda r: r.enrich("direct:customer").to("mock:out"))
    await eip_context.template().send("direct:in", {"id": 7}, {"h": 1})
    out = eip_context.mock("out")
    assert out.received_bodies == [{"name": "Ada", "id": 7}]
    assert out.received_headers == [{"h": 1}]


async def test_resource_gets_an_in_out_copy(eip_context: Context) -> None:
    seen: list[Exchange] = []
    eip_context.mock("resource").whenever(lambda ex: seen.append(ex))
    await start(eip_context, lambda r: r.set_property("p", 1).enrich("mock:resource"))
    exchange = await eip_context.template().send("direct:in", "x")
    assert seen[0] is not exchange
    assert seen[0].pattern is ExchangePattern.IN_OUT
    assert exchange.pattern is ExchangePattern.IN_ONLY


async def test_custom_strategy_merges(eip_context: Context) -> None:
    def merge(original: Exchange, reply: Exchange) -> Exchange:
        original.body = {**original.body, "customer": reply.body["name"]}
        original.headers["enriched"] = reply.headers["resource"]
        return original

    await start(eip_context, lambda r: r.enrich("direct:customer", merge).to("mock:out"))
    await eip_context.template().send("direct:in", {"id": 1, "total": 5})
    assert eip_context.mock("out").received_bodies == [{"id": 1, "total": 5, "customer": "Ada"}]
    assert eip_context.mock("out").received_headers == [{"enriched": "yes"}]


async def test_strategy_may_return_the_reply(eip_context: Context) -> None:
    await start(
        eip_context, lambda r: r.enrich("direct:customer", lambda o, reply: reply).to("mock:out")
    )
    await eip_context.template().send("direct:in", {"id": 2})
    assert eip_context.mock("out").received_headers == [{"resource": "yes"}]


async def test_async_resource(eip_context: Context) -> None:
    async def lookup(exchange: Exchange) -> None:
        await asyncio.sleep(0)
        exchange.body = exchange.body.upper()

    eip_context.mock("resource").whenever(lookup)
    await start(eip_context, lambda r: r.enrich("mock:resource").to("mock:out"))
    assert await eip_context.template().request("direct:in", "abc") == "ABC"


async def test_failure_is_redelivered_by_the_route(eip_context: Context) -> None:
    resource = eip_context.mock("resource").fail_times(2, lambda: ConnectionError("down"))
    await start(eip_context, lambda r: r.enrich("mock:resource").to("mock:out"), dlc=True)
    exchange = await eip_context.template().send("direct:in", "x")
    assert exchange.exception is None
    assert resource.count == 3
    assert eip_context.mock("out").count == 1
    assert eip_context.mock("dlq").count == 0


async def test_exhausted_failure_goes_to_the_dead_letter_channel(eip_context: Context) -> None:
    def down(exchange: Exchange) -> None:
        raise ConnectionError("down")

    eip_context.mock("resource").whenever(down)
    await start(eip_context, lambda r: r.enrich("mock:resource").to("mock:out"), dlc=True)
    await eip_context.template().send("direct:in", "original")
    dlq = eip_context.mock("dlq")
    assert dlq.received_bodies == ["original"]
    assert dlq.received_headers[0]["eip.exception.type"] == "builtins.ConnectionError"
    assert dlq.received_headers[0]["eip.failure.endpoint"] == "enrich(mock:resource)"
    assert eip_context.mock("resource").count == 3
    assert eip_context.mock("out").count == 0


async def test_failing_strategy_fails_the_exchange(eip_context: Context) -> None:
    def broken(original: Exchange, reply: Exchange) -> Exchange:
        raise KeyError("missing")

    await start(eip_context, lambda r: r.enrich("direct:customer", broken))
    exchange = await eip_context.template().send("direct:in", {"id": 1})
    assert isinstance(exchange.exception, KeyError)


async def test_async_strategy_is_refused_at_start(eip_context: Context) -> None:
    async def merge(original: Exchange, reply: Exchange) -> Exchange:
        return original

    eip_context.add_routes(Routes(lambda r: r.enrich("direct:customer", merge)))  # type: ignore[arg-type]
    with pytest.raises(RouteDefinitionError, match="sync by contract"):
        await eip_context.start()


async def test_failure_handled_in_a_direct_resource_route_is_not_redelivered_again(
    eip_context: Context,
) -> None:
    class Flaky(RouteBuilder):
        def configure(self) -> None:
            policy = RedeliveryPolicy(max_redeliveries=1, delay=0)
            self.error_handler(dead_letter_channel("mock:unused", redelivery=policy))
            self.on_exception(ConnectionError).to("mock:seen")
            self.from_("direct:flaky").route_id("flaky").to("mock:resource")

    def down(exchange: Exchange) -> None:
        raise ConnectionError("down")

    eip_context.mock("resource").whenever(down)
    eip_context.add_routes(Flaky())
    await start(eip_context, lambda r: r.enrich("direct:flaky").to("mock:out"), dlc=True)
    await eip_context.template().send("direct:in", "x")
    assert eip_context.mock("resource").count == 2  # the resource route's own redelivery only
    assert eip_context.mock("dlq").received_bodies == ["x"]
    assert eip_context.mock("dlq").received_headers[0]["eip.failure.route"] == "flaky"
