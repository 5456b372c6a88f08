"""Ratio sampling on eip's lean spans (eip._span_sampling): the SDK's rule for
ParentBased(TraceIdRatioBased), whole traces kept or dropped, and an unsampled exchange that
still has one trace id for its propagated context and its log lines."""

from __future__ import annotations

import math
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_ON,
    ParentBased,
    ParentBasedTraceIdRatio,
    TraceIdRatioBased,
)
from opentelemetry.trace import SpanKind, StatusCode

from eip import Context, Exchange, RouteBuilder
from eip.logs import exchange_fields
from eip.spans import spans_for
from eip.tracing import extract, inject

LOW_BITS = (1 << 64) - 1


def ratio_provider(rate: float, exporter: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(rate)))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def within_six_sigma(hits: int, trials: int, rate: float) -> bool:
    spread = math.sqrt(trials * rate * (1 - rate))
    return abs(hits - trials * rate) <= 6 * spread


def test_roots_are_sampled_at_the_rate_by_the_sdks_rule() -> None:
    exporter = InMemorySpanExporter()
    provider = ratio_provider(0.25, exporter)
    spans: Any = spans_for(provider)
    assert spans.roots is not None  # the ratio fast path
    bound = TraceIdRatioBased(0.25).bound
    unsampled = []
    for i in range(4_000):
        root = spans.start("route", None, SpanKind.CONSUMER, {"n": i})
        child = spans.start("send mock:x", root, SpanKind.PRODUCER, {"n": i})
        if not root.get_span_context().trace_flags.sampled:
            assert child is root  # nothing recorded below an unsampled root
            unsampled.append(root)
        spans.annotate(child, {"extra": 1}, "failed")
        spans.end(child)
        spans.end(root)
    finished = exporter.get_finished_spans()
    roots = [span for span in finished if span.name == "route"]
    assert within_six_sigma(len(roots), 4_000, 0.25)
    assert len(roots) + len(unsampled) == 4_000
    assert len(finished) == 2 * len(roots)  # every sampled root with its child
    for root in roots:
        assert root.context is not None
        assert root.context.trace_id & LOW_BITS < bound  # what TraceIdRatioBased decides
    for root in unsampled:
        context = root.get_span_context()
        assert context.is_valid
        assert context.trace_id & LOW_BITS >= bound
        assert root.get_span_context() is context  # drawn once, then kept
        assert not root.is_recording()
    sends = [span for span in finished if span.name == "send mock:x"]
    assert all(span.status.status_code is StatusCode.ERROR for span in sends)
    assert {span.parent.span_id for span in sends if span.parent} == {
        root.context.span_id for root in roots if root.context
    }


def test_no_and_every_root() -> None:
    for rate, expected in ((0.0, 0), (1.0, 300)):
        exporter = InMemorySpanExporter()
        spans: Any = spans_for(ratio_provider(rate, exporter))
        for _ in range(300):
            spans.end(spans.start("route", None, SpanKind.CONSUMER, {}))
        assert len(exporter.get_finished_spans()) == expected


def test_only_the_sdks_own_parent_based_sampler_takes_the_fast_path() -> None:
    env_style = TracerProvider(sampler=ParentBasedTraceIdRatio(0.5))
    assert getattr(spans_for(env_style), "roots", None) is not None
    odd = ParentBased(TraceIdRatioBased(0.5), local_parent_not_sampled=ALWAYS_ON)
    spans: Any = spans_for(TracerProvider(sampler=odd))
    assert spans.roots is None
    assert spans.unsampled is None


class Routes(RouteBuilder):
    def configure(self) -> None:
        self.from_("direct:in").route_id("front").to("seda:work")
        self.from_("seda:work").route_id("worker").to("direct:enrich").to("mock:out")
        self.from_("direct:enrich").route_id("enrich").set_header("enriched", True)


async def test_a_trace_is_kept_or_dropped_whole_across_routes() -> None:
    exporter = InMemorySpanExporter()
    context = Context(tracer_provider=ratio_provider(0.2, exporter))
    context.add_routes(Routes())
    async with context:
        for i in range(500):
            await context.template().send("direct:in", {"id": i})
        await context.mock("out").wait_for(500)
    traces: dict[int, list[ReadableSpan]] = {}
    for span in exporter.get_finished_spans():
        assert span.context is not None
        traces.setdefault(span.context.trace_id, []).append(span)
    assert within_six_sigma(len(traces), 500, 0.2)
    whole = {"front", "send seda:work", "worker", "send direct:enrich", "enrich", "send mock:out"}
    for spans in traces.values():
        assert sorted(span.name for span in spans) == sorted(whole)


async def test_an_unsampled_exchange_has_one_trace_id_for_propagation_and_logs() -> None:
    exporter = InMemorySpanExporter()
    context = Context(tracer_provider=ratio_provider(0.0, exporter))
    seen: list[tuple[dict[str, str], dict[str, str], dict[str, Any]]] = []

    class One(RouteBuilder):
        def configure(self) -> None:
            def look(exchange: Exchange) -> None:
                first: dict[str, str] = {}
                second: dict[str, str] = {}
                inject(exchange, first)
                inject(exchange, second)
                seen.append((first, second, exchange_fields(exchange)))

            self.from_("direct:in").route_id("one").process(look).to("mock:x")

    context.add_routes(One())
    async with context:
        await context.template().send("direct:in", 1)
        await context.template().send("direct:in", 2)
    assert exporter.get_finished_spans() == ()
    ids = set()
    for first, second, fields in seen:
        assert first == second
        version, trace_id, _span_id, flags = first["traceparent"].split("-")
        assert (version, flags) == ("00", "00")  # propagated as not sampled
        assert fields["trace_id"] == trace_id
        ids.add(trace_id)
    assert len(ids) == 2  # one per exchange


async def test_a_sampled_remote_parent_is_followed_whatever_the_ratio() -> None:
    exporter = InMemorySpanExporter()
    context = Context(tracer_provider=ratio_provider(0.0, exporter))

    class One(RouteBuilder):
        def configure(self) -> None:
            self.from_("direct:in").route_id("one").to("mock:x")

    context.add_routes(One())
    trace_id = 0x4BF92F3577B34DA6A3CE929D0E0E4736
    async with context:
        for sampled in ("01", "00"):
            exchange = Exchange(1)
            carrier = {"traceparent": f"00-{trace_id:032x}-00f067aa0ba902b7-{sampled}"}
            exchange.trace_context = extract(carrier)
            await context.template().send_exchange("direct:in", exchange)
    names = sorted(span.name for span in exporter.get_finished_spans())
    assert names == ["one", "send mock:x"]  # the sampled parent's only
