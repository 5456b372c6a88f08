"""The in-process pipeline: an eip route against a hand-written loop doing the same work.

Per message: decode ~330 B of CRM customer JSON into a ``Customer`` Struct (with a nested
``Address``), drop inactive customers (every 10th message), map to an ``ErpCustomer`` Struct,
route by region to one of three outputs and encode to JSON there.

- **baseline**: a plain sync loop with one ``msgspec.json.Decoder(Customer)``, one
  ``msgspec.json.Encoder()`` and a counter per output.
- **eip**: the route below, with the same Structs and the same mapping function, driven through
  ``route.dispatch`` (the fastest in-process entry). Informational: the same via a started
  ``direct:in`` producer, and via ``context.template().send`` (which awaits per message).
- **tracing**: the same route in a context with the OpenTelemetry SDK on (100% sampled,
  ``BatchSpanProcessor`` with ``max_queue_size=200_000`` and an exporter that drops spans),
  against the tracing-off route; and the same with the sampler
  ``ParentBased(TraceIdRatioBased(0.01))`` (1% of the exchanges traced).

All variants run interleaved, round by round; every round checks the per-output counts (and,
traced, the spans exported), so a broken route cannot be mistaken for a fast one. Beside each
round's wall time, the process's CPU time is kept (:class:`Clocks`) and the same comparisons
are printed from it: on a machine other jobs share, that is the steadier figure.
"""

from __future__ import annotations

import asyncio
import cProfile
import math
import pstats
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import msgspec
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ParentBased, Sampler, TraceIdRatioBased

from benchmarks._audit_bench import AuditBench
from benchmarks._crm import REGIONS, Customer, make_messages, to_erp
from benchmarks._customer_route import ROUTE_ID, CustomerRoute
from benchmarks._encrypt_bench import EncryptBench
from benchmarks._report import Measurement, Variant, interleave, result_line, table
from eip import Context, Exchange
from eip.runtime.route import Route

__all__ = [
    "Counts",
    "CustomerRoute",
    "Handwritten",
    "PipelineReport",
    "bench",
    "expected_counts",
    "profile",
    "run",
]

OUTPUTS = ("eu", "us", "apac")
SPAN_QUEUE = 200_000  # BatchSpanProcessor's default (2048) silently drops spans at these rates
SAMPLED_RATE = 0.01  # the sampled variant's ratio of traced exchanges


@dataclass(frozen=True, slots=True)
class Counts:
    """Messages delivered per output (eu, us, apac)."""

    eu: int
    us: int
    apac: int

    @property
    def delivered(self) -> int:
        return self.eu + self.us + self.apac


def expected_counts(messages: Sequence[bytes]) -> Counts:
    """What both sides must deliver (computed independently of either)."""
    decode = msgspec.json.Decoder(Customer).decode
    tally = dict.fromkeys(REGIONS, 0)
    for raw in messages:
        c = decode(raw)
        if c.active:
            tally[c.region] += 1
    return Counts(tally["EU"], tally["US"], tally["APAC"])


# -- the baseline ---------------------------------------------------------------------------
class Handwritten:
    """The hand-written sync loop: the same work, with nothing in between."""

    def __init__(self) -> None:
        self.decode = msgspec.json.Decoder(Customer).decode
        self.encode = msgspec.json.Encoder().encode
        self.last: bytes = b""

    def run(self, messages: Sequence[bytes]) -> Counts:
        decode, encode = self.decode, self.encode
        eu = us = apac = 0
        out = b""
        for raw in messages:
            customer = decode(raw)
            if not customer.active:
                continue
            erp = to_erp(customer)
            region = erp.region
            if region == "EU":
                out = encode(erp)
                eu += 1
            elif region == "US":
                out = encode(erp)
                us += 1
            else:
                out = encode(erp)
                apac += 1
        self.last = out
        return Counts(eu, us, apac)


# -- the eip route --------------------------------------------------------------------------
async def start_context(provider: TracerProvider | None = None, *, ops: bool = False) -> Context:
    """``ops``: what ``eip run`` turns on for operators (metrics; the failure history is
    always on, and costs nothing for exchanges that succeed)."""
    context = Context(tracer_provider=provider, tracing=provider is not None, metrics=ops)
    context.add_routes(CustomerRoute())
    await context.start()
    assert context.tracing.enabled is (provider is not None)
    return context


def mock_counts(context: Context) -> Counts:
    eu, us, apac = (context.mock(name).count for name in OUTPUTS)
    return Counts(eu, us, apac)


def _minus(after: Counts, before: Counts) -> Counts:
    return Counts(after.eu - before.eu, after.us - before.us, after.apac - before.apac)


