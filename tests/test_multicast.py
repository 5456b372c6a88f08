"""Multicast: order, isolation of copies, parallelism, aggregation, failures, timeout."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from eip import (
    Context,
    Exchange,
    ExchangeTimeoutError,
    RedeliveryPolicy,
    RouteBuilder,
    RouteDefinitionError,
    default_error_handler,
)
from eip.dsl.builder import RouteDefinition, pipeline
from eip.errors import PartFailedError
from eip.processors.strategies import collect_bodies, concat, merge_dicts, use_latest, use_original
from eip.testing import ManualClock


def route(configure: Callable[[RouteDefinition], Any], redeliveries: int = 0) -> RouteBuilder:
    class R(RouteBuilder):
        def configure(self) -> None:
            if redeliveries:
                policy = RedeliveryPolicy(max_redeliveries=redeliveries, delay=0)
                self.error_handler(default_error_handler(policy))
            configure(self.from_("direct:in").route_id("r"))

    return R()


async def start(context: Context, configure: Callable[[RouteDefinition], Any], **kw: Any) -> None:
    context.add_routes(route(configure, **kw))
    await context.start()


def reply(body: Any) -> Callable[[Exchange], None]:
    def set_body(exchange: Exchange) -> None:
        exchange.body = body

    return set_body


def cause(exchange: Exchange) -> BaseException:
    """The output's own error, under the PartFailedError that names the output."""
    error = exchange.exception
    assert isinstance(error, PartFailedError), error
    assert error.__cause__ is not None
    return error.__cause__


def fail(message: str) -> Callable[[Exchange], None]:
    def raise_(exchange: Exchange) -> None:
        raise ValueError(message)

    return raise_


async def test_sequential_sends_a_copy_to_each_output_in_order(eip_context: Context) -> None:
    order: list[str] = []
    await start(
        eip_context,
        lambda r: r.multicast(
            pipeline().process(lambda ex: order.append("a")).to("mock:a"),
            pipeline().process(lambda ex: order.append("b")).to("mock:b"),
            "mock:c",
        ).to("mock:after"),
    )
    await eip_context.template().send("direct:in", "hello", {"h": 1})
    assert order == ["a", "b"]
    for name in ("a", "b", "c", "after"):
        assert eip_context.mock(name).received_bodies == ["hello"]
        assert eip_context.mock(name).received_headers == [{"h": 1}]


async def test_copies_are_isolated_and_the_original_continues_unchanged(
    eip_context: Context,
) -> None:
    await start(
        eip_context,
        lambda r: (
            r.set_property("p", "orig")
            .multicast(
                pipeline()
                .set_header("h", "changed")
                .set_property("p", "x")
                .set_body("new")
                .to("mock:a"),
                "mock:b",
            )
            .process(lambda ex: ex.headers.update(p=ex.properties["p"]))
            .to("mock:after")
        ),
    )
    await eip_context.template().send("direct:in", "body", {"h": "orig"})
    assert eip_context.mock("a").received_bodies == ["new"]
    assert eip_context.mock("b").received_bodies == ["body"]
    assert eip_context.mock("b").received_headers == [{"h": "orig"}]
    assert eip_context.mock("after").received_bodies == ["body"]
    assert eip_context.mock("after").received_headers == [{"h": "orig", "p": "orig"}]


async def test_sequential_sync_outputs_stay_a_plain_call(eip_context: Context) -> None:
    await start(eip_context, lambda r: r.multicast("mock:a", "mock:b", aggregate=use_latest))
    result = eip_context.routes["r"].dispatch(Exchange("x"))
    assert result is None  # no coroutine was made
    assert eip_context.mock("b").received_bodies == ["x"]


async def test_sequential_waits_for_async_outputs_in_order(
    eip_context: Context, manual_clock: ManualClock
) -> None:
    order: list[str] = []

    async def slow(exchange: Exchange) -> None:
        order.append("slow start")
        await manual_clock.sleep(1)
        order.append("slow end")

    await start(
        eip_context,
        lambda r: r.multicast(
            pipeline().process(slow), pipeline().process(lambda ex: order.append("fast"))
        ),
    )
    task = asyncio.create_task(eip_context.template().send("direct:in", "x"))
    await manual_clock.wait_for_sleepers(1)
    assert order == ["slow start"]
    await manual_clock.advance(1)
    await task
    assert order == ["slow start", "slow end", "fast"]


