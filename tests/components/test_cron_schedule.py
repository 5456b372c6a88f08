"""The math under ``cron:`` (eip/components/cron_schedule.py) and the store's decisions
(eip/stores/schedules.py planners): pure functions, no clock, no I/O."""

from __future__ import annotations

from typing import Any

import pytest

from eip.components.cron_schedule import CronSchedule, check_schedule, load_zone
from eip.stores.schedules import (
    RunLease,
    ScheduleState,
    open_schedule_store,
    plan_claim,
    plan_finish,
    plan_manual,
    plan_recover,
    plan_renew,
)
from tests.components.cron_support import BERLIN, SHANGHAI, local

LEASE: dict[str, Any] = {"owner": "me", "lease_ttl": 30.0, "run_id": "r2"}


def nightly(zone: str = "Europe/Berlin") -> CronSchedule:
    return CronSchedule("0 3 * * *", load_zone(zone))


def test_next_after_and_latest_due_in_shanghai() -> None:
    schedule = nightly("Asia/Shanghai")
    day = local(SHANGHAI, 2026, 5, 1, 3, 0)
    assert schedule.next_after(day - 1) == day
    assert schedule.next_after(day) == day + 86400
    assert schedule.latest_due(day - 1, after=day - 86400) is None
    assert schedule.latest_due(day, after=day - 86400) == day  # ``now`` itself counts
    # four nights later: the latest of the missed ones
    assert schedule.latest_due(day + 4 * 86400 + 5, after=day) == day + 4 * 86400


def test_latest_due_across_the_autumn_repeat_is_one_fire() -> None:
    schedule = CronSchedule("30 2 * * *", BERLIN)
    first = local(BERLIN, 2026, 10, 25, 2, 30)
    second = local(BERLIN, 2026, 10, 25, 2, 30, fold=1)
    assert second - first == 3600
    assert schedule.latest_due(second + 60, after=first) is None  # the repeat is no new fire
    assert schedule.next_after(first) == local(BERLIN, 2026, 10, 26, 2, 30)


def test_six_fields_have_seconds_first() -> None:
    assert check_schedule("*/15 * * * * *") is True
    assert check_schedule("0 3 * * *") is False
    every15 = CronSchedule("*/15 * * * * *", BERLIN)
    start = local(BERLIN, 2026, 3, 29, 1, 59, 50)
    # across the spring jump 02:00 local does not exist: ten seconds on it is 03:00:00 CEST
    assert every15.next_after(start) == local(BERLIN, 2026, 3, 29, 3, 0, 0) == start + 10
    assert every15.next_after(start + 10) == start + 25


