"""``direct:`` - synchronous in-process calls between routes (eip/components/direct.py)."""

from __future__ import annotations

import asyncio
import inspect

import pytest

from eip import (
    Exchange,
    ExchangePattern,
    NoConsumerError,
    RouteBuilder,
    RouteDefinitionError,
    direct,
)
from eip.errors import EipError


def routes(configure):
    """A RouteBuilder whose configure is ``configure(builder)``."""

    class Routes(RouteBuilder):
        def configure(self) -> None:
            configure(self)

    return Routes()


async def test_request_returns_the_reply_of_the_called_route(eip_context):
    eip_context.add_routes(
        routes(
            lambda b: (
                b.from_("direct:upper")
                .route_id("upper")
                .transform(lambda ex: ex.body.upper())
                .set_header("seen", True)
            )
        )
    )
    await eip_context.start()
    template = eip_context.template()
    assert await template.request("direct:upper", "hello") == "HELLO"
    exchange = await template.request_exchange("direct:upper", "abc", {"h": 1})
    assert exchange.exception is None
    assert exchange.body == "ABC"
    assert exchange.headers == {"h": 1, "seen": True}


async def test_in_only_send_also_runs_the_route_and_returns_the_exchange(eip_context):
    eip_context.add_routes(
        routes(lambda b: b.from_("direct:in").route_id("r").to("mock:out")),
    )
    await eip_context.start()
    exchange = await eip_context.template().send("direct:in", {"a": 1})
    assert exchange.exception is None
    assert eip_context.mock("out").received_bodies == [{"a": 1}]


async def test_typed_spec_and_uri_reach_the_same_route(eip_context):
    eip_context.add_routes(
        routes(
            lambda b: b.from_(direct("calc")).route_id("calc").transform(lambda ex: ex.body * 2)
        ),
    )
    await eip_context.start()
    template = eip_context.template()
    assert await template.request("direct:calc", 4) == 8
    assert await template.request(direct("calc"), 5) == 10


async def test_the_same_exchange_travels_into_the_sub_route(eip_context):
    seen: list[Exchange] = []

    def configure(b: RouteBuilder) -> None:
        (
            b.from_("direct:caller")
            .route_id("caller")
            .set_header("before", 1)
            .process(seen.append)
            .to("direct:sub")
            .process(seen.append)
            .to("mock:after")
        )
        (
            b.from_("direct:sub")
            .route_id("sub")
            .process(seen.append)
            .set_header("from_sub", "yes")
            .set_property("sub_property", 42)
            .transform(lambda ex: f"{ex.body}+sub")
        )

    eip_context.add_routes(routes(configure))
    await eip_context.start()
    reply = await eip_context.template().request("direct:caller", "msg")

    assert reply == "msg+sub"
    assert len(seen) == 3
    assert seen[0] is seen[1] is seen[2]  # one exchange object end to end
    after = eip_context.mock("after")
    assert after.received_bodies == ["msg+sub"]
    assert after.received_headers == [{"before": 1, "from_sub": "yes"}]
    assert after.received[0].properties["sub_property"] == 42


async def test_sub_route_sees_headers_set_by_the_caller(eip_context):
    def configure(b: RouteBuilder) -> None:
        b.from_("direct:a").route_id("a").set_header("token", "t-1").to("direct:b")
        b.from_("direct:b").route_id("b").transform(lambda ex: ex.headers.get("token"))

    eip_context.add_routes(routes(configure))
    await eip_context.start()
    assert await eip_context.template().request("direct:a", None) == "t-1"


async def test_sync_sub_route_is_a_plain_call(eip_context):
    eip_context.add_routes(
        routes(
            lambda b: (
                b.from_("direct:sync")
                .route_id("sync")
                .set_header("x", 1)
                .transform(lambda ex: ex.body + 1)
                .to("mock:sync-out")
            )
        )
    )
    await eip_context.start()
    producer = await eip_context.producer("direct:sync")
    exchange = Exchange(1)
    result = producer.process(exchange)
    assert result is None  # no coroutine, no awaitable: it already ran
    assert exchange.body == 2
    assert exchange.headers == {"x": 1}
    assert eip_context.mock("sync-out").count == 1