async def drive_dispatch(route: Route, messages: Sequence[bytes]) -> None:
    """The fastest in-process entry: an exchange per message into ``route.dispatch``."""
    dispatch = route.dispatch
    for raw in messages:
        exchange = Exchange(raw)
        pending = dispatch(exchange)
        if pending is not None:
            await pending
        done = exchange.done()
        if done is not None:
            await done


# -- tracing --------------------------------------------------------------------------------
class DroppingExporter(SpanExporter):
    """Accepts every batch and drops it, counting the spans by kind of span. It reads each
    span's context and parent, as every real exporter does (eip's spans make them when first
    read, so that cost is charged to tracing here too)."""

    def __init__(self) -> None:
        self.route_spans = 0
        self.send_spans = 0
        self.other_spans = 0
        self.invalid_spans = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        route = send = other = invalid = 0
        for span in spans:
            name = span.name
            if span.context is None or (span.parent is None and name != ROUTE_ID):
                invalid += 1
            if name == ROUTE_ID:
                route += 1
            elif name.startswith("send "):
                send += 1
            else:
                other += 1
        self.route_spans += route
        self.send_spans += send
        self.other_spans += other
        self.invalid_spans += invalid
        return SpanExportResult.SUCCESS

    @property
    def total(self) -> int:
        return self.route_spans + self.send_spans + self.other_spans


def make_provider(sampler: Sampler | None = None) -> tuple[TracerProvider, DroppingExporter]:
    """The SDK set up for the benchmark: a batch processor into a dropping exporter.
    ``sampler`` None: the SDK's default, parent-based always-on, so 100% sampled."""
    exporter = DroppingExporter()
    provider = TracerProvider() if sampler is None else TracerProvider(sampler=sampler)
    provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=SPAN_QUEUE))
    return provider, exporter


def one_percent() -> Sampler:
    return ParentBased(TraceIdRatioBased(SAMPLED_RATE))


def sampled_span_bounds(count: int) -> tuple[int, int]:
    """Spans a round of ``count`` exchanges may export at 1%: about 0.019 per exchange (1.9
    spans per traced one). From a sixth to almost twice that (``count // 300`` to
    ``count // 30``), and for a short round at least six standard deviations above it (the
    traced exchanges are binomial), so chance never fails a correct round."""
    spans_each = 1.9
    mean = spans_each * SAMPLED_RATE * count
    spread = spans_each * math.sqrt(count * SAMPLED_RATE * (1 - SAMPLED_RATE))
    return count // 300, max(count // 30, math.ceil(mean + 6 * spread))


# -- the benchmark --------------------------------------------------------------------------
BASELINE = "hand-written sync loop"
DISPATCH = "eip route.dispatch"
PRODUCER = "eip direct:in producer"
TEMPLATE = "eip template.send"
TRACED = "eip route.dispatch, OTel SDK on"
TRACED_1PCT = "eip route.dispatch, OTel SDK on, 1% sampled"
OPS = "eip route.dispatch, metrics + failure history"


class Clocks:
    """Wall time (what each round reports) and, beside it, the process's CPU time per round.

    On a machine other jobs share, a round's wall time mostly measures the scheduler (a few
    interleaved rounds of a fraction of a second each); the process's CPU time, all threads
    counted (so the span exporter's worker is charged to tracing), leaves that out. Both are
    side by side; the RESULT lines stay on wall time, as the convention says.
    """

    def __init__(self) -> None:
        self.cpu: dict[str, list[float]] = {}

    @staticmethod
    def start() -> tuple[float, float]:
        return time.perf_counter(), time.process_time()

    def stop(self, name: str, began: tuple[float, float]) -> float:
        """Record the round's CPU seconds under ``name``; return its wall seconds."""
        wall, cpu = time.perf_counter() - began[0], time.process_time() - began[1]
        self.cpu.setdefault(name, []).append(cpu)
        return wall

    def median_rate(self, name: str, units: int) -> float:
        """Units per CPU second, the median over the rounds (the first, a warm-up, left out)."""
        return units / statistics.median(self.cpu[name][1:])


@dataclass(slots=True)
class PipelineReport:
    """What :func:`bench` measured, ready to print."""

    count: int
    rounds: int
    expected: Counts
    results: dict[str, Measurement]
    spans: tuple[int, int, int] = (0, 0, 0)  # route, send, expected total per round
    lines: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # printed above the RESULT lines

    def table(self) -> str:
        base = self.results[BASELINE].median
        rows = [
            [
                m.name,
                f"{m.median:,.0f}",
                f"{m.us_per_unit:.2f}",
                f"{m.low:,.0f}..{m.high:,.0f}",
                f"{m.median / base:.2f}",
            ]
            for m in self.results.values()
        ]
        return table(["variant", "msgs/s", "µs/msg", "range msgs/s", "vs baseline"], rows)


