"""What an OTLP exporter makes of eip's lean spans: encoded with the OTLP exporter's own encoder
they carry the same trace as the SDK's own spans (the plain API path) do: names, kinds,
ids and parents, attributes, status and exception events, times, resource and scope."""

from __future__ import annotations

from typing import Any

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.trace.v1.trace_pb2 import Span as OtlpSpan
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from eip import Context, RouteBuilder


class Routes(RouteBuilder):
    def configure(self) -> None:
        self.from_("direct:in").route_id("front").to("seda:work")
        self.from_("seda:work").route_id("worker").to("direct:enrich").to("mock:out?retain=5")
        self.from_("direct:enrich").route_id("enrich").set_header("enriched", True)


class ApiProvider(TracerProvider):
    """Not the SDK's own class: eip takes the plain API path (the SDK's own spans)."""


async def run(provider: TracerProvider) -> list[OtlpSpan]:
    context = Context(tracer_provider=provider)
    context.add_routes(Routes())
    async with context:
        await context.template().send("direct:in", {"id": 1})
        await context.mock("out").wait_for(1)
        context.mock("out").fail_times(1, lambda: ValueError("erp says no"))
        await context.template().send("direct:in", {"id": 2})
        await context.template().send("direct:in", {"id": 3})
        await context.mock("out").wait_for(2)
    assert provider.force_flush(10_000)
    exporter: InMemorySpanExporter = provider.exporter  # type: ignore[attr-defined]
    request = encode_spans(exporter.get_finished_spans())
    (resource_spans,) = request.resource_spans
    attributes = {kv.key: kv.value.string_value for kv in resource_spans.resource.attributes}
    assert attributes["service.name"] == "otlp-test"
    (scope_spans,) = resource_spans.scope_spans
    assert scope_spans.scope.name == "eip"
    return list(scope_spans.spans)


def provider_of(kind: type[TracerProvider], batch: bool) -> TracerProvider:
    provider = kind(resource=Resource.create({"service.name": "otlp-test"}))
    exporter = InMemorySpanExporter()
    processor = BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter)
    provider.add_span_processor(processor)
    provider.exporter = exporter  # type: ignore[attr-defined]
    return provider


def traces(spans: list[OtlpSpan]) -> list[Any]:
    """Each trace as a sorted list of (name, kind, parent's name, attributes, status, events),
    after checking the ids an exporter sends."""
    by_id = {span.span_id: span for span in spans}
    grouped: dict[bytes, list[Any]] = {}
    for span in spans:
        assert len(span.trace_id) == 16
        assert len(span.span_id) == 8
        assert span.trace_id != bytes(16)
        assert 0 < span.start_time_unix_nano <= span.end_time_unix_nano
        parent = by_id.get(span.parent_span_id) if span.parent_span_id else None
        if span.parent_span_id:
            assert parent is not None, f"{span.name}: parent not exported"
            assert parent.trace_id == span.trace_id
            assert parent.start_time_unix_nano <= span.start_time_unix_nano
        attributes = {
            kv.key: kv.value.string_value
            for kv in span.attributes
            if kv.key != "eip.exchange.id"  # differs per exchange, checked below
        }
        if span.kind == OtlpSpan.SPAN_KIND_CONSUMER or span.kind == OtlpSpan.SPAN_KIND_INTERNAL:
            ids = [kv.value.string_value for kv in span.attributes if kv.key == "eip.exchange.id"]
            assert len(ids) == 1
            assert ids[0]
        events = sorted(
            (event.name, sorted(kv.key for kv in event.attributes)) for event in span.events
        )
        grouped.setdefault(span.trace_id, []).append(
            (
                span.name,
                span.kind,
                parent.name if parent else None,
                sorted(attributes.items()),
                span.status.code,
                events,
            )
        )
    return sorted(sorted(trace) for trace in grouped.values())


async def test_lean_spans_encode_as_the_sdks_own_do() -> None:
    expected = traces(await run(provider_of(ApiProvider, batch=False)))
    assert len(expected) == 3
    failed = [trace for trace in expected if any(row[4] == 2 for row in trace)]
    assert len(failed) == 1  # the exchange whose mock:out failed: error status and event
    for batch in (False, True):
        assert traces(await run(provider_of(TracerProvider, batch=batch))) == expected
