"""One trace spans an incoming HTTP request, its route and the outgoing HTTP call."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from eip import Context
from tests.http.fake_erp import FakeErp, Reply
from tests.inline import inline_routes

TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736
CLIENT_SPAN_ID = 0x00F067AA0BA902B7
TRACEPARENT = f"00-{TRACE_ID:032x}-{CLIENT_SPAN_ID:016x}-01"
SERVER_SPAN = "POST /webhooks/customer"


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


@pytest.fixture
async def erp() -> AsyncIterator[FakeErp]:
    async with FakeErp() as server:
        yield server


@asynccontextmanager
async def webhook(
    provider: TracerProvider, target: str
) -> AsyncIterator[tuple[Context, httpx.AsyncClient, str]]:
    """A context serving ``POST /webhooks/customer``, which calls ``target``."""
    context = Context(shutdown_timeout=5, tracer_provider=provider)
    context.component("http").configure(port=0, host="127.0.0.1")  # type: ignore[attr-defined]
    context.add_routes(
        inline_routes(
            lambda b: (
                b.from_("http:/webhooks/customer?methods=POST")
                .route_id("customer-webhook")
                .to(target)
            )
        )
    )
    async with context, httpx.AsyncClient(timeout=10) as client:
        base = str(context.component("http").server.base_url)  # type: ignore[attr-defined]
        yield context, client, f"{base}/webhooks/customer"


async def spans_until(
    exporter: InMemorySpanExporter, name: str, count: int = 1, timeout: float = 5.0
) -> tuple[ReadableSpan, ...]:
    """The finished spans, once ``count`` named ``name`` are among them (a SERVER span ends
    after its answer went out, so the client may see the answer first): polled, bounded."""
    async with asyncio.timeout(timeout):
        while True:
            spans = exporter.get_finished_spans()
            if sum(span.name == name for span in spans) >= count:
                return spans
            await asyncio.sleep(0.01)


def parse_traceparent(value: str) -> tuple[int, int]:
    version, trace_id, span_id, flags = value.split("-")
    assert (version, flags) == ("00", "01")
    return int(trace_id, 16), int(span_id, 16)


def one(spans: tuple[ReadableSpan, ...], name: str, kind: SpanKind) -> ReadableSpan:
    found = [span for span in spans if span.name == name and span.kind is kind]
    assert len(found) == 1, [(s.name, s.kind) for s in spans]
    return found[0]


def attributes(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


async def test_one_trace_spans_the_request_the_route_and_the_outgoing_call(
    provider: TracerProvider, exporter: InMemorySpanExporter, erp: FakeErp
) -> None:
    async with webhook(provider, f"{erp.url}/api/customers") as (_, client, url):
        response = await client.post(
            url, json={"id": 7, "name": "Ada"}, headers={"traceparent": TRACEPARENT}
        )
        assert response.status_code == 200
        assert response.content == b'{"erp_id":"E-1"}'
        spans = await spans_until(exporter, SERVER_SPAN)

    [call] = erp.requests
    assert json.loads(call.body) == {"id": 7, "name": "Ada"}
    sent_trace, sent_parent = parse_traceparent(call.headers["traceparent"])
    assert sent_trace == TRACE_ID
    assert {span.context.trace_id for span in spans} == {TRACE_ID}

    server = one(spans, SERVER_SPAN, SpanKind.SERVER)
    assert server.parent is not None
    assert server.parent.span_id == CLIENT_SPAN_ID
    assert server.parent.is_remote
    assert attributes(server)["http.request.method"] == "POST"
    assert attributes(server)["http.route"] == "/webhooks/customer"
    assert attributes(server)["http.response.status_code"] == 200
    assert server.status.status_code is not StatusCode.ERROR

    route = one(spans, "customer-webhook", SpanKind.INTERNAL)
    assert route.parent is not None
    assert route.parent.span_id == server.context.span_id

    outgoing = one(spans, "POST", SpanKind.CLIENT)
    assert outgoing.parent is not None
    assert outgoing.parent.span_id == route.context.span_id
    assert outgoing.context.span_id == sent_parent
    assert attributes(outgoing)["server.address"] == "127.0.0.1"
    assert attributes(outgoing)["server.port"] == erp.port
    assert attributes(outgoing)["url.full"] == f"{erp.url}/api/customers"
    assert attributes(outgoing)["http.response.status_code"] == 201
    assert outgoing.status.status_code is not StatusCode.ERROR
    # The producer traces itself: no generic "send ..." span repeats the CLIENT span.
    assert [s.name for s in spans if s.kind is SpanKind.PRODUCER] == []


async def test_a_failing_downstream_marks_the_client_span_as_error(
    provider: TracerProvider, exporter: InMemorySpanExporter, erp: FakeErp
) -> None:
    erp.reply("/api/customers", Reply(500, json={"error": "database unavailable"}))
    async with webhook(provider, f"{erp.url}/api/customers") as (_, client, url):
        response = await client.post(url, json={"id": 7}, headers={"traceparent": TRACEPARENT})
        assert response.status_code == 500
        spans = await spans_until(exporter, SERVER_SPAN)

    assert {span.context.trace_id for span in spans} == {TRACE_ID}
    outgoing = one(spans, "POST", SpanKind.CLIENT)
    assert outgoing.status.status_code is StatusCode.ERROR
    assert attributes(outgoing)["error.type"] == "500"
    assert attributes(outgoing)["http.response.status_code"] == 500
    server = one(spans, SERVER_SPAN, SpanKind.SERVER)
    assert server.status.status_code is StatusCode.ERROR
    assert attributes(server)["http.response.status_code"] == 500
    route = one(spans, "customer-webhook", SpanKind.INTERNAL)
    assert route.status.status_code is StatusCode.ERROR


def every_value(spans: tuple[ReadableSpan, ...]) -> Iterator[str]:
    """Each span's name, status, attributes and event attributes, as text."""
    for span in spans:
        yield span.name
        yield str(span.status.description)
        for key, value in attributes(span).items():
            yield f"{key}={value}"
        for event in span.events:
            yield event.name
            for key, value in (event.attributes or {}).items():
                yield f"{key}={value}"