async def test_async_sub_route_returns_an_awaitable(eip_context):
    async def slow(ex: Exchange) -> None:
        await asyncio.sleep(0)
        ex.body = "done"

    eip_context.add_routes(
        routes(lambda b: b.from_("direct:async").route_id("async").process(slow)),
    )
    await eip_context.start()
    producer = await eip_context.producer("direct:async")
    exchange = Exchange("start")
    result = producer.process(exchange)
    assert result is not None
    assert inspect.isawaitable(result)
    await result
    assert exchange.body == "done"


async def test_no_consumer_raises_no_consumer_error_naming_the_endpoint(eip_context):
    await eip_context.start()
    with pytest.raises(NoConsumerError, match=r"direct:nobody") as info:
        await eip_context.template().request("direct:nobody", "x")
    assert info.value.endpoint == "direct:nobody"


async def test_no_consumer_from_a_route_fails_the_exchange(eip_context):
    eip_context.add_routes(
        routes(lambda b: b.from_("direct:in").route_id("r").to("direct:missing").to("mock:never")),
    )
    await eip_context.start()
    exchange = await eip_context.template().send("direct:in", "x")
    assert isinstance(exchange.exception, NoConsumerError)
    assert "direct:missing" in str(exchange.exception)
    assert exchange.exception.route_id == "r"
    assert eip_context.mock("never").count == 0


async def test_no_consumer_producer_raises_synchronously(eip_context):
    await eip_context.start()
    producer = await eip_context.producer("direct:ghost")
    with pytest.raises(NoConsumerError, match="direct:ghost"):
        producer.process(Exchange())


async def test_stopped_route_no_longer_consumes(eip_context):
    eip_context.add_routes(routes(lambda b: b.from_("direct:x").route_id("x").to("mock:x")))
    await eip_context.start()
    assert await eip_context.template().request("direct:x", 1) == 1
    await eip_context.stop_route("x")
    with pytest.raises(NoConsumerError, match="direct:x"):
        await eip_context.template().request("direct:x", 2)
    assert eip_context.mock("x").count == 1


async def test_timeout_waits_for_a_consumer_that_starts_later(eip_context):
    eip_context.add_routes(
        routes(
            lambda b: (
                b.from_("direct:late")
                .route_id("late")
                .auto_startup(False)
                .transform(lambda ex: f"late:{ex.body}")
            )
        )
    )
    await eip_context.start()
    template = eip_context.template()
    pending = asyncio.create_task(template.request("direct:late?timeout=10", "x"))
    for _ in range(20):
        await asyncio.sleep(0)
    assert not pending.done()  # waiting for the route, not failing

    await eip_context.start_route("late")
    reply = await asyncio.wait_for(pending, 5)
    assert reply == "late:x"


async def test_several_senders_wait_for_the_same_late_consumer(eip_context):
    eip_context.add_routes(
        routes(
            lambda b: (
                b.from_("direct:late")
                .route_id("late")
                .auto_startup(False)
                .transform(lambda ex: ex.body * 10)
            )
        )
    )
    await eip_context.start()
    template = eip_context.template()
    tasks = [
        asyncio.create_task(template.request(direct("late", timeout=10), n)) for n in (1, 2, 3)
    ]
    for _ in range(20):
        await asyncio.sleep(0)
    assert not any(t.done() for t in tasks)
    await eip_context.start_route("late")
    assert await asyncio.wait_for(asyncio.gather(*tasks), 5) == [10, 20, 30]


async def test_timeout_runs_out_with_no_consumer_error(eip_context):
    await eip_context.start()
    with pytest.raises(NoConsumerError, match=r"direct:never") as info:
        await eip_context.template().request("direct:never?timeout=0.05", "x")
    assert info.value.endpoint == "direct:never"


async def test_two_routes_consuming_the_same_direct_name_fail_at_start(eip_context):
    def configure(b: RouteBuilder) -> None:
        b.from_("direct:dup").route_id("first").to("mock:a")
        b.from_("direct:dup").route_id("second").to("mock:b")

    eip_context.add_routes(routes(configure))
    with pytest.raises(RouteDefinitionError, match="direct:dup") as info:
        await eip_context.start()
    text = str(info.value)
    assert "first" in text
    assert "second" in text


