"""``cron:`` across instances on one PostgreSQL store (eip/components/cron.py,
eip/stores/schedules_postgres.py), in one process on one manual clock: each fire time runs
exactly once, on one instance; a run on one instance blocks the schedule on all; a run whose
instance died is recovered once its lease expires; and store errors say what and where.
(``tests/test_cron_kill.py`` does the same with real processes and a SIGKILL.)"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from eip import Exchange, LifecycleError, RouteDefinitionError
from eip import headers as H
from eip.clock import ManualClock
from eip.components.cron import cron
from eip.server.control import route_summary
from eip.stores.schedules import open_schedule_store
from tests.components.cron_support import (
    BERLIN,
    PG_DSN,
    build,
    consumer,
    drop_tables,
    fires,
    instance,
    instances,
    local,
    quiet,
    run_until,
    scheduled,
    unique_table,
)

T0 = local(BERLIN, 2026, 1, 10, 12, 0)


@pytest.fixture
async def table() -> AsyncIterator[str]:
    name = unique_table()
    try:
        yield name
    finally:
        await drop_tables(name)


def minutely(table: str, **options: object) -> object:
    return cron(
        "minutely",
        "* * * * *",
        timezone="Europe/Berlin",
        store=PG_DSN,
        table=table,
        **options,  # type: ignore[arg-type]
    )


async def history(table: str) -> list[tuple[float, str, str]]:
    """(fire time - T0, outcome, owner) oldest first."""
    store = open_schedule_store(PG_DSN, table=table)
    await store.start()
    try:
        rows = await store.history("minutely", limit=1000)
    finally:
        await store.stop()
    return [(r.due - T0, r.outcome, r.owner) for r in reversed(rows)]


async def test_two_instances_fire_each_time_exactly_once(table: str) -> None:
    clock = ManualClock(start=T0)
    async with instances(clock, minutely(table), count=2) as (a, b):
        await run_until(clock, T0 + 600, a, b)
        runs = scheduled(a) + scheduled(b)
        assert sorted(t - T0 for t in runs if t is not None) == [60 * n for n in range(1, 11)]
        stats = [consumer(a).stats, consumer(b).stats]
        assert sum(s.fired for s in stats) == 10
        assert sum(s.taken_elsewhere for s in stats) == 10  # the other one saw each taken
    rows = await history(table)
    assert [(due, outcome) for due, outcome, _ in rows] == [(60 * n, "fired") for n in range(1, 11)]
    owners = {consumer_owner for _, _, consumer_owner in rows}
    assert owners <= {consumer(a).owner, consumer(b).owner}


async def test_both_down_across_a_fire_time_one_runs_it_once(table: str) -> None:
    spec = minutely(table, misfire_threshold=10)
    clock = ManualClock(start=T0)
    async with instances(clock, spec, count=2) as (a, b):
        await run_until(clock, T0 + 60, a, b)
        assert len(fires(a) + fires(b)) == 1
    clock = ManualClock(start=T0 + 630)  # all were down for nine fire times
    async with instances(clock, spec, count=3) as started:
        runs = [h for c in started for h in fires(c)]
        assert [h[H.CRON_FIRE] for h in runs] == ["misfire"]
        assert runs[0][H.CRON_SCHEDULED_TIME] == T0 + 600
        assert runs[0][H.CRON_PREVIOUS_TIME] == T0 + 60
    assert [(due, outcome) for due, outcome, _ in await history(table)] == [
        (60, "fired"),
        (600, "misfire"),
    ]


async def test_a_run_on_one_instance_blocks_the_schedule_on_all(
    table: str, caplog: pytest.LogCaptureFixture
) -> None:
    held = asyncio.Event()
    release = asyncio.Event()

    async def first_run_is_slow(exchange: Exchange) -> None:
        if exchange.headers[H.CRON_SCHEDULED_TIME] == T0 + 60:
            held.set()
            await release.wait()

    clock = ManualClock(start=T0)
    with caplog.at_level(logging.WARNING, logger="eip.cron"):
        async with instances(clock, minutely(table), first_run_is_slow) as (a, b):
            await run_until(clock, T0 + 60, a, b, runs=False)
            await asyncio.wait_for(held.wait(), 2)
            await run_until(clock, T0 + 120, a, b, runs=False)
            release.set()
            await quiet(a, b)
            await run_until(clock, T0 + 180, a, b)
            assert sorted(t - T0 for t in scheduled(a) + scheduled(b) if t) == [60, 180]
            overlaps = consumer(a).stats.overlaps_skipped + consumer(b).stats.overlaps_skipped
            assert overlaps == 1  # logged and counted once, by whichever claimed it
    assert [(d, o) for d, o, _ in await history(table)] == [
        (60, "fired"),
        (120, "overlap"),
        (180, "fired"),
    ]
    assert sum("not started" in r.getMessage() for r in caplog.records) == 1


async def dead_run(
    table: str, due: float, lease_ttl: float, name: str = "minutely", since: float = T0
) -> str:
    """What an instance killed mid-run leaves: fire time ``due`` claimed and running under a
    lease that nobody renews or ends (the schedule known since ``since``)."""
    store = open_schedule_store(PG_DSN, table=table)
    await store.start()
    try:
        await store.open(name, "* * * * *", since)
        claim = await store.claim(
            name,
            due,
            "fired",
            owner="gone-host:4242:deadbeef",
            now=due,
            lease_ttl=lease_ttl,
            run_id="dead-run",
            recover=True,
        )
        assert claim.outcome == "fired"
    finally:
        await store.stop()
    return "gone-host:4242:deadbeef"


async def test_a_dead_instance_run_is_recovered_when_its_lease_expires(
    table: str, caplog: pytest.LogCaptureFixture
) -> None:
    dead = await dead_run(table, T0 + 60, lease_ttl=90)  # expires at T0 + 150
    clock = ManualClock(start=T0 + 70)
    with caplog.at_level(logging.WARNING, logger="eip.cron"):
        async with instance(clock, minutely(table, lease_ttl=90)) as survivor:
            await run_until(clock, T0 + 149, survivor)
            assert fires(survivor) == []  # +120 came while the lease was live: an overlap
            await run_until(clock, T0 + 150, survivor)
            [recovery] = fires(survivor)
            assert recovery[H.CRON_FIRE] == "recovery"
            assert recovery[H.TIMER_FIRED_TIME] == T0 + 150  # at the expiry, not later
            # it stands for the dead run and the overlap after it: (None, +120]
            assert recovery[H.CRON_SCHEDULED_TIME] == T0 + 120
            assert recovery[H.CRON_PREVIOUS_TIME] is None
            await run_until(clock, T0 + 180, survivor)
            assert fires(survivor)[1][H.CRON_PREVIOUS_TIME] == T0 + 120
            assert consumer(survivor).stats.recoveries == 1
    rows = await history(table)
    assert [(d, o) for d, o, _ in rows] == [
        (60, "fired"),
        (120, "overlap"),
        (120, "recovered"),
        (180, "fired"),
    ]
    assert rows[0][2] == dead
    assert any(
        f"the run of 2026-01-10T12:01:00+01:00 on instance {dead} did not finish" in r.getMessage()
        and "misfire=run_once: running it again now" in r.getMessage()
        for r in caplog.records
    )


async def test_with_skip_a_dead_run_is_cleared_not_run_again(table: str) -> None:
    await dead_run(table, T0 + 60, lease_ttl=30)
    clock = ManualClock(start=T0 + 70)
    async with instance(clock, minutely(table, misfire="skip")) as survivor:
        await run_until(clock, T0 + 119, survivor)
        assert fires(survivor) == []
        await run_until(clock, T0 + 120, survivor)
        [run] = fires(survivor)
        assert run[H.CRON_FIRE] == "schedule"
        assert run[H.CRON_PREVIOUS_TIME] == T0 + 60  # the dead run's times are given up


async def test_a_lone_instance_killed_mid_run_covers_that_run_at_its_next(
    table: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The only instance died during the night's run; restarted the next morning, one run
    (the missed night, misfire=run_once) also covers the night whose run did not finish."""
    night = local(BERLIN, 2026, 1, 11, 3, 0)
    dead = await dead_run(table, night, 30, name="nightly", since=night - 86400)
    spec = cron("nightly", "0 3 * * *", timezone="Europe/Berlin", store=PG_DSN, table=table)
    clock = ManualClock(start=local(BERLIN, 2026, 1, 12, 4, 0))
    with caplog.at_level(logging.WARNING, logger="eip.cron"):
        async with instance(clock, spec) as context:
            [run] = fires(context)
            assert run[H.CRON_FIRE] == "misfire"
            assert run[H.CRON_SCHEDULED_TIME] == local(BERLIN, 2026, 1, 12, 3, 0)
            assert run[H.CRON_PREVIOUS_TIME] is None  # the dead run's previous: all of it
    assert any(
        f"the run of 2026-01-11T03:00:00+01:00 on instance {dead} did not finish" in r.getMessage()
        and "the run of 2026-01-12T03:00:00+01:00 covers its times too" in r.getMessage()
        for r in caplog.records
    )


