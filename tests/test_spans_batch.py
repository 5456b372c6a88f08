"""eip's lean spans feed the SDK's BatchSpanProcessor queue directly (see eip.spans): the
worker is still woken at a batch, a full queue still drops and reports, a shutdown still stops
the export, and every span reaches the exporter with its parent."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from eip.spans import spans_for


class GatedExporter(SpanExporter):
    """Holds every export until ``gate`` is set, to let the processor's queue fill up."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.spans: list[ReadableSpan] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.entered.set()
        self.gate.wait(30)
        self.spans.extend(spans)
        return SpanExportResult.SUCCESS


def batch_provider(
    exporter: SpanExporter, queue: int, batch: int, delay_ms: int = 5_000
) -> TracerProvider:
    provider = TracerProvider()
    processor = BatchSpanProcessor(
        exporter, max_queue_size=queue, max_export_batch_size=batch, schedule_delay_millis=delay_ms
    )
    provider.add_span_processor(processor)
    return provider


def trace(spans: object, count: int) -> None:
    """``count`` exchanges' worth: a root span and a child of it each."""
    start, end = spans.start, spans.end  # type: ignore[attr-defined]
    for i in range(count):
        root = start("route", None, SpanKind.CONSUMER, {"n": i})
        end(start("send mock:x", root, SpanKind.PRODUCER, {"n": i}))
        end(root)


def test_every_span_is_exported_with_its_parent() -> None:
    exporter = InMemorySpanExporter()
    provider = batch_provider(exporter, queue=10_000, batch=64)
    trace(spans_for(provider), 3_000)
    assert provider.force_flush(30_000)
    spans = exporter.get_finished_spans()
    assert len(spans) == 6_000
    roots = {span.context.span_id: span for span in spans if span.name == "route"}
    sends = [span for span in spans if span.name == "send mock:x"]
    assert len(roots) == len(sends) == 3_000
    for span in spans:  # made when first read (see eip.spans._LazyContext)
        assert span.context is not None
        assert span.context.is_valid
        assert span.context.trace_flags.sampled
        assert not span.context.is_remote
    for send in sends:
        assert send.parent is not None
        root = roots[send.parent.span_id]
        assert root.context.trace_id == send.context.trace_id
        assert root.attributes == send.attributes
        times = (root.start_time, send.start_time, send.end_time, root.end_time)
        assert None not in times
        assert sorted(times) == list(times)  # type: ignore[type-var]
    provider.shutdown()


def test_the_worker_is_woken_at_a_batch_without_a_flush() -> None:
    exporter = InMemorySpanExporter()
    provider = batch_provider(exporter, queue=10_000, batch=100, delay_ms=600_000)
    trace(spans_for(provider), 60)  # 120 spans: past one batch of 100
    deadline = time.monotonic() + 10
    while len(exporter.get_finished_spans()) < 100 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(exporter.get_finished_spans()) >= 100
    trace(spans_for(provider), 10)  # 20 more, below a batch: they wait for the flush
    assert len(exporter.get_finished_spans()) < 140
    assert provider.force_flush(30_000)
    assert len(exporter.get_finished_spans()) == 140
    provider.shutdown()


def test_a_full_queue_drops_and_reports(caplog: pytest.LogCaptureFixture) -> None:
    exporter = GatedExporter()
    processor = BatchSpanProcessor(exporter, max_queue_size=100, max_export_batch_size=10)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    spans = spans_for(provider)
    trace(spans, 5)  # a batch: the worker takes it and blocks in export
    assert exporter.entered.wait(10)
    queue = processor._batch_processor._queue
    with caplog.at_level(logging.WARNING):
        trace(spans, 200)  # 400 spans into a queue of 100
    assert len(queue) == 100
    assert any("Queue full" in record.getMessage() for record in caplog.records)
    exporter.gate.set()
    assert provider.force_flush(30_000)
    names = [span.name for span in exporter.spans]
    # what the queue kept: the newest, as the SDK's own emit keeps them
    assert len(names) <= 10 + 100 + 10
    assert names.count("route") > 0
    assert names.count("send mock:x") > 0
    provider.shutdown()


class CountingExporter(SpanExporter):
    """Counts what it is given, shut down or not."""

    def __init__(self) -> None:
        self.count = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.count += len(spans)
        return SpanExportResult.SUCCESS


def test_spans_after_shutdown_are_not_exported() -> None:
    exporter = CountingExporter()
    processor = BatchSpanProcessor(exporter, max_queue_size=1_000, max_export_batch_size=10)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    spans = spans_for(provider)
    trace(spans, 3)
    provider.shutdown()
    assert exporter.count == 6
    trace(spans, 100)  # no error and nothing exported; at most a batch left in the dead queue
    assert not provider.force_flush(1_000)
    assert exporter.count == 6
    assert len(processor._batch_processor._queue) <= 10
