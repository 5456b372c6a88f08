"""The fused fast path (eip/processors/fuse.py): a route's dispatch is one generated function
with its choice branches and its JSON codecs inline. These tests pin that it behaves exactly
like calling each step: errors are handled at the step that failed (found from the traceback's
line, not a stored index), a STOP ends routing, a suspending step hands over mid-branch, and
the codecs' errors and pass-through are those of the formats' own methods."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest

from eip import Context, Exchange, RedeliveryPolicy, RouteBuilder, default_error_handler, when
from eip.dataformats import json
from eip.dsl.builder import otherwise
from eip.errors import MarshalError, UnmarshalError
from eip.processors.fuse import MAX_NESTING

RETRY = RedeliveryPolicy(max_redeliveries=3, delay=0.0)


class Item(msgspec.Struct):
    id: int
    kind: str


class Calls:
    """Counts calls per step name; ``fail`` names steps that raise on their first N calls."""

    def __init__(self, **fail: int) -> None:
        self.calls: dict[str, int] = {}
        self.fail = fail

    def step(self, name: str) -> Any:
        def step(exchange: Exchange) -> None:
            self.calls[name] = self.calls.get(name, 0) + 1
            if self.calls[name] <= self.fail.get(name, 0):
                raise ValueError(f"{name} failed (call {self.calls[name]})")

        step.__qualname__ = name
        return step


def routes(configure: Any, *, retry: bool = True) -> RouteBuilder:
    class R(RouteBuilder):
        def configure(self) -> None:
            if retry:
                self.error_handler(default_error_handler(RETRY))
            configure(self.from_("direct:in").route_id("r"))

    return R()


async def run(context: Context, body: Any) -> Exchange:
    route = context.routes["r"]
    exchange = Exchange(body)
    pending = route.dispatch(exchange)
    if pending is not None:
        try:
            await pending
        except Exception as exc:
            failed: BaseException | None = exc
        else:
            failed = None
        assert exchange.exception is failed  # dispatch raises what it set on the exchange
    return exchange


async def test_dispatch_and_choice_branches_are_one_generated_function() -> None:
    context = Context()
    context.add_routes(
        routes(
            lambda r: r.unmarshal(json(Item)).choice(
                when(lambda ex: ex.body.kind == "a").marshal(json()).to("mock:a"),
                otherwise().marshal(json()).to("mock:b"),
            )
        )
    )
    async with context:
        source = context.routes["r"].dispatch.eip_source  # type: ignore[attr-defined]
        assert "exchanges_total += 1" in source  # the route's bookkeeping, inline
        assert "b1_slow(" in source  # both branches, inline
        assert "b2_slow(" in source
        assert " i = " not in source  # no step index stored while the steps run
        for kind, mock in (("a", "a"), ("z", "b")):
            exchange = await run(context, b'{"id": 1, "kind": "%s"}' % kind.encode())
            assert exchange.exception is None
            assert context.mock(mock).received_bodies[-1] == b'{"id":1,"kind":"%s"}' % (
                kind.encode()
            )
        assert context.routes["r"].exchanges_total == 2
        assert context.routes["r"].inflight == 0


async def test_a_failure_at_the_top_is_redelivered_at_the_failing_step() -> None:
    calls = Calls(third=2)
    context = Context()
    context.add_routes(
        routes(
            lambda r: (
                r.process(calls.step("first"))
                .process(calls.step("second"))
                .process(calls.step("third"))
                .to("mock:out")
            )
        )
    )
    async with context:
        exchange = await run(context, "x")
    assert exchange.exception is None
    assert calls.calls == {"first": 1, "second": 1, "third": 3}
    assert context.mock("out").count == 1


async def test_a_failure_inside_an_inlined_branch_is_redelivered_at_its_step() -> None:
    calls = Calls(two=1)
    context = Context()
    context.add_routes(
        routes(
            lambda r: r.choice(
                when(lambda ex: ex.body == "x")
                .process(calls.step("one"))
                .process(calls.step("two"))
                .to("mock:x"),
                otherwise().to("mock:other"),
            ).to("mock:after")
        )
    )
    async with context:
        assert "b1_slow(" in context.routes["r"].dispatch.eip_source  # type: ignore[attr-defined]
        exchange = await run(context, "x")
    assert exchange.exception is None
    assert calls.calls == {"one": 1, "two": 2}
    assert context.mock("x").count == 1
    assert context.mock("after").count == 1
    assert context.mock("other").count == 0


async def test_an_exhausted_failure_in_a_branch_names_its_step_and_fails_the_route() -> None:
    calls = Calls(two=99)
    context = Context()
    context.add_routes(
        routes(
            lambda r: r.choice(
                when(lambda ex: True).process(calls.step("one")).process(calls.step("two"))
            ).to("mock:after")
        )
    )
    async with context:
        exchange = await run(context, "x")
        record = context.failures.last("r")
    assert isinstance(exchange.exception, ValueError)
    assert calls.calls == {"one": 1, "two": 4}  # 1 + 3 redeliveries, of step two only
    assert record is not None
    assert record.failed_at is not None
    assert "two" in record.failed_at
    assert "one" not in record.failed_at
    assert context.routes["r"].exchanges_failed == 1
    assert context.mock("after").count == 0


async def test_nested_choices_inline_and_redeliver_the_inner_step() -> None:
    calls = Calls(inner=1)
    context = Context()
    context.add_routes(
        routes(
            lambda r: r.choice(
                when(lambda ex: True).choice(
                    when(lambda ex: True).process(calls.step("inner")).to("mock:deep")
                )
            )
        )
    )
    async with context:
        source = context.routes["r"].dispatch.eip_source  # type: ignore[attr-defined]
        assert "b2_slow(" in source  # the inner branch is inline in the outer one
        exchange = await run(context, "x")
    assert exchange.exception is None
    assert calls.calls == {"inner": 2}
    assert context.mock("deep").count == 1


async def test_choices_nested_deeper_than_the_limit_are_called_and_still_work() -> None:
    def nest(depth: int) -> Any:
        branch = when(lambda ex: True)
        return branch.to("mock:bottom") if depth == 0 else branch.choice(nest(depth - 1))

    context = Context()
    context.add_routes(routes(lambda r: r.choice(nest(MAX_NESTING + 1)).to("mock:after")))
    async with context:
        source = context.routes["r"].dispatch.eip_source  # type: ignore[attr-defined]
        assert f"b{MAX_NESTING + 1}_slow(" not in source
        exchange = await run(context, "x")
    assert exchange.exception is None
    assert context.mock("bottom").count == 1
    assert context.mock("after").count == 1


async def test_stop_in_a_branch_ends_the_route_and_a_filter_in_a_branch_ends_the_branch() -> None:
    context = Context()
    context.add_routes(
        routes(
            lambda r: r.choice(
                when(lambda ex: ex.body == "stop").to("mock:stopping").stop(),
                when(lambda ex: ex.body.startswith("filter"))
                .filter(lambda ex: ex.body == "filter-pass")
                .to("mock:passed"),
            ).to("mock:after")
        )
    )
    async with context:
        stopped = await run(context, "stop")
        dropped = await run(context, "filter-drop")
        passed = await run(context, "filter-pass")
    assert stopped.route_stop is False  # reset when the route ends
    assert [e.exception for e in (stopped, dropped, passed)] == [None, None, None]
    assert context.mock("stopping").count == 1
    assert context.mock("passed").count == 1
    assert context.mock("after").received_bodies == ["filter-drop", "filter-pass"]


async def test_stop_at_the_top_returns_none_from_dispatch() -> None:
    context = Context()
    context.add_routes(routes(lambda r: r.to("mock:before").stop().to("mock:never")))
    async with context:
        exchange = Exchange("x")
        assert context.routes["r"].dispatch(exchange) is None
    assert exchange.route_stop is False
    assert context.mock("before").count == 1
    assert context.mock("never").count == 0


async def test_a_step_that_suspends_mid_branch_hands_over_and_continues() -> None:
    gate = asyncio.Event()

    async def wait(exchange: Exchange) -> None:
        await gate.wait()
        exchange.body = f"{exchange.body}!"

    context = Context()
    context.add_routes(
        routes(
            lambda r: r.choice(when(lambda ex: True).process(wait).to("mock:branch")).to(
                "mock:after"
            )
        )
    )
    async with context:
        route = context.routes["r"]
        exchange = Exchange("x")
        pending = route.dispatch(exchange)
        assert pending is not None
        task = asyncio.ensure_future(pending)
        await asyncio.sleep(0)
        assert route.inflight == 1
        assert exchange in route.inflight_since
        gate.set()
        await task
        assert route.inflight == 0
    assert context.mock("branch").received_bodies == ["x!"]
    assert context.mock("after").received_bodies == ["x!"]


async def test_inlined_unmarshal_fails_with_the_formats_own_error() -> None:
    fmt = json(Item)
    context = Context()
    context.add_routes(routes(lambda r: r.unmarshal(fmt).to("mock:out"), retry=False))
    bad = [b'{"id": "one", "kind": "a"}', b'{"id": 1,', b"", b'{"id": 1, "kind": "\xff"}', 7]
    async with context:
        for data in bad:
            with pytest.raises(UnmarshalError) as expected:
                fmt.unmarshal(data)
            exchange = await run(context, data)
            assert isinstance(exchange.exception, UnmarshalError)
            # the same error, with the route's context added (as for any failed step)
            assert str(exchange.exception).startswith(f"{expected.value} [route=r")
            assert exchange.body == data  # the body is left as it was
        good = await run(context, b'{"id": 2, "kind": "b"}')
    assert good.exception is None
    assert context.mock("out").received_bodies == [Item(2, "b")]


async def test_inlined_marshal_passes_bytes_through_and_fails_with_the_formats_error() -> None:
    class Widget:
        pass

    fmt = json()
    context = Context()
    context.add_routes(routes(lambda r: r.marshal(fmt).to("mock:out"), retry=False))
    async with context:
        raw = await run(context, b"\x00not json")
        encoded = await run(context, {"id": 1, "tags": ["a"]})
        text = await run(context, "plain")
        with pytest.raises(MarshalError) as expected:
            fmt.marshal({"lines": [1, Widget()]})
        failed = await run(context, {"lines": [1, Widget()]})
    assert [raw.exception, encoded.exception, text.exception] == [None, None, None]
    assert context.mock("out").received_bodies == [
        b"\x00not json",
        b'{"id":1,"tags":["a"]}',
        b'"plain"',
    ]
    assert isinstance(failed.exception, MarshalError)
    assert str(failed.exception).startswith(f"{expected.value} [route=r")
    assert "$.lines[1]" in str(failed.exception)


async def test_metrics_time_sync_and_suspended_exchanges_inline() -> None:
    gate = asyncio.Event()

    async def wait(exchange: Exchange) -> None:
        await gate.wait()

    context = Context(metrics=True)
    context.add_routes(
        routes(
            lambda r: r.choice(when(lambda ex: ex.body == "wait").process(wait)).to("mock:out"),
            retry=False,
        )
    )
    async with context:
        route = context.routes["r"]
        assert context.metrics is not None
        timings = context.metrics.timings("r")
        assert timings is not None
        # Every exchange enters the untimed dispatch, which hands the sampled ones (all of
        # them while the route is quiet) to its timed twin.
        assert "clock_()" not in route.dispatch.eip_source  # type: ignore[attr-defined]
        assert "clock_()" in route.dispatch.eip_timed.eip_source  # type: ignore[attr-defined]
        for _ in range(5):
            assert route.dispatch(Exchange("now")) is None
        assert timings.count == 5
        pending = route.dispatch(Exchange("wait"))
        task = asyncio.ensure_future(pending)
        await asyncio.sleep(0)
        assert timings.count == 5  # not timed before it finishes
        gate.set()
        await task
        assert timings.count == 6
        assert timings.sum > 0
        assert route.exchanges_total == 6
    assert context.mock("out").count == 6


async def test_a_traced_send_inline_in_a_branch_spans_a_suspended_call() -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter))

    async def slow(exchange: Exchange) -> None:
        await asyncio.sleep(0)

    class R(RouteBuilder):
        def configure(self) -> None:
            self.from_("direct:in").route_id("r").choice(
                when(lambda ex: True).to("direct:sub").to("mock:out")
            )
            self.from_("direct:sub").route_id("sub").process(slow)

    context = Context(tracer_provider=provider)
    context.add_routes(R())
    async with context:
        source = context.routes["r"].own_dispatch.eip_source  # type: ignore[attr-defined]
        assert "span_ = " in source  # the traced send runs inline
        exchange = await run(context, "x")
    assert exchange.exception is None
    assert exchange.trace_context is None  # restored when the route span ended
    assert provider.force_flush()
    spans = {span.name: span for span in exporter.get_finished_spans()}
    assert set(spans) == {"r", "send direct:sub", "sub", "send mock:out"}
    send, sub = spans["send direct:sub"], spans["sub"]
    assert sub.parent is not None
    assert sub.parent.span_id == send.context.span_id
    assert send.parent is not None
    assert send.parent.span_id == spans["r"].context.span_id
    assert send.end_time is not None
    assert sub.end_time is not None
    assert send.end_time >= sub.end_time  # ended after the call it waited for
    provider.shutdown()


class Abort(BaseException):
    """Not an Exception: no error handling catches it, it leaves dispatch at once."""


async def test_tracing_and_timing_inline_in_the_dispatch_on_every_way_out() -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import StatusCode

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    gate = asyncio.Event()

    def check(exchange: Exchange) -> None:
        if exchange.body == "abort":
            raise Abort("stop everything")

    async def wait(exchange: Exchange) -> None:
        await gate.wait()

    context = Context(tracer_provider=provider, metrics=True)
    context.add_routes(
        routes(
            lambda r: (
                r.process(check)
                .filter(lambda ex: ex.body != "drop")
                .choice(when(lambda ex: ex.body == "wait").process(wait))
                .to("mock:out")
            ),
            retry=False,
        )
    )
    async with context:
        route = context.routes["r"]
        source = route.dispatch.eip_timed.eip_source  # type: ignore[attr-defined]
        assert "route_span_ = span_start_(" in source  # the route span, inline
        assert "started_ = clock_()" in source  # and the timing
        assert context.metrics is not None
        timings = context.metrics.timings("r")
        assert timings is not None
        done, dropped, aborted = Exchange("ok"), Exchange("drop"), Exchange("abort")
        assert route.dispatch(done) is None
        assert route.dispatch(dropped) is None
        with pytest.raises(Abort):
            route.dispatch(aborted)
        waiting = Exchange("wait")
        task = asyncio.ensure_future(route.dispatch(waiting))
        await asyncio.sleep(0)
        assert timings.count == 3  # the suspended one is timed when it finishes
        gate.set()
        await task
        assert timings.count == 4
    assert [e.trace_context for e in (done, dropped, aborted, waiting)] == [None] * 4
    route_spans = [s for s in exporter.get_finished_spans() if s.name == "r"]
    assert len(route_spans) == 4
    statuses = [s.status.status_code for s in route_spans]
    assert statuses.count(StatusCode.ERROR) == 1  # the aborted one, failed and ended once
    sends = [s for s in exporter.get_finished_spans() if s.name == "send mock:out"]
    assert len(sends) == 2  # "ok" and "wait"; "drop" was filtered, "abort" never got there
    route_ids = {s.context.span_id for s in route_spans}
    assert all(s.parent is not None and s.parent.span_id in route_ids for s in sends)
    provider.shutdown()
