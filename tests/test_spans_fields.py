"""eip's lean spans keep what an exporter reads most (name, parent, kind, start and end time)
in slots under the public names, read in C rather than through ReadableSpan's Python
properties; the SDK's own code, which reads the private names (to_json), still sees them."""

from __future__ import annotations

import json

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from eip.spans import spans_for


def test_public_fields_are_slots_and_private_names_read_the_same() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    spans = spans_for(provider)
    root = spans.start("route", None, SpanKind.CONSUMER, {"eip.route.id": "r"})
    child = spans.start("send mock:x", root, SpanKind.PRODUCER, {"eip.route.id": "r"})
    spans.end(child)
    spans.end(root)
    got = exporter.get_finished_spans()
    assert [span.name for span in got] == ["send mock:x", "route"]
    sent, routed = got
    assert isinstance(sent, ReadableSpan)
    for name in ("name", "parent", "kind", "start_time", "end_time"):
        # a member descriptor (a slot) on the span's type, not ReadableSpan's property
        assert type(getattr(type(sent), name)).__name__ == "member_descriptor"
        assert getattr(sent, f"_{name}") is getattr(sent, name)
    assert sent.parent is routed.context
    assert routed.parent is None
    assert sent.kind is SpanKind.PRODUCER
    assert routed.kind is SpanKind.CONSUMER
    assert 0 < routed.start_time <= sent.start_time <= sent.end_time <= routed.end_time
    record = json.loads(sent.to_json())
    assert record["name"] == "send mock:x"
    assert record["kind"] == "SpanKind.PRODUCER"
    assert record["parent_id"] == f"0x{routed.context.span_id:016x}"
    assert record["context"]["trace_id"] == f"0x{routed.context.trace_id:032x}"
    assert record["start_time"]
    assert record["end_time"]
    assert record["attributes"] == {"eip.route.id": "r"}