async def test_no_secret_lands_in_span_attributes(
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    erp: FakeErp,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    secret = "tok-9f8e7d6c-very-secret"
    monkeypatch.setenv("ERP_TOKEN", secret)
    erp.reply("/api/customers", Reply(201, json={"erp_id": "E-1"}), Reply(500))
    target = f"{erp.url}/api/customers?auth=bearer&secret_env=ERP_TOKEN"
    async with webhook(provider, target) as (_, client, url):
        ok = await client.post(url, json={"id": 1}, headers={"traceparent": TRACEPARENT})
        failed = await client.post(url, json={"id": 2}, headers={"traceparent": TRACEPARENT})
        assert (ok.status_code, failed.status_code) == (200, 500)
        spans = await spans_until(exporter, SERVER_SPAN, count=2)

    assert [r.headers["authorization"] for r in erp.requests] == [f"Bearer {secret}"] * 2
    clients = [s for s in spans if s.kind is SpanKind.CLIENT]
    assert len(clients) == 2
    assert [s.status.status_code for s in clients] == [StatusCode.UNSET, StatusCode.ERROR]
    # The failure is recorded (so its message and stack trace are scanned too).
    assert any(event.name == "exception" for s in spans for event in s.events)
    texts = list(every_value(spans))
    assert any(text.startswith("url.full=") for text in texts)
    leaks = [text for text in texts if secret in text]
    assert leaks == []


async def test_credentials_in_the_url_stay_out_of_spans(
    provider: TracerProvider, exporter: InMemorySpanExporter, erp: FakeErp
) -> None:
    target = f"http://erp-user:hunter2-pw@127.0.0.1:{erp.port}/api/customers"
    async with webhook(provider, target) as (_, client, url):
        response = await client.post(url, json={"id": 1}, headers={"traceparent": TRACEPARENT})
        assert response.status_code == 200
        spans = await spans_until(exporter, SERVER_SPAN)

    assert erp.requests[0].headers["authorization"].startswith("Basic ")
    outgoing = one(spans, "POST", SpanKind.CLIENT)
    assert "hunter2-pw" not in str(attributes(outgoing)["url.full"])
    assert [text for text in every_value(spans) if "hunter2-pw" in text] == []
