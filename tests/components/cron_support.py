"""Helpers of the ``cron:`` tests: local times, an instance (a context on a manual clock with a
cron route into ``mock:out``), and unique PostgreSQL tables."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from eip import Context, Exchange, RouteBuilder
from eip import headers as H
from eip.clock import ManualClock
from eip.components.cron import CronConsumer

PG_DSN = os.environ.get("EIP_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")
BERLIN = ZoneInfo("Europe/Berlin")
SHANGHAI = ZoneInfo("Asia/Shanghai")
UTC = ZoneInfo("UTC")


def local(zone: ZoneInfo, *when: int, fold: int = 0) -> float:
    """Epoch seconds of a wall-clock time in ``zone`` (``fold=1``: the second of a repeat)."""
    return datetime(*when, tzinfo=zone, fold=fold).timestamp()  # type: ignore[arg-type,misc]


def shown(epoch: float, zone: ZoneInfo = BERLIN) -> str:
    return datetime.fromtimestamp(epoch, zone).isoformat(timespec="seconds")


def fires(context: Context) -> list[dict[str, Any]]:
    """The headers of every exchange that reached ``mock:out``."""
    return context.mock("out").received_headers


def scheduled(context: Context) -> list[float | None]:
    return [h.get(H.CRON_SCHEDULED_TIME) for h in fires(context)]


def consumer(context: Context, route_id: str = "nightly") -> CronConsumer:
    found = context.routes[route_id].consumer
    assert isinstance(found, CronConsumer)
    return found


@contextlib.asynccontextmanager
async def instance(
    clock: ManualClock,
    source: Any,
    *steps: Callable[[Exchange], Any],
    route_id: str = "nightly",
) -> AsyncIterator[Context]:
    """A started context on ``clock`` with route ``route_id``: ``source`` -> steps ->
    ``mock:out``; stopped (gracefully) on exit."""
    context = build(source, *steps, clock=clock, route_id=route_id)
    try:
        await context.start()
        await quiet(context)
        yield context
    finally:
        await context.stop()


def build(
    source: Any, *steps: Callable[[Exchange], Any], clock: ManualClock, route_id: str = "nightly"
) -> Context:
    """A context (not started) with route ``route_id``: ``source`` -> steps -> ``mock:out``."""

    class Routes(RouteBuilder):
        def configure(self) -> None:
            route = self.from_(source).route_id(route_id)
            for step in steps:
                route.process(step)
            route.to("mock:out")

    context = Context(clock=clock, shutdown_timeout=5.0)
    context.add_routes(Routes())
    return context


@contextlib.asynccontextmanager
async def instances(
    clock: ManualClock, source: Any, *steps: Callable[[Exchange], Any], count: int = 2
) -> AsyncIterator[list[Context]]:
    """``count`` contexts with the same route, started at the same moment (concurrently)."""
    contexts = [build(source, *steps, clock=clock) for _ in range(count)]
    try:
        await asyncio.gather(*(c.start() for c in contexts))
        await quiet(*contexts)
        yield contexts
    finally:
        for context in contexts:
            await context.stop()


async def settle(rounds: int = 3) -> None:
    """Give store calls (a worker thread, a socket) a moment of real time."""
    for _ in range(rounds):
        await asyncio.sleep(0.02)


async def quiet(*contexts: Context, runs: bool = True, timeout: float = 5.0) -> None:
    """Wait in real time until every cron loop sleeps on the clock again (its store call is
    done) and, with ``runs``, every run has ended and released its lease. A manual clock does
    not wait for I/O: moving it on while a claim is in flight would make the claim late."""
    deadline = time.monotonic() + timeout
    cons = [c.routes[r].consumer for c in contexts for r in c.routes]
    crons = [c for c in cons if isinstance(c, CronConsumer)]
    while True:
        busy = [c for c in crons if not c._sleeping or c.renewing or (runs and c._triggered)]
        if not busy:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"cron consumers still busy: {[c.route.id for c in busy]}")
        await asyncio.sleep(0.002)


async def run_until(
    clock: ManualClock, target: float, *contexts: Context, runs: bool = True
) -> None:
    """Move ``clock`` to ``target`` one wake-up at a time, letting each claim (and, with
    ``runs``, each run) finish in between, as a real clock would."""
    while True:
        await quiet(*contexts, runs=runs)
        pending = [due for due, _, fut in clock._sleepers if not fut.done()]
        nxt = min(pending, default=None)
        if nxt is None or nxt > target:
            break
        await clock.advance(max(0.0, nxt - clock.time()))
    await clock.advance(max(0.0, target - clock.time()))
    await quiet(*contexts, runs=runs)


def unique_table() -> str:
    return f"cron_{uuid.uuid4().hex[:12]}"


async def drop_tables(table: str) -> None:
    conn = await asyncpg.connect(PG_DSN)
    try:
        await conn.execute(f'DROP TABLE IF EXISTS "{table}_fires"')
        await conn.execute(f'DROP TABLE IF EXISTS "{table}"')
    finally:
        await conn.close()
