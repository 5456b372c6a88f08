"""The times of a cron expression in a time zone: what ``cron:`` fires at, as plain math.

Five fields (``minute hour day-of-month month day-of-week``, as cron(8)) or six with seconds
first (``second minute hour ...``, as Quartz and Spring write them). Times are evaluated as
local wall-clock times in the zone, so "03:00" stays 03:00 local across daylight-saving
changes:

- a wall time that does not exist on the spring-forward day (02:30 when clocks jump 02:00 ->
  03:00) fires right after the jump, as cron(8) does, so a nightly job still runs that night;
- a wall time that happens twice on the fall-back day fires once: a time whose wall-clock
  reading equals the previous fire's is the same fire (:meth:`CronSchedule.next_after`).

Kept apart from the consumer so that misfire and overlap decisions are computed from these
functions alone, and can be tested without a clock.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

__all__ = ["CronSchedule", "check_schedule", "load_zone"]


def load_zone(name: str) -> ZoneInfo:
    """The zone ``name`` (IANA, e.g. ``Asia/Shanghai``); ValueError naming it if unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown timezone {name!r}") from None


def check_schedule(expression: str) -> bool:
    """True for six fields (seconds first); ValueError saying what is wrong otherwise."""
    fields = expression.split()
    if len(fields) not in (5, 6):
        raise ValueError(
            f"schedule {expression!r} must have 5 fields (minute hour day-of-month month "
            "day-of-week), or 6 with seconds first"
        )
    seconds = len(fields) == 6
    if not croniter.is_valid(expression, second_at_beginning=seconds):
        raise ValueError(f"schedule {expression!r} is not a valid cron expression")
    return seconds


class CronSchedule:
    """Fire times of ``expression`` in ``zone``, as epoch seconds."""

    def __init__(self, expression: str, zone: ZoneInfo) -> None:
        self.expression = expression
        self.zone = zone
        self._seconds = check_schedule(expression)

    def _iter(self, start: float) -> croniter:
        when = datetime.fromtimestamp(start, self.zone)
        return croniter(self.expression, when, second_at_beginning=self._seconds)

    def _wall(self, epoch: float) -> datetime:
        return datetime.fromtimestamp(epoch, self.zone).replace(tzinfo=None, fold=0)

    def next_after(self, last: float) -> float:
        """The first fire time after ``last``. When ``last`` was a fire time, a time with the
        same wall-clock reading (the repeated hour in autumn) is skipped: it is the same fire."""
        times = self._iter(last)
        wall = self._wall(last)
        due = float(times.get_next(float))
        while self._wall(due) == wall:
            due = float(times.get_next(float))
        return due

    def latest_due(self, now: float, after: float) -> float | None:
        """The latest fire time in ``(after, now]``, or None when there is none: what a wake
        at ``now`` stands for, when fire times since ``after`` are accounted for."""
        first = self.next_after(after)
        if first > now:
            return None
        times = self._iter(now)
        latest = float(times.get_prev(float))
        following = float(self._iter(latest).get_next(float))
        if following <= now:  # get_prev is strict: ``now`` itself may be a fire time
            latest = following
        return max(first, latest)

    def describe(self, epoch: float) -> str:
        """``epoch`` as local time with its offset, for logs (``2026-03-29T03:00:00+02:00``)."""
        return datetime.fromtimestamp(epoch, self.zone).isoformat(timespec="seconds")