async def test_duplicate_direct_consumer_is_reported_as_an_eip_error_and_nothing_runs(
    eip_context,
):
    def configure(b: RouteBuilder) -> None:
        b.from_("direct:dup").route_id("first").to("mock:a")
        b.from_("direct:dup").route_id("second").to("mock:b")

    eip_context.add_routes(routes(configure))
    with pytest.raises(EipError, match="direct:dup"):
        await eip_context.start()
    assert eip_context.started is False
    with pytest.raises(NoConsumerError):
        await eip_context.template().request("direct:dup", "x")


async def test_exception_in_a_sync_sub_route_propagates_to_the_caller(eip_context):
    def fail(_ex: Exchange) -> None:
        raise ValueError("sub-route failed")

    def configure(b: RouteBuilder) -> None:
        b.from_("direct:caller").route_id("caller").to("direct:sub").to("mock:after")
        b.from_("direct:sub").route_id("sub").process(fail)

    eip_context.add_routes(routes(configure))
    await eip_context.start()
    with pytest.raises(ValueError, match="sub-route failed"):
        await eip_context.template().request("direct:caller", "x")
    exchange = await eip_context.template().send("direct:caller", "y")
    assert isinstance(exchange.exception, ValueError)
    assert eip_context.mock("after").count == 0


async def test_exception_in_an_async_sub_route_propagates_to_the_caller(eip_context):
    async def fail(_ex: Exchange) -> None:
        await asyncio.sleep(0)
        raise KeyError("async boom")

    def configure(b: RouteBuilder) -> None:
        b.from_("direct:caller").route_id("caller").to("direct:sub").to("mock:after")
        b.from_("direct:sub").route_id("sub").process(fail)

    eip_context.add_routes(routes(configure))
    await eip_context.start()
    with pytest.raises(KeyError, match="async boom"):
        await eip_context.template().request("direct:caller", "x")
    assert eip_context.mock("after").count == 0


async def test_exception_in_sub_route_can_be_handled_by_the_caller_route(eip_context):
    def fail(_ex: Exchange) -> None:
        raise ValueError("bad")

    class Routes(RouteBuilder):
        def configure(self) -> None:
            self.on_exception(ValueError).handled().to("mock:handled")
            self.from_("direct:caller").route_id("caller").to("direct:sub").to("mock:after")

    class Sub(RouteBuilder):
        def configure(self) -> None:
            self.from_("direct:sub").route_id("sub").process(fail)

    eip_context.add_routes(Routes(), Sub())
    await eip_context.start()
    exchange = await eip_context.template().send("direct:caller", "x")
    assert exchange.exception is None
    assert eip_context.mock("handled").count == 1
    assert eip_context.mock("after").count == 0


async def test_in_out_pattern_is_kept_through_direct(eip_context):
    patterns: list[ExchangePattern] = []
    eip_context.add_routes(
        routes(
            lambda b: (
                b.from_("direct:p").route_id("p").process(lambda ex: patterns.append(ex.pattern))
            )
        )
    )
    await eip_context.start()
    await eip_context.template().request("direct:p", 1)
    await eip_context.template().send("direct:p", 1)
    assert patterns == [ExchangePattern.IN_OUT, ExchangePattern.IN_ONLY]


def test_direct_endpoint_needs_a_name(eip_context):
    with pytest.raises(RouteDefinitionError, match="name"):
        eip_context.resolve_endpoint("direct:")


def test_unknown_direct_option_fails_naming_it(eip_context):
    with pytest.raises(RouteDefinitionError, match="timout") as info:
        eip_context.resolve_endpoint("direct:x?timout=5")
    assert info.value.option == "timout"
    assert "timeout" in (info.value.valid or [])


def test_duplicate_direct_consumers_are_found_by_validate_before_anything_runs(eip_context):
    def configure(b: RouteBuilder) -> None:
        b.from_("direct:dup").route_id("first").to("mock:a")
        b.from_("direct:dup").route_id("second").to("mock:b")

    eip_context.add_routes(routes(configure))
    with pytest.raises(RouteDefinitionError, match="direct:dup"):
        eip_context.validate()