async def test_parallel_runs_outputs_together_and_aggregates_in_output_order(
    eip_context: Context, manual_clock: ManualClock
) -> None:
    def sleeper(seconds: float, body: str) -> Callable[[Exchange], Any]:
        async def work(exchange: Exchange) -> None:
            await manual_clock.sleep(seconds)
            exchange.body = body

        return work

    await start(
        eip_context,
        lambda r: r.multicast(
            pipeline().process(sleeper(2, "slow")),
            pipeline().process(sleeper(1, "fast")),
            pipeline().set_body("sync"),
            parallel=True,
            aggregate=collect_bodies,
        ),
    )
    task = asyncio.create_task(eip_context.template().request("direct:in", "x"))
    await manual_clock.wait_for_sleepers(2)  # both async outputs are running at once
    await manual_clock.advance(2)
    assert await task == ["slow", "fast", "sync"]


async def test_parallel_is_bounded_by_max_parallel(
    eip_context: Context, manual_clock: ManualClock
) -> None:
    async def work(exchange: Exchange) -> None:
        await manual_clock.sleep(1)

    outputs = [pipeline().process(work) for _ in range(5)]
    await start(eip_context, lambda r: r.multicast(*outputs, parallel=True, max_parallel=2))
    task = asyncio.create_task(eip_context.template().send("direct:in", "x"))
    await manual_clock.wait_for_sleepers(2)
    assert manual_clock.pending == 2
    await manual_clock.advance(1)
    assert manual_clock.pending == 2
    await manual_clock.advance(1)
    assert manual_clock.pending == 1
    await manual_clock.advance(1)
    assert (await task).exception is None


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        (collect_bodies, [{"a": 1}, {"b": 2}, {"a": 3}]),
        (merge_dicts, {"a": 3, "b": 2}),
        (use_latest, {"a": 3}),
        (use_original, {"id": 0}),
    ],
)
async def test_aggregation_strategies(eip_context: Context, strategy: Any, expected: Any) -> None:
    await start(
        eip_context,
        lambda r: r.multicast(
            pipeline().set_body({"a": 1}),
            pipeline().set_body({"b": 2}),
            pipeline().set_body({"a": 3}),
            aggregate=strategy,
        ),
    )
    assert await eip_context.template().request("direct:in", {"id": 0}) == expected


async def test_concat_and_headers_of_the_result(eip_context: Context) -> None:
    await start(
        eip_context,
        lambda r: r.multicast(
            pipeline().set_body("a").set_header("from", "a"),
            pipeline().set_body("b").set_header("from", "b"),
            aggregate=concat(", "),
        ).to("mock:after"),
    )
    await eip_context.template().send("direct:in", "x")
    assert eip_context.mock("after").received_bodies == ["a, b"]
    assert eip_context.mock("after").received_headers == [{"from": "a"}]


async def test_stop_on_exception_stops_and_fails(eip_context: Context) -> None:
    eip_context.mock("b").whenever(fail("b broke"))
    await start(
        eip_context,
        lambda r: r.multicast("mock:a", "mock:b", "mock:c", stop_on_exception=True).to("mock:z"),
    )
    exchange = await eip_context.template().send("direct:in", "x")
    assert isinstance(cause(exchange), ValueError)
    assert str(cause(exchange)) == "b broke"
    assert str(exchange.exception).startswith("multicast output index 1 (mock:b) failed")
    assert eip_context.mock("a").count == 1
    assert eip_context.mock("c").count == 0
    assert eip_context.mock("z").count == 0


async def test_without_stop_on_exception_all_run_and_the_first_failure_wins(
    eip_context: Context,
) -> None:
    eip_context.mock("b").whenever(fail("first"))
    eip_context.mock("c").whenever(fail("second"))
    await start(eip_context, lambda r: r.multicast("mock:a", "mock:b", "mock:c", "mock:d"))
    exchange = await eip_context.template().send("direct:in", "x")
    assert str(cause(exchange)) == "first"
    assert [eip_context.mock(n).count for n in "abcd"] == [1, 1, 1, 1]
    assert exchange.headers["eip.exception.message"] == "first"


