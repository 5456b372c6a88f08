"""``timer:`` and ``cron:`` - scheduled exchanges on the context clock
(eip/components/timer.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from eip import Context, Exchange, RouteBuilder, RouteDefinitionError
from eip import headers as H
from eip.clock import ManualClock
from eip.components.timer import cron, timer

START = 1_700_000_000.0  # the manual_clock fixture's start
BERLIN = ZoneInfo("Europe/Berlin")


def routes(configure):
    class Routes(RouteBuilder):
        def configure(self) -> None:
            configure(self)

    return Routes()


def fired_times(context: Context, name: str = "out") -> list[float]:
    return [h[H.TIMER_FIRED_TIME] for h in context.mock(name).received_headers]


def berlin(year: int, month: int, day: int, hour: int, minute: int) -> float:
    return datetime(year, month, day, hour, minute, tzinfo=BERLIN).timestamp()


@contextlib.asynccontextmanager
async def context_at(start: float) -> AsyncIterator[tuple[Context, ManualClock]]:
    clock = ManualClock(start=start)
    context = Context(clock=clock, shutdown_timeout=5.0)
    try:
        yield context, clock
    finally:
        await context.stop()


async def start_timer(context: Context, clock: ManualClock, uri, *steps) -> None:
    def configure(b: RouteBuilder) -> None:
        route = b.from_(uri).route_id("timer-route")
        for step in steps:
            route.process(step)
        route.to("mock:out")

    context.add_routes(routes(configure))
    await context.start()
    await clock.wait_for_sleepers(1)


# -- timer -------------------------------------------------------------------------------------


async def test_timer_fires_after_delay_then_every_period(eip_context, manual_clock):
    await start_timer(eip_context, manual_clock, "timer:tick?delay=5&period=10")
    out = eip_context.mock("out")

    await manual_clock.advance(4.9)
    assert out.count == 0
    await manual_clock.advance(0.1)
    assert out.count == 1
    await manual_clock.advance(9.9)
    assert out.count == 1
    await manual_clock.advance(0.1)
    assert out.count == 2
    await manual_clock.advance(30)
    assert out.count == 5
    assert fired_times(eip_context) == [START + 5, START + 15, START + 25, START + 35, START + 45]


async def test_timer_without_delay_fires_at_start(eip_context, manual_clock):
    eip_context.add_routes(
        routes(lambda b: b.from_("timer:now?period=60").route_id("t").to("mock:out"))
    )
    await eip_context.start()
    await manual_clock.wait_for_sleepers(1)  # fired once, now sleeping for the next period
    assert fired_times(eip_context) == [START]
    await manual_clock.advance(60)
    assert fired_times(eip_context) == [START, START + 60]


async def test_timer_headers(eip_context, manual_clock):
    await start_timer(eip_context, manual_clock, "timer:heartbeat?delay=1&period=2")
    await manual_clock.advance(5)
    out = eip_context.mock("out")
    assert out.received_bodies == [None, None, None]
    assert out.received_headers == [
        {
            H.TIMER_NAME: "heartbeat",
            H.TIMER_COUNTER: n,
            H.TIMER_FIRED_TIME: START + 1 + 2 * (n - 1),
        }
        for n in (1, 2, 3)
    ]
    assert H.TIMER_NAME == "eip.timer.name"
    assert H.TIMER_COUNTER == "eip.timer.counter"
    assert H.TIMER_FIRED_TIME == "eip.timer.fired_time"


async def test_timer_typed_spec(eip_context, manual_clock):
    await start_timer(eip_context, manual_clock, timer("typed", delay=1, period=3))
    await manual_clock.advance(7)
    assert fired_times(eip_context) == [START + 1, START + 4, START + 7]
    assert {h[H.TIMER_NAME] for h in eip_context.mock("out").received_headers} == {"typed"}


async def test_repeat_count_stops_after_n_fires(eip_context, manual_clock):
    await start_timer(eip_context, manual_clock, "timer:three?delay=1&period=1&repeat_count=3")
    await manual_clock.advance(100)
    out = eip_context.mock("out")
    assert out.count == 3
    assert [h[H.TIMER_COUNTER] for h in out.received_headers] == [1, 2, 3]
    assert manual_clock.pending == 0  # the schedule is over: nothing sleeps any more
    await manual_clock.advance(100)
    assert out.count == 3


async def test_repeat_count_one_fires_once(eip_context, manual_clock):
    await start_timer(eip_context, manual_clock, "timer:once?delay=10&repeat_count=1")
    await manual_clock.advance(1000)
    assert fired_times(eip_context) == [START + 10]


async def test_fixed_delay_schedules_after_the_run_completes(eip_context, manual_clock):
    async def takes_three_seconds(_ex: Exchange) -> None:
        await manual_clock.sleep(3)

    await start_timer(eip_context, manual_clock, "timer:fd?delay=5&period=10", takes_three_seconds)
    await manual_clock.advance(45)  # to START + 45; the run fired at +44 is still busy
    # each next fire is 10 s after the previous run *finished* (3 s after it fired)
    assert fired_times(eip_context) == [START + 5, START + 18, START + 31]
    await manual_clock.advance(3)  # let the busy run finish
    assert fired_times(eip_context) == [START + 5, START + 18, START + 31, START + 44]


async def test_fixed_rate_keeps_the_cadence_despite_run_time(eip_context, manual_clock):
    async def takes_three_seconds(_ex: Exchange) -> None:
        await manual_clock.sleep(3)

    await start_timer(
        eip_context,
        manual_clock,
        "timer:fr?delay=5&period=10&fixed_rate=true",
        takes_three_seconds,
    )
    await manual_clock.advance(45)  # to START + 45; the run fired at +45 is still busy
    assert fired_times(eip_context) == [START + 5, START + 15, START + 25, START + 35]
    await manual_clock.advance(3)  # let the busy run finish
    assert fired_times(eip_context)[-1] == START + 45


async def test_fixed_rate_skips_missed_slots(eip_context, manual_clock):
    async def first_run_overruns(ex: Exchange) -> None:
        if ex.headers[H.TIMER_COUNTER] == 1:
            await manual_clock.sleep(25)  # runs through the slots at +15 and +25

    await start_timer(
        eip_context,
        manual_clock,
        "timer:fr?delay=5&period=10&fixed_rate=true",
        first_run_overruns,
    )
    await manual_clock.advance(45)  # to START + 45
    # the slots at +15 and +25 were missed and are skipped (no burst of catch-up fires)
    assert fired_times(eip_context) == [START + 5, START + 35, START + 45]
    assert [h[H.TIMER_COUNTER] for h in eip_context.mock("out").received_headers] == [1, 2, 3]


async def test_fixed_delay_after_an_overrun(eip_context, manual_clock):
    async def first_run_overruns(ex: Exchange) -> None:
        if ex.headers[H.TIMER_COUNTER] == 1:
            await manual_clock.sleep(25)

    await start_timer(eip_context, manual_clock, "timer:fd?delay=5&period=10", first_run_overruns)
    await manual_clock.advance(45)  # to START + 45
    assert fired_times(eip_context) == [START + 5, START + 40]


async def test_a_failing_run_does_not_stop_the_schedule(eip_context, manual_clock, caplog):
    def fail_second(ex: Exchange) -> None:
        if ex.headers[H.TIMER_COUNTER] == 2:
            raise RuntimeError("run 2 failed")

    with caplog.at_level(logging.ERROR):
        await start_timer(eip_context, manual_clock, "timer:t?delay=1&period=1", fail_second)
        await manual_clock.advance(4)
    out = eip_context.mock("out")
    assert [h[H.TIMER_COUNTER] for h in out.received_headers] == [1, 3, 4]
    assert any("run 2 failed" in r.getMessage() for r in caplog.records)
    assert manual_clock.pending == 1  # still scheduled


async def test_an_async_failing_run_does_not_stop_the_schedule(eip_context, manual_clock):
    async def fail_first(ex: Exchange) -> None:
        await asyncio.sleep(0)
        if ex.headers[H.TIMER_COUNTER] == 1:
            raise ValueError("first failed")

    await start_timer(eip_context, manual_clock, "timer:t?delay=1&period=1", fail_first)
    await manual_clock.advance(3)
    assert [h[H.TIMER_COUNTER] for h in eip_context.mock("out").received_headers] == [2, 3]


async def test_stop_while_sleeping_ends_promptly(eip_context, manual_clock):
    await start_timer(eip_context, manual_clock, "timer:slow?delay=3600&period=3600")
    assert manual_clock.pending == 1
    await asyncio.wait_for(eip_context.stop(), 2)
    assert manual_clock.pending == 0
    assert eip_context.mock("out").count == 0
    await manual_clock.advance(7200)
    assert eip_context.mock("out").count == 0


async def test_stop_route_while_sleeping_ends_promptly(eip_context, manual_clock):
    await start_timer(eip_context, manual_clock, "timer:slow?delay=10&period=10")
    await manual_clock.advance(10)
    assert eip_context.mock("out").count == 1
    await asyncio.wait_for(eip_context.stop_route("timer-route"), 2)
    await manual_clock.advance(100)
    assert eip_context.mock("out").count == 1


async def test_stop_during_a_run_lets_the_run_finish_and_fires_no_more(eip_context, manual_clock):
    entered = asyncio.Event()
    release = asyncio.Event()

    async def gated(_ex: Exchange) -> None:
        entered.set()
        await release.wait()

    await start_timer(eip_context, manual_clock, "timer:t?delay=1&period=1", gated)
    await manual_clock.advance(1)
    await asyncio.wait_for(entered.wait(), 2)
    stopping = asyncio.create_task(eip_context.stop())
    for _ in range(10):
        await asyncio.sleep(0)
    release.set()
    await asyncio.wait_for(stopping, 2)
    assert eip_context.mock("out").count == 1
    await manual_clock.advance(10)
    assert eip_context.mock("out").count == 1


async def test_stop_honours_the_shutdown_timeout_for_a_hanging_run():
    clock = ManualClock(start=START)
    context = Context(clock=clock, shutdown_timeout=0.05)
    entered = asyncio.Event()
    release = asyncio.Event()

    async def hangs(_ex: Exchange) -> None:
        entered.set()
        await release.wait()

    stopping: asyncio.Task[None] | None = None
    try:
        await start_timer(context, clock, "timer:t?delay=1&period=1", hangs)
        await clock.advance(1)
        await asyncio.wait_for(entered.wait(), 2)
        # a run that never finishes must not keep shutdown waiting beyond its timeout
        stopping = asyncio.create_task(context.stop())
        done, _ = await asyncio.wait({stopping}, timeout=1)
        assert stopping in done, "context.stop() hangs on a timer run that never finishes"
        assert context.started is False
    finally:
        release.set()
        if stopping is not None:
            await asyncio.wait_for(stopping, 2)
        await context.stop()


@pytest.mark.parametrize(
    ("uri", "option"),
    [
        ("timer:t?period=0", "period"),
        ("timer:t?period=-1", "period"),
        ("timer:t?delay=-5", "delay"),
        ("timer:t?repeat_count=-1", "repeat_count"),
        ("timer:t?period=abc", "period"),
        ("timer:t?perod=5", "perod"),
    ],
)
async def test_invalid_timer_options_fail_at_start(eip_context, uri, option):
    eip_context.add_routes(routes(lambda b: b.from_(uri).route_id("t").to("mock:out")))
    with pytest.raises(RouteDefinitionError, match=option):
        await eip_context.start()
    assert eip_context.started is False


async def test_unknown_timer_option_lists_the_valid_ones(eip_context):
    eip_context.add_routes(
        routes(lambda b: b.from_("timer:t?perod=5").route_id("t").to("mock:out"))
    )
    with pytest.raises(RouteDefinitionError) as info:
        await eip_context.start()
    assert info.value.option == "perod"
    assert set(info.value.valid or []) >= {"period", "delay", "repeat_count", "fixed_rate"}
    assert "period" in str(info.value)


async def test_timer_cannot_be_a_destination(eip_context):
    eip_context.add_routes(routes(lambda b: b.from_("direct:in").route_id("r").to("timer:t")))
    with pytest.raises(RouteDefinitionError, match="timer"):
        await eip_context.start()


# -- cron -------------------------------------------------------------------------------------


async def test_cron_fires_at_three_local_time_in_berlin():
    start = berlin(2026, 1, 10, 12, 0)
    async with context_at(start) as (context, clock):
        await start_timer(context, clock, "cron:nightly?schedule=0+3+*+*+*&timezone=Europe/Berlin")
        await clock.advance(berlin(2026, 1, 11, 2, 59) - start)
        assert context.mock("out").count == 0
        await clock.advance(60)
        assert fired_times(context) == [berlin(2026, 1, 11, 3, 0)]
        await clock.advance(2 * 86400)
        times = fired_times(context)
        assert times == [berlin(2026, 1, d, 3, 0) for d in (11, 12, 13)]
        local = [datetime.fromtimestamp(t, BERLIN) for t in times]
        assert all((d.hour, d.minute) == (3, 0) for d in local)
        headers = context.mock("out").received_headers
        assert [h[H.TIMER_NAME] for h in headers] == ["nightly"] * 3
        assert [h[H.TIMER_COUNTER] for h in headers] == [1, 2, 3]


async def test_cron_stays_at_three_local_across_the_march_2026_dst_change():
    start = berlin(2026, 3, 27, 12, 0)
    async with context_at(start) as (context, clock):
        await start_timer(context, clock, "cron:nightly?schedule=0+3+*+*+*&timezone=Europe/Berlin")
        await clock.advance(berlin(2026, 3, 31, 12, 0) - start)
        times = fired_times(context)
        expected = [berlin(2026, 3, d, 3, 0) for d in (28, 29, 30, 31)]
        assert times == expected
        local = [datetime.fromtimestamp(t, BERLIN) for t in times]
        assert [(d.day, d.hour, d.minute) for d in local] == [
            (28, 3, 0),
            (29, 3, 0),
            (30, 3, 0),
            (31, 3, 0),
        ]
        # the night of the change is an hour shorter: 23 h between the fires around it
        assert times[1] - times[0] == 23 * 3600
        assert times[2] - times[1] == 24 * 3600
        # in UTC, the fire moves from 02:00 (CET) to 01:00 (CEST)
        utc = [datetime.fromtimestamp(t, ZoneInfo("UTC")).hour for t in times]
        assert utc == [2, 1, 1, 1]


async def test_cron_default_timezone_is_utc():
    start = datetime(2026, 6, 1, 0, 0, tzinfo=ZoneInfo("UTC")).timestamp()
    async with context_at(start) as (context, clock):
        await start_timer(context, clock, cron("hourly", "0 * * * *"))
        await clock.advance(3 * 3600)
        assert fired_times(context) == [start + 3600, start + 7200, start + 10800]


async def test_cron_time_that_does_not_exist_on_the_dst_day_fires_after_the_jump():
    """02:30 does not exist in Berlin on 2026-03-29 (clocks jump 02:00 -> 03:00); like cron(8),
    the nightly job runs right after the jump, at 03:00, so it is not lost that night."""
    start = berlin(2026, 3, 27, 12, 0)
    async with context_at(start) as (context, clock):
        await start_timer(context, clock, "cron:early?schedule=30+2+*+*+*&timezone=Europe/Berlin")
        await clock.advance(berlin(2026, 3, 30, 12, 0) - start)
        assert fired_times(context) == [
            berlin(2026, 3, 28, 2, 30),
            berlin(2026, 3, 29, 3, 0),
            berlin(2026, 3, 30, 2, 30),
        ]


async def test_cron_time_that_happens_twice_in_autumn_fires_once():
    """02:30 happens twice in Berlin on 2026-10-25 (clocks go back 03:00 -> 02:00): a nightly
    job must still run once that night."""
    start = berlin(2026, 10, 23, 12, 0)
    async with context_at(start) as (context, clock):
        await start_timer(context, clock, "cron:early?schedule=30+2+*+*+*&timezone=Europe/Berlin")
        await clock.advance(berlin(2026, 10, 26, 12, 0) - start)
        local_days = [datetime.fromtimestamp(t, BERLIN).day for t in fired_times(context)]
        assert local_days == [24, 25, 26]


async def test_stop_while_cron_sleeps_ends_promptly():
    start = berlin(2026, 1, 10, 12, 0)
    async with context_at(start) as (context, clock):
        await start_timer(context, clock, "cron:n?schedule=0+3+*+*+*&timezone=Europe/Berlin")
        await asyncio.wait_for(context.stop(), 2)
        assert clock.pending == 0


@pytest.mark.parametrize(
    ("uri", "fragment"),
    [
        ("cron:x?schedule=99+3+*+*+*", "schedule"),
        ("cron:x?schedule=0+0+3+*+*+*+*", "5 fields"),  # 6 (seconds first) is valid
        ("cron:x?schedule=0+3+*+*", "5 fields"),
        ("cron:x?schedule=", "schedule"),
        ("cron:x?schedule=not+a+cron+at+all", "schedule"),
        ("cron:x?schedule=0+3+*+*+*&timezone=Mars/Olympus_Mons", "Mars/Olympus_Mons"),
        ("cron:x?schedule=0+3+*+*+*&timezone=", "timezone"),
        ("cron:x", "schedule"),  # required
        ("cron:x?schedule=0+3+*+*+*&tz=UTC", "tz"),
    ],
)
async def test_invalid_cron_endpoints_fail_at_start(eip_context, uri, fragment):
    eip_context.add_routes(routes(lambda b: b.from_(uri).route_id("c").to("mock:out")))
    with pytest.raises(RouteDefinitionError, match=fragment):
        await eip_context.start()
    assert eip_context.started is False


async def test_unknown_timezone_message_says_so(eip_context):
    eip_context.add_routes(
        routes(
            lambda b: (
                b.from_("cron:x?schedule=0+3+*+*+*&timezone=Europe/Atlantis")
                .route_id("c")
                .to("mock:out")
            )
        )
    )
    with pytest.raises(RouteDefinitionError, match="unknown timezone 'Europe/Atlantis'"):
        await eip_context.start()
