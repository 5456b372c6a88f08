"""``timer:name`` and ``cron:name`` - start exchanges on a schedule.

``timer:sync?period=60&delay=5&repeat_count=0`` fires every ``period`` seconds after an initial
``delay``; ``repeat_count=0`` means forever. By default the next fire is scheduled ``period``
after the previous one *finished* (Camel's fixedRate=false), so a slow run never piles up;
``fixed_rate=true`` keeps a fixed cadence and skips fires that were missed.

``cron:nightly?schedule=0+3+*+*+*&timezone=Europe/Berlin`` fires at the times of a five-field
cron expression (``+`` or ``%20`` for spaces in a URI), evaluated in ``timezone`` so "03:00"
stays 03:00 local across daylight-saving changes. A wall time that does not exist on a DST day
(02:30 when clocks jump from 02:00 to 03:00) fires right after the jump, at 03:00, as with
cron(8), so a nightly job still runs that night; a wall time that happens twice (when clocks go
back) fires once.

Both fire an exchange with no body and headers ``eip.timer.name``, ``eip.timer.counter`` and
``eip.timer.fired_time`` (epoch seconds), and wait on the context's clock, so tests drive them
with a manual clock. A fire runs the route to completion before the next is scheduled.

A suspended timer (``POST /routes/{id}/suspend``) stops firing in place: a run in progress
finishes, fires that fall due while suspended are skipped (as ``fixed_rate`` skips missed
slots), and ``resume`` schedules the next fire from then on. ``trigger`` fires once now, as if
the schedule had (the counter goes on counting), also while suspended; it is refused while a
run is in progress, so a triggered run never overlaps a scheduled one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from eip import headers as H
from eip.components.base import Component, Consumer, EndpointSpec, Producer, process_exchange
from eip.components.typed import make_spec, typed_spec
from eip.errors import RouteDefinitionError
from eip.message import Exchange

if TYPE_CHECKING:
    from eip.runtime.route import Route

__all__ = ["CronComponent", "CronSpec", "TimerComponent", "TimerSpec", "cron", "timer"]

log = logging.getLogger("eip.timer")


class TimerSpec(EndpointSpec, frozen=True):
    scheme: ClassVar[str] = "timer"
    name: str
    period: float = 1.0
    delay: float = 0.0
    repeat_count: int = 0
    fixed_rate: bool = False


class CronSpec(EndpointSpec, frozen=True):
    scheme: ClassVar[str] = "cron"
    name: str
    schedule: str
    timezone: str = "UTC"


@typed_spec(TimerSpec)
def timer(
    name: str,
    *,
    period: float = 1.0,
    delay: float = 0.0,
    repeat_count: int = 0,
    fixed_rate: bool = False,
) -> TimerSpec:
    """Typed form of ``timer:name?...``."""
    return make_spec(
        TimerSpec,
        {
            "name": name,
            "period": period,
            "delay": delay,
            "repeat_count": repeat_count,
            "fixed_rate": fixed_rate,
        },
    )


@typed_spec(CronSpec)
def cron(name: str, schedule: str, *, timezone: str = "UTC") -> CronSpec:
    """Typed form of ``cron:name?schedule=...``."""
    return make_spec(CronSpec, {"name": name, "schedule": schedule, "timezone": timezone})


class _ScheduledConsumer(Consumer):
    """Shared loop: wait for the next due time on the clock, fire, repeat."""

    pauses_in_place: ClassVar[bool] = True

    def __init__(self, context: Any, name: str, route: Route) -> None:
        super().__init__(route)
        self.clock = context.clock
        self.name = name
        self.counter = 0
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._sleeping = False
        #: Set while suspended; set() on resume.
        self._resumed: asyncio.Event | None = None
        self._running = False  # a fire is routing now (scheduled or triggered)
        self._triggered: set[asyncio.Task[None]] = set()

    def next_due(self, now: float) -> float | None:  # pragma: no cover - abstract
        """Epoch seconds of the next fire, or None when the schedule is over."""
        raise NotImplementedError

    async def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name=f"{self.route.id}:{self.name}")

    async def _run(self) -> None:
        while not self.stopping():
            resumed = self._resumed
            if resumed is not None:
                self._sleeping = True  # stop() may cancel this wait as it cancels a sleep
                try:
                    await resumed.wait()
                finally:
                    self._sleeping = False
                continue
            due = self.next_due(self.clock.time())
            if due is None:
                return
            self._sleeping = True
            try:
                await self.clock.sleep(due - self.clock.time())
            finally:
                self._sleeping = False
            if self.stopping():
                return
            if self._resumed is not None or self._running:
                continue  # suspended while asleep, or a triggered run is on: skip this fire
            await self._fire(self._exchange())

    def stopping(self) -> bool:
        return self._stopping

    def _exchange(self) -> Exchange:
        self.counter += 1
        return Exchange(
            None,
            {
                H.TIMER_NAME: self.name,
                H.TIMER_COUNTER: self.counter,
                H.TIMER_FIRED_TIME: self.clock.time(),
            },
        )

    async def _fire(self, exchange: Exchange, *, held: bool = False) -> None:
        if held:  # counted in flight since trigger(); process_exchange counts it from here
            self.route.inflight -= 1
        self._running = True
        try:
            await process_exchange(self.route, exchange)
        except Exception:  # the schedule must survive anything a run does
            log.exception("scheduled run %s of route %s failed", self.name, self.route.id)
        finally:
            self._running = False

    async def suspend(self) -> None:
        """Stop firing; a run in progress finishes."""
        if self._resumed is None:
            self._resumed = asyncio.Event()

    async def resume(self) -> None:
        """Fire again: the next fire is scheduled from now."""
        resumed, self._resumed = self._resumed, None
        if resumed is not None:
            resumed.set()

    def trigger(self) -> Exchange | None:
        """Fire once now, in the background; the exchange fired, or None when a run is in
        progress (a triggered run never overlaps another)."""
        if self._running or self._stopping:
            return None
        exchange = self._exchange()
        self._running = True  # until the task runs: a second trigger is refused at once
        self.route.inflight += 1  # so a shutdown right now still waits for this run
        fire = self._fire(exchange, held=True)
        task = asyncio.create_task(fire, name=f"{self.route.id}:trigger")
        self._triggered.add(task)
        task.add_done_callback(self._triggered.discard)
        return exchange

    async def stop(self) -> None:
        """Stop scheduling. A run in progress is not awaited here: it counts as in flight,
        and the context drains it within its shutdown timeout (then calls ``abort``)."""
        self._stopping = True
        task = self._task
        if task is not None and self._sleeping:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            self._task = None

    async def abort(self) -> None:
        task, self._task = self._task, None
        for running in [task, *self._triggered]:
            if running is not None and not running.done():
                running.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await running


class TimerConsumer(_ScheduledConsumer):
    def __init__(self, context: Any, spec: TimerSpec, route: Route) -> None:
        super().__init__(context, spec.name, route)
        self.spec = spec
        self._first: float | None = None
        self._last_fire: float | None = None

    def next_due(self, now: float) -> float | None:
        spec = self.spec
        if spec.repeat_count and self.counter >= spec.repeat_count:
            return None
        if self._first is None:
            self._first = now + spec.delay
            return self._first
        if spec.fixed_rate:
            # The next slot on the fixed grid that is still ahead; missed slots are skipped.
            elapsed = max(0.0, now - self._first)
            return self._first + (int(elapsed // spec.period) + 1) * spec.period
        return now + spec.period


class CronConsumer(_ScheduledConsumer):
    def __init__(self, context: Any, spec: CronSpec, route: Route) -> None:
        super().__init__(context, spec.name, route)
        self.zone = ZoneInfo(spec.timezone)
        self.schedule = spec.schedule

        self._last_wall: datetime | None = None

    def next_due(self, now: float) -> float | None:
        schedule = croniter(self.schedule, datetime.fromtimestamp(now, self.zone))
        due = float(schedule.get_next(float))
        wall = datetime.fromtimestamp(due, self.zone).replace(tzinfo=None, fold=0)
        # In the autumn the repeated hour would match twice: fire once per wall-clock time.
        while wall == self._last_wall:
            due = float(schedule.get_next(float))
            wall = datetime.fromtimestamp(due, self.zone).replace(tzinfo=None, fold=0)
        self._last_wall = wall
        return due


class TimerComponent(Component):
    scheme: ClassVar[str] = "timer"
    spec_type: ClassVar[type[EndpointSpec]] = TimerSpec

    def validate(self, spec: Any) -> None:
        if spec.period <= 0:
            raise ValueError(f"period must be > 0 seconds, got {spec.period}")
        if spec.delay < 0:
            raise ValueError(f"delay must be >= 0 seconds, got {spec.delay}")
        if spec.repeat_count < 0:
            raise ValueError(f"repeat_count must be >= 0 (0 = forever), got {spec.repeat_count}")

    def create_producer(self, spec: Any) -> Producer:
        raise RouteDefinitionError("timer: endpoints can only be consumed from (from_)")

    def create_consumer(self, spec: Any, route: Route) -> Consumer:
        return TimerConsumer(self.context, spec, route)


class CronComponent(Component):
    scheme: ClassVar[str] = "cron"
    spec_type: ClassVar[type[EndpointSpec]] = CronSpec

    def validate(self, spec: Any) -> None:
        try:
            ZoneInfo(spec.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {spec.timezone!r}") from None
        fields = spec.schedule.split()
        if len(fields) != 5:
            raise ValueError(
                f"schedule {spec.schedule!r} must have 5 fields "
                "(minute hour day-of-month month day-of-week)"
            )
        if not croniter.is_valid(spec.schedule):
            raise ValueError(f"schedule {spec.schedule!r} is not a valid cron expression")

    def create_producer(self, spec: Any) -> Producer:
        raise RouteDefinitionError("cron: endpoints can only be consumed from (from_)")

    def create_consumer(self, spec: Any, route: Route) -> Consumer:
        return CronConsumer(self.context, spec, route)