async def test_builtin_strategy_does_not_hide_a_failure(eip_context: Context) -> None:
    eip_context.mock("a").whenever(fail("a broke"))
    await start(eip_context, lambda r: r.multicast("mock:a", "mock:b", aggregate=use_latest))
    exchange = await eip_context.template().send("direct:in", "x")
    assert str(cause(exchange)) == "a broke"


async def test_strategy_can_handle_failures(eip_context: Context) -> None:
    eip_context.mock("b").whenever(fail("ignored"))

    def successes_only(old: Exchange | None, new: Exchange) -> Exchange:
        if new.exception is not None:
            return old if old is not None else Exchange([])
        return collect_bodies(old, new)

    await start(
        eip_context,
        lambda r: r.multicast(
            pipeline().set_body(1).to("mock:a"),
            pipeline().set_body(2).to("mock:b"),
            pipeline().set_body(3),
            aggregate=successes_only,
        ),
    )
    assert await eip_context.template().request("direct:in", 0) == [1, 3]


async def test_parallel_stop_on_exception(eip_context: Context, manual_clock: ManualClock) -> None:
    async def slow(exchange: Exchange) -> None:
        await manual_clock.sleep(1)

    eip_context.mock("bad").whenever(fail("bad"))
    await start(
        eip_context,
        lambda r: r.multicast(
            pipeline().process(slow).to("mock:slow"),
            "mock:bad",
            "mock:never",
            parallel=True,
            max_parallel=2,
            stop_on_exception=True,
        ),
    )
    task = asyncio.create_task(eip_context.template().send("direct:in", "x"))
    await manual_clock.wait_for_sleepers(1)
    await manual_clock.advance(1)
    exchange = await task
    assert str(cause(exchange)) == "bad"
    assert eip_context.mock("slow").count == 1  # running outputs are awaited, not cancelled
    assert eip_context.mock("never").count == 0


async def test_parallel_failures_are_reported_in_output_order(
    eip_context: Context, manual_clock: ManualClock
) -> None:
    async def slow_fail(exchange: Exchange) -> None:
        await manual_clock.sleep(1)
        raise ValueError("slow one")

    eip_context.mock("fast").whenever(fail("fast one"))
    await start(
        eip_context,
        lambda r: r.multicast(pipeline().process(slow_fail), "mock:fast", parallel=True),
    )
    task = asyncio.create_task(eip_context.template().send("direct:in", "x"))
    await manual_clock.wait_for_sleepers(1)
    await manual_clock.advance(1)
    assert str(cause(await task)) == "slow one"


async def test_parallel_timeout_cancels_and_names_pending_outputs(eip_context: Context) -> None:
    cancelled: list[str] = []

    async def hang(exchange: Exchange) -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append("hang")
            raise

    await start(
        eip_context,
        lambda r: r.multicast(
            "mock:quick",
            pipeline().process(hang),
            "mock:later",
            parallel=True,
            max_parallel=1,
            timeout=0.05,
        ),
    )
    exchange = await eip_context.template().send("direct:in", "x")
    error = exchange.exception
    assert isinstance(error, ExchangeTimeoutError)
    assert "output 2 (process(" in str(error)
    assert "not started: output 3 (mock:later)" in str(error)
    assert cancelled == ["hang"]
    assert eip_context.mock("quick").count == 1
    assert eip_context.mock("later").count == 0


async def test_timeout_needs_parallel(eip_context: Context) -> None:
    eip_context.add_routes(route(lambda r: r.multicast("mock:a", timeout=1.0)))
    with pytest.raises(RouteDefinitionError, match="timeout needs parallel=True"):
        await eip_context.start()


async def test_a_failing_output_is_redelivered_alone(eip_context: Context) -> None:
    eip_context.mock("b").whenever(fail("down"))
    await start(eip_context, lambda r: r.multicast("mock:a", "mock:b"), redeliveries=2)
    exchange = await eip_context.template().send("direct:in", "x")
    assert str(cause(exchange)) == "down"
    assert eip_context.mock("a").count == 1  # the multicast itself is not redelivered
    assert eip_context.mock("b").count == 3
    assert exchange.headers["eip.redelivery.count"] == 2


