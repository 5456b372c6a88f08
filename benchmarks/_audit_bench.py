"""The audit variant of the ``pipeline`` benchmark: the same route, audited to SQLite.

Both sides run the pipeline benchmark's route driven the way a consumer with a prefetch drives
it (:func:`drive_window`): up to :data:`WINDOW` exchanges in flight, each completed
(``exchange.done()``) once its dispatch is done, the loop yielding now and then as a socket
reader does. An exchange of the audited route completes only once its record is committed,
so the exchanges in flight share their commits (group commit), and the writer thread commits
one batch while the loop routes the next. Off, the route never suspends and the window costs
nothing.

- **off**: the route in a plain context.
- **on**: the same route in a context audited by config (``[audit] routes = "*"``, store
  ``sqlite:<tmp>/audit.db``: WAL with ``synchronous=NORMAL``, which survives a crash of the
  process), no key and no body fields (the defaults).

Every round checks the per-output counts on both sides, and on the audited side that every
exchange left a record; at the end the store's chain is verified from end to end.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from benchmarks._report import Measurement, Variant, result_line
from eip import Context, Exchange, RouteBuilder
from eip.audit.config import AuditSettings, configure_audit
from eip.audit.writer import AuditWriter
from eip.runtime.route import Route

__all__ = ["AUDIT_OFF", "AUDIT_ON", "WINDOW", "AuditBench", "drive_window"]

T = TypeVar("T")

WINDOW = 1000
YIELD_EVERY = 100
AUDIT_OFF = f"eip route.dispatch, {WINDOW} in flight"
AUDIT_ON = f"eip route.dispatch, {WINDOW} in flight, audited to SQLite"


async def drive_window(route: Route, messages: Sequence[bytes], window: int = WINDOW) -> None:
    """Keep up to ``window`` exchanges in flight, as a consumer with that prefetch does: each
    one that suspends waits in line, the oldest is awaited (then completed) when the window is
    full, and the loop yields every :data:`YIELD_EVERY` messages, as a consumer reading a
    socket does (which is when the audit writer gets the loop to hand a batch over)."""
    dispatch = route.dispatch
    inflight: deque[tuple[Exchange, Any]] = deque()
    countdown = YIELD_EVERY
    for raw in messages:
        exchange = Exchange(raw)
        pending = dispatch(exchange)
        if pending is not None:
            inflight.append((exchange, pending))
            if len(inflight) < window:
                continue
            exchange, pending = inflight.popleft()
            await pending
        done = exchange.done()
        if done is not None:
            await done
        countdown -= 1
        if not countdown:
            countdown = YIELD_EVERY
            await asyncio.sleep(0)
    while inflight:
        exchange, pending = inflight.popleft()
        await pending
        done = exchange.done()
        if done is not None:
            await done


class AuditBench:
    """The two contexts, their variants, the RESULT line and a summary."""

    def __init__(self, off: Context, on: Context, folder: Path, route_id: str) -> None:
        self.off, self.on, self.folder, self.route_id = off, on, folder, route_id
        writer = on.routes[route_id].services[0]
        assert isinstance(writer, AuditWriter), f"the audited route has no writer: {writer!r}"
        self.writer = writer
        self.verified = 0

    @classmethod
    async def start(cls, builder: Callable[[], RouteBuilder], route_id: str) -> AuditBench:
        """Start ``builder()``'s routes twice: plain, and audited to a fresh SQLite file."""
        folder = Path(tempfile.mkdtemp(prefix="eip-audit-bench-"))
        off, on = Context(), Context()
        configure_audit(on, AuditSettings(routes=("*",), store=f"sqlite:{folder / 'audit.db'}"))
        off.add_routes(builder())
        on.add_routes(builder())
        await off.start()
        await on.start()
        return cls(off, on, folder, route_id)

    def variants(
        self,
        messages: Sequence[bytes],
        counts: Callable[[Context], T],
        minus: Callable[[T, T], T],
        expected: T,
    ) -> list[Variant]:
        """Off and on; ``counts(context)`` reads what the context's outputs received so far
        (the pipeline benchmark's per-output counts), ``minus`` takes one from another."""
        count = len(messages)

        async def run(context: Context, name: str) -> float:
            route = context.routes[self.route_id]
            before, records = counts(context), self.writer.records
            began = time.perf_counter()
            await drive_window(route, messages)
            seconds = time.perf_counter() - began
            got = minus(counts(context), before)
            assert got == expected, f"{name}: delivered {got}, expected {expected}"
            if context is self.on:
                written = self.writer.records - records
                assert written == count, f"{name}: {written} records for {count} exchanges"
            return seconds

        async def off() -> float:
            return await run(self.off, AUDIT_OFF)

        async def on() -> float:
            return await run(self.on, AUDIT_ON)

        return [Variant(AUDIT_OFF, off, count), Variant(AUDIT_ON, on, count)]

    async def stop(self) -> None:
        """Stop both contexts and verify the whole chain the rounds wrote."""
        try:
            await self.off.stop()
            await self.on.stop()
            store = self.writer.store
            await store.start()
            try:
                report = await store.verify()
            finally:
                await store.stop()
            assert report.ok, f"audit chain broken after the benchmark: {report.broken}"
            assert report.records == self.writer.records, "records missing from the chain"
            self.verified = report.records
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

    @staticmethod
    def result_line(results: dict[str, Measurement]) -> str:
        on, off = results[AUDIT_ON].median, results[AUDIT_OFF].median
        return result_line("audit-sqlite-vs-off", on, off)

    def summary(self, results: dict[str, Measurement]) -> str:
        on, off = results[AUDIT_ON].median, results[AUDIT_OFF].median
        per_commit = self.writer.records / max(1, self.writer.batches)
        return (
            f"audit adds {1e6 / on - 1e6 / off:.2f} µs per exchange ({1e6 / on:.2f} audited to "
            f"SQLite vs {1e6 / off:.2f} off, {WINDOW} in flight); {self.writer.records:,} "
            f"records in {self.writer.batches:,} commits ({per_commit:,.0f} per commit), "
            f"chain of {self.verified:,} verified"
        )
