"""``cron:`` misfires (eip/components/cron.py): a fire time that passed while no instance was up
runs once at start (``misfire=run_once``) or is skipped (``misfire=skip``), judged from the
last fire time kept in a real SQLite file or PostgreSQL table; without a store a restart
forgets. Every test runs on a manual clock: "down" is a context stopped, and another started
later on the same store."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from eip import headers as H
from eip.clock import ManualClock
from eip.components.cron import cron
from eip.stores.schedules import open_schedule_store
from tests.components.cron_support import (
    BERLIN,
    PG_DSN,
    SHANGHAI,
    consumer,
    drop_tables,
    fires,
    instance,
    local,
    run_until,
    scheduled,
    unique_table,
)

NIGHTLY = "0 3 * * *"


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    """The store options of one test: a fresh SQLite file, or fresh PostgreSQL tables."""
    if request.param == "sqlite":
        yield {"store": f"sqlite:{tmp_path / 'state' / 'schedules.db'}"}
        return
    table = unique_table()
    try:
        yield {"store": PG_DSN, "table": table}
    finally:
        await drop_tables(table)


async def history(options: dict[str, Any], name: str = "nightly") -> list[tuple[float, str]]:
    """(fire time, outcome) of the schedule's history, oldest first, read from the store."""
    store = open_schedule_store(options["store"], table=options.get("table", "eip_schedules"))
    await store.start()
    try:
        return [(r.due, r.outcome) for r in reversed(await store.history(name))]
    finally:
        await store.stop()


async def test_run_once_runs_the_missed_night_once_at_start(store: dict[str, Any]) -> None:
    spec = cron("nightly", NIGHTLY, timezone="Europe/Berlin", **store)
    clock = ManualClock(start=local(BERLIN, 2026, 1, 10, 12, 0))
    async with instance(clock, spec) as first:
        await run_until(clock, local(BERLIN, 2026, 1, 11, 12, 0), first)
        assert scheduled(first) == [local(BERLIN, 2026, 1, 11, 3, 0)]
    # down from 01-11 12:00 to 01-12 05:00: the night of the 12th passed with nobody up
    clock = ManualClock(start=local(BERLIN, 2026, 1, 12, 5, 0))
    async with instance(clock, spec) as second:
        [run] = fires(second)
        assert run[H.CRON_FIRE] == "misfire"
        assert run[H.CRON_SCHEDULED_TIME] == local(BERLIN, 2026, 1, 12, 3, 0)
        assert run[H.CRON_PREVIOUS_TIME] == local(BERLIN, 2026, 1, 11, 3, 0)
        assert run[H.TIMER_FIRED_TIME] == clock.time()  # at start, not at 03:00
        await run_until(clock, local(BERLIN, 2026, 1, 13, 12, 0), second)
        assert scheduled(second)[1:] == [local(BERLIN, 2026, 1, 13, 3, 0)]
        assert fires(second)[1][H.CRON_FIRE] == "schedule"
        assert consumer(second).stats.misfire_runs == 1
    assert [outcome for _, outcome in await history(store)] == ["fired", "misfire", "fired"]


async def test_run_once_runs_once_for_several_missed_nights(store: dict[str, Any]) -> None:
    spec = cron("nightly", NIGHTLY, timezone="Europe/Berlin", **store)
    clock = ManualClock(start=local(BERLIN, 2026, 1, 10, 12, 0))
    async with instance(clock, spec) as first:
        await run_until(clock, local(BERLIN, 2026, 1, 11, 4, 0), first)
    clock = ManualClock(start=local(BERLIN, 2026, 1, 15, 9, 30))  # four nights missed
    async with instance(clock, spec) as second:
        [run] = fires(second)
        # one run, covering every missed night: (previous, scheduled]
        assert run[H.CRON_PREVIOUS_TIME] == local(BERLIN, 2026, 1, 11, 3, 0)
        assert run[H.CRON_SCHEDULED_TIME] == local(BERLIN, 2026, 1, 15, 3, 0)
    assert await history(store) == [
        (local(BERLIN, 2026, 1, 11, 3, 0), "fired"),
        (local(BERLIN, 2026, 1, 15, 3, 0), "misfire"),
    ]


