"""``cron:`` never overlaps itself (eip/components/cron.py): a fire time that comes while a run
is going is not started, but logged (WARNING: route, fire time, how long the run has gone)
and counted (the control API's route counters); the manual trigger keeps to the same rule and
leaves misfire bookkeeping alone; suspended fire times are skipped. On a manual clock, with
the memory store and real SQLite files."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from eip import Exchange
from eip import headers as H
from eip.clock import ManualClock
from eip.components.cron import cron
from eip.runtime import operations
from eip.server.control import route_summary
from eip.stores.schedules import open_schedule_store
from tests.components.cron_support import (
    BERLIN,
    consumer,
    fires,
    instance,
    local,
    quiet,
    run_until,
    scheduled,
)

T0 = local(BERLIN, 2026, 1, 10, 12, 0)  # a minute boundary
MINUTELY = "* * * * *"


def minutely(**options: str | None) -> object:
    return cron("minutely", MINUTELY, timezone="Europe/Berlin", **options)  # type: ignore[arg-type]


class Gate:
    """A step that holds the runs it is told to hold until released."""

    def __init__(self, *hold: int) -> None:
        self.hold = set(hold)
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, exchange: Exchange) -> None:
        if exchange.headers[H.TIMER_COUNTER] in self.hold:
            self.entered.set()
            await self.release.wait()


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_a_slow_run_spanning_two_fire_times_skips_both(
    tmp_path: Path, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = None if kind == "memory" else f"sqlite:{tmp_path / 'schedules.db'}"
    gate = Gate(1)
    clock = ManualClock(start=T0)
    with caplog.at_level(logging.WARNING, logger="eip.cron"):
        async with instance(clock, minutely(store=store), gate) as context:
            await run_until(clock, T0 + 60, context, runs=False)
            await asyncio.wait_for(gate.entered.wait(), 2)
            await run_until(clock, T0 + 180, context, runs=False)  # +120 and +180 come
            assert fires(context) == []  # the first run is still in its step
            gate.release.set()
            await quiet(context)
            await run_until(clock, T0 + 240, context)
            assert scheduled(context) == [T0 + 60, T0 + 240]
            # the run after the overlap covers the skipped times: (previous, scheduled]
            assert fires(context)[1][H.CRON_PREVIOUS_TIME] == T0 + 60
            stats = consumer(context, "nightly").stats
            assert stats.overlaps_skipped == 2
            assert stats.fired == 2
            route = context.routes["nightly"]
            counters = route_summary(context, route, {})["counters"]
            assert counters["schedule"]["overlaps_skipped"] == 2
            assert counters["schedule"]["fired"] == 2
    warnings = [r.getMessage() for r in caplog.records if "not started" in r.getMessage()]
    assert warnings == [
        "cron minutely of route nightly: fire time 2026-01-10T12:02:00+01:00 not started: the "
        "run that started 60.0 s ago (at 2026-01-10T12:01:00+01:00, on this instance) is "
        "still going",
        "cron minutely of route nightly: fire time 2026-01-10T12:03:00+01:00 not started: the "
        "run that started 120.0 s ago (at 2026-01-10T12:01:00+01:00, on this instance) is "
        "still going",
    ]
    if store is not None:
        schedules = open_schedule_store(store)
        await schedules.start()
        try:
            rows = list(reversed(await schedules.history("minutely")))
        finally:
            await schedules.stop()
        assert [(r.due - T0, r.outcome) for r in rows] == [
            (60, "fired"),
            (120, "overlap"),
            (180, "overlap"),
            (240, "fired"),
        ]
        assert rows[0].finished_at is not None
        assert rows[0].ok is True


async def test_a_failed_run_is_recorded_and_the_schedule_goes_on(tmp_path: Path) -> None:
    def fails_first(exchange: Exchange) -> None:
        if exchange.headers[H.TIMER_COUNTER] == 1:
            raise RuntimeError("the CRM said no")

    store = f"sqlite:{tmp_path / 'schedules.db'}"
    clock = ManualClock(start=T0)
    async with instance(clock, minutely(store=store), fails_first) as context:
        await run_until(clock, T0 + 120, context)
        assert scheduled(context) == [T0 + 120]
    schedules = open_schedule_store(store)
    await schedules.start()
    try:
        rows = list(reversed(await schedules.history("minutely")))
    finally:
        await schedules.stop()
    assert [(r.outcome, r.ok) for r in rows] == [("fired", False), ("fired", True)]


async def test_trigger_is_refused_while_a_scheduled_run_goes_on(tmp_path: Path) -> None:
    gate = Gate(1)
    clock = ManualClock(start=T0)
    spec = minutely(store=f"sqlite:{tmp_path / 's.db'}")
    async with instance(clock, spec, gate) as context:
        await run_until(clock, T0 + 60, context, runs=False)
        await asyncio.wait_for(gate.entered.wait(), 2)
        with pytest.raises(operations.RouteStateError, match="running already"):
            operations.trigger_route(context, "nightly")
        gate.release.set()
        await quiet(context)
        exchange = operations.trigger_route(context, "nightly")
        await quiet(context)
        assert fires(context)[-1][H.CRON_FIRE] == "manual"
        assert exchange.headers[H.CRON_FIRE] == "manual"


async def test_a_fire_time_during_a_manual_run_is_an_overlap(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gate = Gate(1)
    clock = ManualClock(start=T0 + 30)
    with caplog.at_level(logging.WARNING, logger="eip.cron"):
        async with instance(clock, minutely(), gate) as context:
            operations.trigger_route(context, "nightly")
            await asyncio.wait_for(gate.entered.wait(), 2)
            await run_until(clock, T0 + 60, context, runs=False)
            gate.release.set()
            await quiet(context)
            await run_until(clock, T0 + 120, context)
            assert [h[H.CRON_FIRE] for h in fires(context)] == ["manual", "schedule"]
            assert consumer(context).stats.overlaps_skipped == 1
            assert consumer(context).stats.manual_runs == 1
    assert any(
        "fire time 2026-01-10T12:01:00+01:00 not started: the run that started 30.0 s ago"
        in r.getMessage()
        for r in caplog.records
    )


async def test_a_manual_run_leaves_misfire_bookkeeping_alone(tmp_path: Path) -> None:
    """Triggered at 02:00, down across 03:00, back at 05:00: the night is still missed and
    runs once; the trigger claimed no fire time and is not any run's previous time."""
    spec = cron("nightly", "0 3 * * *", timezone="Europe/Berlin", store=f"sqlite:{tmp_path}/s.db")
    clock = ManualClock(start=local(BERLIN, 2026, 1, 10, 12, 0))
    async with instance(clock, spec) as first:
        await run_until(clock, local(BERLIN, 2026, 1, 11, 3, 0), first)
        await run_until(clock, local(BERLIN, 2026, 1, 12, 2, 0), first)
        operations.trigger_route(first, "nightly")
        await quiet(first)
        assert [h[H.CRON_FIRE] for h in fires(first)] == ["schedule", "manual"]
        assert H.CRON_SCHEDULED_TIME not in fires(first)[1]
    clock = ManualClock(start=local(BERLIN, 2026, 1, 12, 5, 0))
    async with instance(clock, spec) as second:
        [run] = fires(second)
        assert run[H.CRON_FIRE] == "misfire"
        assert run[H.CRON_SCHEDULED_TIME] == local(BERLIN, 2026, 1, 12, 3, 0)
        assert run[H.CRON_PREVIOUS_TIME] == local(BERLIN, 2026, 1, 11, 3, 0)