async def test_a_live_lease_is_not_recovered(table: str) -> None:
    """An instance whose run goes on renews its lease: the other never recovers it."""
    release = asyncio.Event()

    async def long_run(exchange: Exchange) -> None:
        if exchange.headers[H.CRON_SCHEDULED_TIME] == T0 + 60:
            await release.wait()

    clock = ManualClock(start=T0)
    spec = minutely(table, lease_ttl=30)
    async with instances(clock, spec, long_run) as (a, b):
        await run_until(clock, T0 + 60, a, b, runs=False)
        for second in range(61, 400, 5):  # past many lease lengths, renewed as it goes
            await run_until(clock, T0 + second, a, b, runs=False)
        assert consumer(a).stats.recoveries + consumer(b).stats.recoveries == 0
        release.set()
        await quiet(a, b)
    assert [o for _, o, _ in await history(table)].count("recovered") == 0


# -- store errors ----------------------------------------------------------------------------


async def test_an_unreachable_postgresql_fails_the_start_naming_it() -> None:
    spec = cron("nightly", "0 3 * * *", store="postgresql://eip:s3cret@127.0.0.1:1/test")
    context = build(spec, clock=ManualClock(start=T0))
    with pytest.raises(LifecycleError) as info:
        await context.start()
    text = str(info.value)
    assert "route 'nightly' could not start its consumer cron:nightly" in text
    assert "schedule store postgresql://eip:***@127.0.0.1:1/test could not open" in text
    assert "s3cret" not in text
    await context.stop()