async def test_skip_waits_for_the_next_time(
    store: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    spec = cron("nightly", NIGHTLY, timezone="Europe/Berlin", misfire="skip", **store)
    clock = ManualClock(start=local(BERLIN, 2026, 1, 10, 12, 0))
    async with instance(clock, spec) as first:
        await run_until(clock, local(BERLIN, 2026, 1, 11, 12, 0), first)
    clock = ManualClock(start=local(BERLIN, 2026, 1, 12, 5, 0))
    with caplog.at_level(logging.WARNING, logger="eip.cron"):
        async with instance(clock, spec) as second:
            assert fires(second) == []  # not at start
            await run_until(clock, local(BERLIN, 2026, 1, 13, 2, 59), second)
            assert fires(second) == []
            await run_until(clock, local(BERLIN, 2026, 1, 13, 3, 0), second)
            [run] = fires(second)
            assert run[H.CRON_FIRE] == "schedule"
            assert run[H.CRON_SCHEDULED_TIME] == local(BERLIN, 2026, 1, 13, 3, 0)
            # the last *run* was the 11th: the skipped night is the next run's to cover
            assert run[H.CRON_PREVIOUS_TIME] == local(BERLIN, 2026, 1, 11, 3, 0)
            assert consumer(second).stats.misfires_skipped == 1
    [message] = [r.getMessage() for r in caplog.records if "missed" in r.getMessage()]
    assert "fire time 2026-01-12T03:00:00+01:00 was missed by 7200 s" in message
    assert "misfire=skip: waiting for the next, 2026-01-13T03:00:00+01:00" in message
    assert [o for _, o in await history(store)] == ["fired", "missed", "fired"]


@pytest.mark.parametrize("misfire", ["run_once", "skip"])
async def test_a_time_less_late_than_the_threshold_just_runs(
    store: dict[str, Any], misfire: Any
) -> None:
    """Quartz's misfire threshold: 30 s late is no misfire (default threshold 60 s)."""
    spec = cron("nightly", NIGHTLY, timezone="Europe/Berlin", misfire=misfire, **store)
    clock = ManualClock(start=local(BERLIN, 2026, 1, 10, 12, 0))
    async with instance(clock, spec):
        pass
    clock = ManualClock(start=local(BERLIN, 2026, 1, 11, 3, 0) + 30)  # restarted 03:00:30
    async with instance(clock, spec) as second:
        [run] = fires(second)
        assert run[H.CRON_FIRE] == "schedule"
        assert run[H.CRON_SCHEDULED_TIME] == local(BERLIN, 2026, 1, 11, 3, 0)


async def test_the_threshold_is_an_option(store: dict[str, Any]) -> None:
    spec = cron(
        "nightly", NIGHTLY, timezone="Europe/Berlin", misfire="skip", misfire_threshold=10, **store
    )
    clock = ManualClock(start=local(BERLIN, 2026, 1, 10, 12, 0))
    async with instance(clock, spec):
        pass
    clock = ManualClock(start=local(BERLIN, 2026, 1, 11, 3, 0) + 30)
    async with instance(clock, spec) as second:
        assert fires(second) == []  # 30 s late is a misfire now


async def test_the_first_start_misses_nothing(store: dict[str, Any]) -> None:
    """A schedule the store has never seen starts counting at its first start: a 03:00 of
    that morning, before the route existed, was not missed."""
    spec = cron("nightly", NIGHTLY, timezone="Europe/Berlin", **store)
    clock = ManualClock(start=local(BERLIN, 2026, 1, 10, 12, 0))
    async with instance(clock, spec) as first:
        assert fires(first) == []
        await run_until(clock, local(BERLIN, 2026, 1, 11, 3, 0), first)
        assert scheduled(first) == [local(BERLIN, 2026, 1, 11, 3, 0)]
        # the first run's previous time is when the store first saw the schedule
        assert fires(first)[0][H.CRON_PREVIOUS_TIME] is None


async def test_without_a_store_a_restart_forgets() -> None:
    """No store: the missed night is not run (as misfire=skip), whatever misfire says."""
    spec = cron("nightly", NIGHTLY, timezone="Europe/Berlin", misfire="run_once")
    clock = ManualClock(start=local(BERLIN, 2026, 1, 10, 12, 0))
    async with instance(clock, spec) as first:
        await run_until(clock, local(BERLIN, 2026, 1, 11, 12, 0), first)
        assert len(fires(first)) == 1
    clock = ManualClock(start=local(BERLIN, 2026, 1, 12, 5, 0))
    async with instance(clock, spec) as second:
        assert fires(second) == []
        await run_until(clock, local(BERLIN, 2026, 1, 13, 3, 0), second)
        assert scheduled(second) == [local(BERLIN, 2026, 1, 13, 3, 0)]


async def test_a_stopped_route_started_again_is_judged_as_a_restart(
    store: dict[str, Any],
) -> None:
    spec = cron("nightly", NIGHTLY, timezone="Europe/Berlin", **store)
    clock = ManualClock(start=local(BERLIN, 2026, 1, 10, 12, 0))
    async with instance(clock, spec) as context:
        await context.stop_route("nightly")
        await clock.advance(local(BERLIN, 2026, 1, 11, 9, 0) - clock.time())
        await context.start_route("nightly")
        await run_until(clock, clock.time(), context)
        [run] = fires(context)
        assert run[H.CRON_FIRE] == "misfire"
        assert run[H.CRON_SCHEDULED_TIME] == local(BERLIN, 2026, 1, 11, 3, 0)


# -- time zones ------------------------------------------------------------------------------


async def test_shanghai_three_oclock_is_nineteen_utc_the_day_before(store: dict[str, Any]) -> None:
    """Asia/Shanghai has no DST: 03:00 local is 19:00 UTC of the previous day, every day."""
    spec = cron("nightly", NIGHTLY, timezone="Asia/Shanghai", **store)
    clock = ManualClock(start=local(SHANGHAI, 2026, 3, 27, 12, 0))
    async with instance(clock, spec) as first:
        await run_until(clock, local(SHANGHAI, 2026, 3, 30, 12, 0), first)
        times = scheduled(first)
    assert times == [local(SHANGHAI, 2026, 3, d, 3, 0) for d in (28, 29, 30)]
    assert [t % 86400 for t in times if t is not None] == [19 * 3600] * 3
    # down over the night of the 31st, back at 09:00: runs once (the night of the 31st)
    clock = ManualClock(start=local(SHANGHAI, 2026, 3, 31, 9, 0))
    async with instance(clock, spec) as second:
        [run] = fires(second)
        assert run[H.CRON_SCHEDULED_TIME] == local(SHANGHAI, 2026, 3, 31, 3, 0)
        assert run[H.CRON_PREVIOUS_TIME] == local(SHANGHAI, 2026, 3, 30, 3, 0)


async def test_berlin_misfire_across_the_spring_dst_change(store: dict[str, Any]) -> None:
    """Down over the night clocks jump 02:00 -> 03:00 (2026-03-29): the missed 03:00 is 03:00
    CEST (01:00 UTC), an hour earlier in UTC than the night before."""
    spec = cron("nightly", NIGHTLY, timezone="Europe/Berlin", **store)
    clock = ManualClock(start=local(BERLIN, 2026, 3, 27, 12, 0))
    async with instance(clock, spec) as first:
        await run_until(clock, local(BERLIN, 2026, 3, 28, 12, 0), first)
        assert scheduled(first) == [local(BERLIN, 2026, 3, 28, 3, 0)]
    clock = ManualClock(start=local(BERLIN, 2026, 3, 29, 10, 0))
    async with instance(clock, spec) as second:
        [run] = fires(second)
        assert run[H.CRON_FIRE] == "misfire"
        missed = run[H.CRON_SCHEDULED_TIME]
        assert missed == local(BERLIN, 2026, 3, 29, 3, 0)
        assert missed - run[H.CRON_PREVIOUS_TIME] == 23 * 3600  # the short night
        await run_until(clock, local(BERLIN, 2026, 3, 31, 12, 0), second)
        assert scheduled(second)[1:] == [local(BERLIN, 2026, 3, d, 3, 0) for d in (30, 31)]


async def test_berlin_repeated_hour_runs_once_across_a_restart(store: dict[str, Any]) -> None:
    """02:30 happens twice on 2026-10-25 (clocks go back 03:00 -> 02:00). Run at the first,
    restarted during the second: that is the same fire time, not a missed one."""
    spec = cron("early", "30 2 * * *", timezone="Europe/Berlin", **store)
    clock = ManualClock(start=local(BERLIN, 2026, 10, 24, 12, 0))
    async with instance(clock, spec) as first:
        await run_until(clock, local(BERLIN, 2026, 10, 25, 2, 40), first)
        assert scheduled(first) == [local(BERLIN, 2026, 10, 25, 2, 30)]
    clock = ManualClock(start=local(BERLIN, 2026, 10, 25, 2, 45, fold=1))  # the second pass
    async with instance(clock, spec) as second:
        await run_until(clock, local(BERLIN, 2026, 10, 26, 12, 0), second)
        assert scheduled(second) == [local(BERLIN, 2026, 10, 26, 2, 30)]