async def test_completions_of_copies_run_with_the_exchange(eip_context: Context) -> None:
    events: list[str] = []

    def register(exchange: Exchange) -> None:
        exchange.on_completion(on_success=lambda ex: events.append(f"done {ex.body}"))

    await start(
        eip_context,
        lambda r: r.multicast(pipeline().process(register), "mock:a").process(
            lambda ex: events.append("route end")
        ),
    )
    await eip_context.template().send("direct:in", "x")
    assert events == ["route end", "done x"]


async def test_outputs_must_be_endpoints_or_pipelines() -> None:
    with pytest.raises(TypeError, match="multicast output must be an endpoint"):
        pipeline().multicast(42)  # type: ignore[arg-type]


def test_routing_eips_describe_themselves_for_route_listings() -> None:
    from eip.cli import describe_routes
    from eip.expressions import header

    context = Context()
    context.add_routes(
        route(
            lambda r: (
                r.multicast(
                    "mock:a", pipeline().set_body(1).to("mock:b"), parallel=True, aggregate=concat()
                )
                .recipient_list(header("to"), ignore_invalid_endpoints=True)
                .wire_tap("mock:tap", copy=False)
                .enrich("mock:resource")
                .throttle(5, 2.5, key=header("k"), reject=True)
                .circuit_breaker("mock:erp", pipeline().to("mock:fb"), name="erp")
            )
        )
    )
    context.validate()
    assert describe_routes(context).splitlines()[1:] == [
        "    1. multicast(2 outputs, parallel, aggregate=concat(''))",
        "       output 1:",
        "          1. to(mock:a)",
        "       output 2:",
        "          1. transform(int)",
        "          2. to(mock:b)",
        "    2. recipient_list(header('to'), ignore_invalid_endpoints)",
        "    3. wire_tap(mock:tap, copy=False)",
        "    4. enrich(mock:resource)",
        "    5. throttle(5/2.5s, key=header('k'), reject)",
        "    6. circuit_breaker('erp', failure_rate=0.5, open_for=30s, fallback)",
        "       protected:",
        "          1. to(mock:erp)",
        "       fallback:",
        "          1. to(mock:fb)",
    ]


async def test_a_dead_lettered_output_counts_as_handled(eip_context: Context) -> None:
    from eip import dead_letter_channel

    class R(RouteBuilder):
        def configure(self) -> None:
            self.error_handler(dead_letter_channel("mock:dlq", use_original_message=True))
            (
                self.from_("direct:in")
                .route_id("r")
                .multicast(pipeline().set_body("changed").to("mock:bad"), "mock:good")
                .to("mock:after")
            )

    eip_context.mock("bad").whenever(fail("bad"))
    eip_context.add_routes(R())
    await eip_context.start()
    exchange = await eip_context.template().send("direct:in", "x")
    assert exchange.exception is None
    assert eip_context.mock("dlq").received_bodies == ["x"]  # the route's original message
    assert eip_context.mock("good").count == eip_context.mock("after").count == 1


@pytest.mark.parametrize("parallel", [False, True], ids=["sequential", "parallel"])
async def test_multicast_into_failing_direct_sub_routes_runs_the_clause_once(
    eip_context: Context, parallel: bool
) -> None:
    clause_runs: list[str] = []

    class R(RouteBuilder):
        def configure(self) -> None:
            self.on_exception(ValueError).process(lambda ex: clause_runs.append(ex.body))
            (
                self.from_("direct:in")
                .route_id("r")
                .multicast("direct:a", "direct:b", "direct:c", parallel=parallel)
                .to("mock:after")
            )
            self.from_("direct:a").route_id("a").to("mock:a")
            self.from_("direct:b").route_id("b").set_body("b's copy").process(fail("b"))
            self.from_("direct:c").route_id("c").to("mock:c")

    eip_context.add_routes(R())
    await eip_context.start()
    exchange = await eip_context.template().send("direct:in", "x")
    assert isinstance(cause(exchange), ValueError)
    assert clause_runs == ["b's copy"]  # in sub-route b only: not again in the caller
    assert eip_context.mock("a").count == eip_context.mock("c").count == 1
    assert eip_context.mock("after").count == 0