async def test_an_sqlite_file_that_cannot_be_made_fails_the_start_naming_it(
    tmp_path: Path,
) -> None:
    (tmp_path / "not-a-dir").write_text("x")
    path = tmp_path / "not-a-dir" / "schedules.db"
    context = build(cron("nightly", "0 3 * * *", store=f"sqlite:{path}"), clock=ManualClock())
    with pytest.raises(LifecycleError, match=f"schedule store sqlite:{path} could not open"):
        await context.start()
    await context.stop()


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ("store=redis://cache", "store: schedule store 'redis://cache': write sqlite"),
        ("misfire=sometimes", "misfire must be 'run_once' or 'skip', got 'sometimes'"),
        ("lease_ttl=0", "lease_ttl must be > 0"),
        ("misfire_threshold=-1", "misfire_threshold must be >= 0"),
        ("table=bad-name&store=sqlite", "table"),
    ],
)
async def test_bad_store_options_fail_at_start(options: str, fragment: str) -> None:
    context = build(f"cron:nightly?schedule=0+3+*+*+*&{options}", clock=ManualClock())
    with pytest.raises(RouteDefinitionError, match=fragment):
        await context.start()
    await context.stop()


async def test_a_store_outage_is_logged_counted_and_judged_as_downtime(
    table: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The table goes away from 02:55 to 03:10, over the nightly fire time: each failed claim
    is an ERROR naming the route, the store and the cause, counted, and the route says it is
    not ready; once the store is back, the missed night runs once (misfire=run_once)."""
    spec = cron("nightly", "0 3 * * *", timezone="Europe/Berlin", store=PG_DSN, table=table)
    clock = ManualClock(start=local(BERLIN, 2026, 1, 10, 12, 0))
    async with instance(clock, spec) as context:
        await run_until(clock, local(BERLIN, 2026, 1, 11, 2, 55), context)
        conn = await asyncpg.connect(PG_DSN)
        try:
            await conn.execute(f'ALTER TABLE "{table}" RENAME TO "{table}_away"')
            with caplog.at_level(logging.ERROR, logger="eip.cron"):
                await run_until(clock, local(BERLIN, 2026, 1, 11, 3, 10), context)
            summary = route_summary(context, context.routes["nightly"], {})
            assert summary["ready"] is False
            assert summary["problem"].startswith(f"schedule store {PG_DSN} failed:")
            assert summary["counters"]["schedule"]["store_errors"] >= 5
            assert fires(context) == []
            await conn.execute(f'ALTER TABLE "{table}_away" RENAME TO "{table}"')
        finally:
            await conn.close()
        await run_until(clock, local(BERLIN, 2026, 1, 11, 3, 11), context)
        [run] = fires(context)
        assert run[H.CRON_FIRE] == "misfire"
        assert run[H.CRON_SCHEDULED_TIME] == local(BERLIN, 2026, 1, 11, 3, 0)
        assert route_summary(context, context.routes["nightly"], {})["ready"] is True
    first = next(r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)
    assert first.startswith(f"cron nightly of route nightly: schedule store {PG_DSN} failed:")
    assert f'UndefinedTableError: relation "{table}" does not exist' in first
    assert "retrying" in first