async def test_a_trigger_while_another_instance_runs_is_an_overlap(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Two instances on one SQLite file: one's scheduled run goes on; the other's trigger is
    accepted (it runs nothing itself) but its background run finds the lease and does not
    route."""
    gate = Gate(1)
    clock = ManualClock(start=T0)
    spec = minutely(store=f"sqlite:{tmp_path / 's.db'}")
    async with instance(clock, spec, gate) as a, instance(clock, spec, gate) as b:
        await run_until(clock, T0 + 60, a, b, runs=False)
        await asyncio.wait_for(gate.entered.wait(), 2)
        # the fire time went to one of them, whose run is held now
        runner, other = (a, b) if consumer(a)._run_since is not None else (b, a)
        assert consumer(other)._run_since is None
        with caplog.at_level(logging.WARNING, logger="eip.cron"):
            operations.trigger_route(other, "nightly")
            await quiet(other)
        assert fires(other) == []
        assert consumer(other).stats.overlaps_skipped == 1
        owner = consumer(runner).owner
        assert any(
            "a manual trigger not started: the run that started 0.0 s ago" in r.getMessage()
            and f"on instance {owner}" in r.getMessage()
            for r in caplog.records
        )
        gate.release.set()
        await quiet(a, b)


async def test_fire_times_while_suspended_are_skipped_and_not_missed(tmp_path: Path) -> None:
    spec = minutely(store=f"sqlite:{tmp_path / 's.db'}")
    clock = ManualClock(start=T0)
    async with instance(clock, spec) as context:
        await run_until(clock, T0 + 60, context)
        await operations.suspend_route(context, "nightly")
        await run_until(clock, T0 + 300, context)
        await operations.resume_route(context, "nightly")
        await quiet(context)
        assert scheduled(context) == [T0 + 60]  # nothing at resume
        await run_until(clock, T0 + 360, context)
        assert scheduled(context) == [T0 + 60, T0 + 360]
        assert consumer(context).stats.suspended_skipped == 1
    clock = ManualClock(start=T0 + 390)  # a restart: no misfire for the suspended minutes
    async with instance(clock, spec) as again:
        assert fires(again) == []
