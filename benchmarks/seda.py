"""seda: what a durable queue (SQLite) costs against the memory queue, measured side by side.

Per variant and round, N messages (20,000; quick: 4,000) of a ~300 B JSON-like dict body and
two headers go through ``template.send(uri, body, headers)`` into a seda queue
(``size=1000``), consumed by one route (one worker) that counts them. A round ends when the
consumer has counted all N; for durable queues also when every delete is committed
(``store.sync()``), so the file is empty again and the whole at-least-once cost is inside the
timing: the insert committed before each send returns, the delete after each exchange.

- **baseline** (``seda-memory``): ``seda:bench-memory``, the in-memory queue.
- **eip** (``seda-durable``): ``seda:bench-durable?durable=true&path=FILE`` (WAL,
  ``synchronous=normal``: survives a killed process).
- informational: ``synchronous=full`` (an fsync per commit: survives a power loss too), and
  both queues with 50 concurrent senders (asyncio tasks, N/50 sends each), where the store's
  group commit shares one transaction among the sends waiting at that moment.

Each variant's context is started once, before the rounds (opening the file is not timed), and
every run checks that exactly N messages were consumed and, for durable queues, that no row is
left in the file, so a queue that loses or keeps a message fails the benchmark.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks._report import Measurement, Variant, interleave, result_line, table
from eip import Context, Exchange, RouteBuilder
from eip.components.seda import SedaComponent

__all__ = ["SedaBench", "bench", "run"]

SENDERS = 50
HEADERS = {"crm.source": "web", "crm.event": "customer.changed"}


def make_body(n: int) -> dict[str, Any]:
    """A CRM change event of ~300 bytes as msgpack (what crosses the durable queue)."""
    return {
        "id": f"cust-{n:08d}",
        "source": "web",
        "name": "Jane Q. Customer",
        "email": f"jane.{n}@example.com",
        "phone": "+1-555-0100",
        "address": {"street": "1 Main St", "city": "Springfield", "zip": "12345", "cc": "US"},
        "tags": ["vip", "newsletter", "b2c"],
        "score": 0.87,
        "active": True,
        "updated": "2026-11-23T10:00:00Z",
        "notes": "Prefers email; called twice about the invoice in October." * 2,
    }


class _Counter:
    """The consuming route's only step: counts each exchange once it completes (an
    on-completion callback), and wakes the round when it has them all. Callbacks run last
    registered first, all in one synchronous pass here, so the durable queue's delete (the
    first registered) is queued before the round resumes, and ``store.sync()`` covers it."""

    def __init__(self) -> None:
        self.count = 0
        self.target = 0
        self.done = asyncio.Event()

    def expect(self, target: int) -> None:
        self.count, self.target = 0, target
        self.done.clear()

    def __call__(self, exchange: Exchange) -> None:
        exchange.on_completion(on_success=self._completed)

    def _completed(self, exchange: Exchange) -> None:
        self.count += 1
        if self.count >= self.target:
            self.done.set()


@dataclass
class SedaBench:
    """One queue kind, its started context, and a round of ``count`` sends."""

    name: str
    uri: str
    context: Context
    counter: _Counter

    @classmethod
    async def start(cls, name: str, uri: str) -> SedaBench:
        counter = _Counter()

        class Routes(RouteBuilder):
            def configure(self) -> None:
                self.from_(uri).route_id(f"consume-{name}").process(counter)

        context = Context(name=f"bench-{name}")
        context.add_routes(Routes())
        await context.start()
        return cls(name, uri, context, counter)

    async def stop(self) -> None:
        await self.context.stop()

    def variant(self, bodies: list[dict[str, Any]], senders: int) -> Variant:
        label = self.name if senders == 1 else f"{self.name}, {senders} senders"
        return Variant(label, lambda: self.round(bodies, senders), len(bodies))

    async def round(self, bodies: list[dict[str, Any]], senders: int) -> float:
        template = self.context.template()
        uri = self.uri
        self.counter.expect(len(bodies))

        async def send_all(part: list[dict[str, Any]]) -> None:
            for body in part:
                sent = await template.send(uri, body, dict(HEADERS))
                if sent.exception is not None:
                    raise sent.exception

        began = time.perf_counter()
        if senders == 1:
            await send_all(bodies)
        else:
            await asyncio.gather(*(send_all(bodies[n::senders]) for n in range(senders)))
        await self.counter.done.wait()
        store = self._store()
        if store is not None:
            await store.sync()
        seconds = time.perf_counter() - began
        await self._check(len(bodies))
        return seconds

    def _store(self) -> Any:
        component = self.context.component("seda")
        assert isinstance(component, SedaComponent)
        queue = component.durable_queues().get(self.uri.partition("?")[0].partition(":")[2])
        return queue.store if queue is not None else None

    async def _check(self, count: int) -> None:
        if self.counter.count != count:
            raise AssertionError(f"{self.name}: consumed {self.counter.count} of {count}")
        store = self._store()
        if store is not None:
            name = self.uri.partition("?")[0].partition(":")[2]
            left = await store.rows(name)
            if left:
                raise AssertionError(f"{self.name}: {len(left)} row(s) left in {store.path}")


@dataclass(frozen=True)
class Report:
    results: dict[str, Measurement]
    count: int
    rounds: int


async def bench(count: int, rounds: int, directory: Path) -> Report:
    bodies = [make_body(n) for n in range(count)]
    memory = await SedaBench.start("memory", "seda:bench-memory?size=1000")
    durable = await SedaBench.start(
        "durable", f"seda:bench-durable?size=1000&durable=true&path={directory}/normal.db"
    )
    full = await SedaBench.start(
        "durable full",
        f"seda:bench-full?size=1000&durable=true&path={directory}/full.db&synchronous=full",
    )
    benches = [memory, durable, full]
    try:
        variants = [
            memory.variant(bodies, 1),
            durable.variant(bodies, 1),
            full.variant(bodies, 1),
            memory.variant(bodies, SENDERS),
            durable.variant(bodies, SENDERS),
        ]
        warm = [b.variant(bodies[: min(count, 1000)], 1) for b in benches]
        await interleave(warm, 1, warmup=False)
        results = await interleave(variants, rounds, warmup=False)
    finally:
        for b in benches:
            await b.stop()
    return Report(results, count, rounds)


def _rows(report: Report, baseline: Callable[[str], str]) -> list[list[str]]:
    rows = []
    for name, m in report.results.items():
        base = report.results[baseline(name)]
        rows.append(
            [
                name,
                f"{m.median:,.0f}",
                f"{m.low:,.0f}..{m.high:,.0f}",
                f"{m.us_per_unit:.1f}",
                f"{m.median / base.median:.2f}",
            ]
        )
    return rows


def run(quick: bool) -> None:
    count, rounds = (4_000, 3) if quick else (20_000, 5)
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="eip-bench-seda-") as directory:
        report = asyncio.run(bench(count, rounds, Path(directory)))
    print(
        f"seda: {count:,} msgs per round (~300 B dict body, 2 headers), {rounds} interleaved "
        f"rounds after a warm-up, medians; every run checked that all were consumed and the "
        f"durable files are empty; took {time.perf_counter() - began:.0f} s\n"
    )

    def baseline_of(name: str) -> str:
        return "memory" if "senders" not in name else f"memory, {SENDERS} senders"

    headers = ["queue", "msgs/s", "range", "µs/msg", "vs memory"]
    print(table(headers, _rows(report, baseline_of)))
    print()
    r = report.results
    print(result_line("seda-durable-vs-memory", r["durable"].median, r["memory"].median))
    print(result_line("seda-durable-full-vs-memory", r["durable full"].median, r["memory"].median))
    print(
        result_line(
            f"seda-durable-{SENDERS}-senders-vs-memory",
            r[f"durable, {SENDERS} senders"].median,
            r[f"memory, {SENDERS} senders"].median,
        )
    )