async def bench(count: int, rounds: int) -> PipelineReport:
    """Measure every variant on ``count`` messages per round for ``rounds`` interleaved rounds."""
    messages = make_messages(count)
    expected = expected_counts(messages)
    handwritten = Handwritten()
    plain = await start_context()
    provider, exporter = make_provider()
    traced = await start_context(provider)
    provider_1pct, exporter_1pct = make_provider(one_percent())
    traced_1pct = await start_context(provider_1pct)
    operated = await start_context(ops=True)
    audited = await AuditBench.start(CustomerRoute, ROUTE_ID)  # audit-sqlite-vs-off
    encrypted = await EncryptBench.start()  # encrypt-2-fields-vs-plain
    try:
        route = plain.routes[ROUTE_ID]
        operated_route = operated.routes[ROUTE_ID]
        traced_route = traced.routes[ROUTE_ID]
        traced_1pct_route = traced_1pct.routes[ROUTE_ID]
        producer = await plain.producer("direct:in")
        template = plain.template()
        spans_per_round = count + expected.delivered  # a route span each, a send span each sent
        clocks = Clocks()

        def check(name: str, got: Counts) -> None:
            assert got == expected, f"{name}: delivered {got}, expected {expected}"

        def baseline() -> float:
            began = clocks.start()
            got = handwritten.run(messages)
            seconds = clocks.stop(BASELINE, began)
            check(BASELINE, got)
            return seconds

        async def via_dispatch() -> float:
            before = mock_counts(plain)
            began = clocks.start()
            await drive_dispatch(route, messages)
            seconds = clocks.stop(DISPATCH, began)
            check(DISPATCH, _minus(mock_counts(plain), before))
            return seconds

        async def via_ops() -> float:
            before = mock_counts(operated)
            began = clocks.start()
            await drive_dispatch(operated_route, messages)
            seconds = clocks.stop(OPS, began)
            check(OPS, _minus(mock_counts(operated), before))
            return seconds

        async def via_producer() -> float:
            before = mock_counts(plain)
            process = producer.process
            began = clocks.start()
            for raw in messages:
                exchange = Exchange(raw)
                pending = process(exchange)
                if pending is not None:
                    await pending
                done = exchange.done()
                if done is not None:
                    await done
            seconds = clocks.stop(PRODUCER, began)
            check(PRODUCER, _minus(mock_counts(plain), before))
            return seconds

        async def via_template() -> float:
            before = mock_counts(plain)
            failed = 0
            began = clocks.start()
            for raw in messages:
                exchange = await template.send("direct:in", raw)
                if exchange.exception is not None:
                    failed += 1
            seconds = clocks.stop(TEMPLATE, began)
            assert failed == 0, f"{TEMPLATE}: {failed} exchanges failed"
            check(TEMPLATE, _minus(mock_counts(plain), before))
            return seconds

        async def via_traced() -> float:
            before = mock_counts(traced)
            route_spans, send_spans = exporter.route_spans, exporter.send_spans
            began = clocks.start()
            await drive_dispatch(traced_route, messages)
            # Export is part of tracing's cost: charge the batch processor's backlog here.
            assert provider.force_flush(timeout_millis=60_000), "span flush timed out"
            seconds = clocks.stop(TRACED, began)
            check(TRACED, _minus(mock_counts(traced), before))
            got = (exporter.route_spans - route_spans, exporter.send_spans - send_spans)
            assert got == (count, expected.delivered), (
                f"spans per round: {got[0]} route + {got[1]} send, "
                f"expected {count} + {expected.delivered} (queue of {SPAN_QUEUE} overflowed?)"
            )
            return seconds

        async def via_traced_1pct() -> float:
            before = mock_counts(traced_1pct)
            exported = exporter_1pct.total
            began = clocks.start()
            await drive_dispatch(traced_1pct_route, messages)
            assert provider_1pct.force_flush(timeout_millis=60_000), "span flush timed out"
            seconds = clocks.stop(TRACED_1PCT, began)
            check(TRACED_1PCT, _minus(mock_counts(traced_1pct), before))
            got = exporter_1pct.total - exported
            low, high = sampled_span_bounds(count)
            assert low <= got <= high, (
                f"{got} spans exported of {count} exchanges sampled at {SAMPLED_RATE:.0%}, "
                f"expected {low} to {high}"
            )
            return seconds

        variants = [
            Variant(BASELINE, baseline, count),
            Variant(DISPATCH, via_dispatch, count),
            Variant(OPS, via_ops, count),
            Variant(PRODUCER, via_producer, count),
            Variant(TEMPLATE, via_template, count),
            Variant(TRACED, via_traced, count),
            Variant(TRACED_1PCT, via_traced_1pct, count),
            *audited.variants(messages, mock_counts, _minus, expected),
            encrypted.variant(messages, mock_counts, _minus, expected, drive_dispatch, clocks),
        ]
        results = await interleave(variants, rounds)
        for spans in (exporter, exporter_1pct):
            assert spans.other_spans == 0, f"{spans.other_spans} unexpected spans"
            assert spans.invalid_spans == 0, f"{spans.invalid_spans} spans without context"
        report = PipelineReport(count, rounds, expected, results)
        report.spans = (exporter.route_spans, exporter.send_spans, spans_per_round)
    finally:
        await plain.stop()
        await traced.stop()
        await traced_1pct.stop()
        await operated.stop()
        await audited.stop()  # and verifies the chain the rounds wrote
        await encrypted.stop()
        for sdk in (provider, provider_1pct):
            sdk.force_flush()
            sdk.shutdown()

    base, eip = results[BASELINE].median, results[DISPATCH].median
    on, ops = results[TRACED].median, results[OPS].median
    report.lines = [
        result_line("pipeline-vs-handwritten", eip, base),
        result_line("pipeline-ops-on-vs-handwritten", ops, base),
        result_line("tracing-on-vs-off", on, eip),
        result_line("tracing-1pct-vs-off", results[TRACED_1PCT].median, eip),
        audited.result_line(results),
        encrypted.result_line(results, DISPATCH),
    ]
    report.notes.append(audited.summary(results))
    report.notes.append(encrypted.summary(results, DISPATCH))
    base, eip = clocks.median_rate(BASELINE, count), clocks.median_rate(DISPATCH, count)
    on, ops = clocks.median_rate(TRACED, count), clocks.median_rate(OPS, count)
    sampled = clocks.median_rate(TRACED_1PCT, count)
    report.notes.append(
        f"the same rounds in process CPU time (steadier when other jobs share the cores): "
        f"pipeline-vs-handwritten {eip / base:.2f}, pipeline-ops-on-vs-handwritten "
        f"{ops / base:.2f}, tracing-on-vs-off {on / eip:.2f}, tracing-1pct-vs-off "
        f"{sampled / eip:.2f} ({base:,.0f} / {eip:,.0f} / {ops:,.0f} / {on:,.0f} / "
        f"{sampled:,.0f} msgs per CPU second: baseline / eip / ops on / traced / 1% traced)"
    )
    return report


