"""One trace per exchange across a seda hop and direct calls, with the right parents."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from eip import Context, Exchange, RouteBuilder
from eip.tracing import extract, inject


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


class Routes(RouteBuilder):
    def configure(self) -> None:
        self.from_("direct:in").route_id("front").to("seda:work")
        self.from_("seda:work").route_id("worker").to("direct:enrich").to("mock:out")
        self.from_("direct:enrich").route_id("enrich").set_header("enriched", True)


def by_name(spans: tuple[ReadableSpan, ...]) -> dict[str, ReadableSpan]:
    return {span.name: span for span in spans}


async def test_seda_hop_and_direct_call_form_one_trace(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    context = Context(tracer_provider=provider)
    context.add_routes(Routes())
    async with context:
        await context.template().send("direct:in", {"id": 1})
        await context.mock("out").wait_for(1)
        await context.mock("out").assert_satisfied()
    spans = exporter.get_finished_spans()
    named = by_name(spans)
    assert set(named) == {
        "front",
        "send seda:work",
        "worker",
        "send direct:enrich",
        "enrich",
        "send mock:out",
    }
    assert len({span.context.trace_id for span in spans}) == 1

    def parent_of(name: str) -> str:
        parent = named[name].parent
        assert parent is not None
        matches = [n for n, s in named.items() if s.context.span_id == parent.span_id]
        assert len(matches) == 1
        return matches[0]

    assert named["front"].parent is None
    assert parent_of("send seda:work") == "front"
    assert parent_of("worker") == "send seda:work"
    assert parent_of("send direct:enrich") == "worker"
    assert parent_of("enrich") == "send direct:enrich"
    assert parent_of("send mock:out") == "worker"
    attributes = named["worker"].attributes or {}
    assert attributes["eip.route.id"] == "worker"
    assert attributes["eip.endpoint.uri"] == "seda:work"
    assert attributes["eip.exchange.id"]


async def test_errors_are_recorded(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    class Failing(RouteBuilder):
        def configure(self) -> None:
            self.from_("direct:in").route_id("r").to("mock:erp?retain=3")

    context = Context(tracer_provider=provider)
    context.add_routes(Failing())
    async with context:
        context.mock("erp").fail_times(1, lambda: ValueError("erp says no"))
        exchange = await context.template().send("direct:in", 1)
    assert isinstance(exchange.exception, ValueError)
    named = by_name(exporter.get_finished_spans())
    send = named["send mock:erp"]
    assert send.status.status_code is StatusCode.ERROR
    assert any(event.name == "exception" for event in send.events)
    assert (send.attributes or {})["eip.endpoint.uri"] == "mock:erp?retain=3"
    assert named["r"].status.status_code is StatusCode.ERROR


async def test_no_sdk_means_no_tracing_code() -> None:
    context = Context()
    context.add_routes(Routes())
    async with context:
        assert not context.tracing.enabled
        route = context.routes["front"]
        assert route.dispatch is route.own_dispatch


async def test_traceparent_inject_and_extract(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("client") as span:
        exchange = Exchange(1)
        exchange.trace_context = span
        carrier: dict[str, str] = {}
        inject(exchange, carrier)
    assert carrier["traceparent"].split("-")[1] == format(span.get_span_context().trace_id, "032x")
    remote = extract(carrier)
    assert remote is not None
    assert remote.get_span_context().trace_id == span.get_span_context().trace_id
    assert extract({}) is None


async def test_sampler_is_honoured(exporter: InMemorySpanExporter) -> None:
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

    provider = TracerProvider(sampler=ALWAYS_OFF)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    context = Context(tracer_provider=provider)
    context.add_routes(Routes())
    async with context:
        await context.template().send("direct:in", 1)
        await context.mock("out").wait_for(1)
    assert context.mock("out").count == 1
    assert exporter.get_finished_spans() == ()


async def test_remote_parent_from_traceparent(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    trace_id = 0x4BF92F3577B34DA6A3CE929D0E0E4736
    carrier = {"traceparent": f"00-{trace_id:032x}-00f067aa0ba902b7-01"}

    class One(RouteBuilder):
        def configure(self) -> None:
            self.from_("direct:in").route_id("one").to("mock:x")

    context = Context(tracer_provider=provider)
    context.add_routes(One())
    async with context:
        exchange = Exchange(1)
        exchange.trace_context = extract(carrier)
        await context.template().send_exchange("direct:in", exchange)
    named = by_name(exporter.get_finished_spans())
    route_span = named["one"]
    assert route_span.context.trace_id == trace_id
    assert route_span.parent is not None
    assert route_span.parent.span_id == 0x00F067AA0BA902B7
    assert route_span.parent.is_remote
    assert named["send mock:x"].parent is not None
    assert named["send mock:x"].parent.span_id == route_span.context.span_id
    assert '"name": "one"' in route_span.to_json()  # well-formed for exporters


async def test_other_tracer_providers_use_the_api_path(exporter: InMemorySpanExporter) -> None:
    class CustomProvider(TracerProvider):
        pass

    provider = CustomProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    context = Context(tracer_provider=provider)
    context.add_routes(Routes())
    async with context:
        assert type(context.tracing.spans).__name__ == "_ApiSpans"
        await context.template().send("direct:in", 1)
        await context.mock("out").wait_for(1)
    names = {span.name for span in exporter.get_finished_spans()}
    assert {"front", "worker", "enrich", "send mock:out"} <= names
    assert len({span.context.trace_id for span in exporter.get_finished_spans()}) == 1


async def test_route_span_carries_the_exchanges_own_id(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """The route span's eip.exchange.id is the exchange's id: made by the route's dispatch
    when nothing asked for it yet (and kept on the exchange), or the one already made."""

    class One(RouteBuilder):
        def configure(self) -> None:
            self.from_("direct:in").route_id("one").to("mock:out?retain=0")

    context = Context(tracer_provider=provider)
    context.add_routes(One())
    async with context:
        route = context.routes["one"]
        fresh, known = Exchange(1), Exchange(2)
        known_id = known.id
        for exchange in (fresh, known):
            pending = route.dispatch(exchange)
            if pending is not None:
                await pending
    ids = [
        (span.attributes or {})["eip.exchange.id"]
        for span in exporter.get_finished_spans()
        if span.name == "one"
    ]
    assert ids == [fresh.id, known_id]
    assert fresh.id != known_id
    assert isinstance(fresh.id, str)
    assert fresh.id.rsplit("-", 1)[0] == known_id.rsplit("-", 1)[0]  # the same process prefix