@pytest.mark.parametrize(
    ("expression", "fragment"),
    [("0 0 3 * * * *", "5 fields"), ("61 3 * * *", "not a valid cron"), ("", "5 fields")],
)
def test_bad_schedules_say_why(expression: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        check_schedule(expression)


def test_unknown_zone_is_named() -> None:
    with pytest.raises(ValueError, match="unknown timezone 'Mars/Olympus_Mons'"):
        load_zone("Mars/Olympus_Mons")


def state(last_due: float = 100.0, running: RunLease | None = None) -> ScheduleState:
    return ScheduleState("n", "* * * * *", last_due, last_run=100.0, running=running)


def test_a_claim_moves_last_due_once() -> None:
    plan = plan_claim(state(), 160.0, "fired", now=160.0, recover=True, **LEASE)
    assert plan.claim.outcome == "fired"
    assert plan.claim.previous == 100.0
    assert plan.state is not None
    assert plan.state.last_due == plan.state.last_run == 160.0
    assert plan.state.running == RunLease("r2", "me", 160.0, 190.0, 160.0, 100.0)
    assert plan.fire is not None
    assert (plan.fire.due, plan.fire.outcome) == (160.0, "fired")
    again = plan_claim(plan.state, 160.0, "fired", now=160.5, recover=True, **LEASE)
    assert again.claim.outcome == "taken"
    assert again.state is None
    assert again.fire is None


def test_a_live_lease_turns_a_run_into_an_overlap_but_not_a_skip() -> None:
    live = RunLease("r1", "other", 150.0, 200.0, 150.0, 90.0)
    plan = plan_claim(state(running=live), 160.0, "fired", now=160.0, recover=True, **LEASE)
    assert plan.claim.outcome == "overlap"
    assert plan.claim.lease == live
    assert plan.state is not None
    assert plan.state.running == live  # untouched
    assert plan.state.last_run == 100.0  # the next run covers the skipped time
    skip = plan_claim(state(running=live), 160.0, "missed", now=160.0, recover=True, **LEASE)
    assert skip.claim.outcome == "missed"


def test_a_run_after_a_dead_one_covers_it_only_with_recover() -> None:
    dead = RunLease("r1", "gone", 100.0, 130.0, 100.0, 40.0)
    covered = plan_claim(state(running=dead), 160.0, "fired", now=160.0, recover=True, **LEASE)
    assert covered.claim.outcome == "fired"
    assert covered.claim.previous == 40.0  # (40, 160]: the dead run's times too
    assert covered.claim.lease == dead
    given_up = plan_claim(state(running=dead), 160.0, "fired", now=160.0, recover=False, **LEASE)
    assert given_up.claim.previous == 100.0


def test_recover_only_an_expired_lease_of_that_run() -> None:
    dead = RunLease("r1", "gone", 100.0, 130.0, 100.0, 40.0)
    live = plan_recover(state(running=dead), "r1", now=120.0, run=True, **LEASE)
    assert live.claim.outcome == "taken"
    other = plan_recover(state(running=dead), "r0", now=140.0, run=True, **LEASE)
    assert other.claim.outcome == "taken"
    run = plan_recover(state(running=dead), "r1", now=140.0, run=True, **LEASE)
    assert run.claim.outcome == "recovered"
    assert run.claim.previous == 40.0
    assert run.fire is not None
    assert (run.fire.due, run.fire.outcome) == (100.0, "recovered")
    cleared = plan_recover(state(running=dead), "r1", now=140.0, run=False, **LEASE)
    assert cleared.claim.outcome == "missed"
    assert cleared.state is not None
    assert cleared.state.running is None


def test_manual_renew_and_finish() -> None:
    manual = plan_manual(state(), now=100.0, **LEASE)
    assert manual.claim.outcome == "fired"
    assert manual.state is not None
    assert (manual.state.last_due, manual.state.last_run) == (100.0, 100.0)  # untouched
    refused = plan_manual(manual.state, now=110.0, **{**LEASE, "run_id": "r3"})
    assert refused.claim.outcome == "overlap"
    renewed = plan_renew(manual.state, "r2", now=120.0, lease_ttl=30.0)
    assert renewed.state is not None
    assert renewed.state.running is not None
    assert renewed.state.running.until == 150.0
    assert plan_renew(manual.state, "r9", now=120.0, lease_ttl=30.0).claim.outcome == "taken"
    done = plan_finish(renewed.state, "r2", now=125.0, ok=True)
    assert done.state is not None
    assert done.state.running is None
    assert done.finished == ("r2", 125.0, True)


def test_store_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EIP_DATA_DIR", "/srv/eip")
    assert open_schedule_store("sqlite").name == "sqlite:/srv/eip/schedules.db"
    assert open_schedule_store("sqlite:state/s.db").name == "sqlite:state/s.db"
    assert open_schedule_store("sqlite:///abs/s.db").name == "sqlite:/abs/s.db"
    assert open_schedule_store(None).name == "memory"
    pg = open_schedule_store("postgresql://u:pw@db/x", table="jobs")
    assert pg.name == "postgresql://u:***@db/x"
    with pytest.raises(ValueError, match="write sqlite"):
        open_schedule_store("mysql://db")