def run(quick: bool) -> None:
    count, rounds = (20_000, 3) if quick else (100_000, 5)
    report = asyncio.run(bench(count, rounds))
    print(
        f"pipeline: {count:,} msgs per round, {rounds} interleaved rounds (+1 warm-up), "
        "medians; every round checked per-output counts"
    )
    e = report.expected
    print(
        f"per round: {e.eu:,} eu + {e.us:,} us + {e.apac:,} apac, {count - e.delivered:,} filtered"
    )
    print()
    print(report.table())
    print()
    off, on = report.results[DISPATCH].median, report.results[TRACED].median
    route_spans, send_spans, per_round = report.spans
    print(
        f"tracing adds {1e6 / on - 1e6 / off:.2f} µs per exchange "
        f"({1e6 / on:.2f} on vs {1e6 / off:.2f} off; batch processor max_queue_size={SPAN_QUEUE}, "
        "flush timed with the traced run)"
    )
    print(
        f"spans exported: {route_spans + send_spans:,} = {route_spans:,} route + {send_spans:,} "
        f"send over {rounds + 1} runs; per run {per_round:,} = {count:,} route + "
        f"{e.delivered:,} send (2 per exchange that passed the filter, 1 per filtered one)"
    )
    for note in report.notes:
        print(note)
    print()
    for line in report.lines:
        print(line)


def profile(quick: bool) -> None:
    """cProfile of the eip ``route.dispatch`` loop (tracing off), top 15 by own time."""
    count = 20_000 if quick else 100_000

    async def main() -> None:
        messages = make_messages(count)
        context = await start_context()
        try:
            route = context.routes[ROUTE_ID]
            await drive_dispatch(route, messages[:2000])  # warm up
            profiler = cProfile.Profile()
            profiler.enable()
            await drive_dispatch(route, messages)
            profiler.disable()
        finally:
            await context.stop()
        print(f"cProfile of the eip route.dispatch loop, {count:,} messages, tracing off")
        pstats.Stats(profiler).sort_stats("tottime").print_stats(15)

    asyncio.run(main())
