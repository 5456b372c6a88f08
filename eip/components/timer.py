"""``timer:name`` - start exchanges every ``period`` seconds (``cron:`` lives in
:mod:`eip.components.cron` and is re-exported here).

``timer:sync?period=60&delay=5&repeat_count=0`` fires every ``period`` seconds after an initial
``delay``; ``repeat_count=0`` means forever. By default the next fire is scheduled ``period``
after the previous one *finished* (Camel's fixedRate=false), so a slow run never piles up;
``fixed_rate=true`` keeps a fixed cadence and skips fires that were missed.

It fires an exchange with no body and headers ``eip.timer.name``, ``eip.timer.counter`` and
``eip.timer.fired_time`` (epoch seconds), and waits on the context's clock, so tests drive it
with a manual clock. A fire runs the route to completion before the next is scheduled. A timer
keeps nothing between restarts and knows nothing of other instances: for schedules that must
survive downtime and run once across instances, use ``cron:`` with a ``store``.

A suspended timer (``POST /routes/{id}/suspend``) stops firing in place: a run in progress
finishes, fires that fall due while suspended are skipped (as ``fixed_rate`` skips missed
slots), and ``resume`` schedules the next fire from then on. ``trigger`` fires once now, as if
the schedule had (the counter goes on counting), also while suspended; it is refused while a
run is in progress, so a triggered run never overlaps a scheduled one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from eip.components.base import Component, Consumer, EndpointSpec, Producer
from eip.components.cron import CronComponent, CronSpec, cron
from eip.components.scheduled import ScheduledConsumer
from eip.components.typed import make_spec, typed_spec
from eip.errors import RouteDefinitionError

if TYPE_CHECKING:
    from eip.runtime.route import Route

__all__ = ["CronComponent", "CronSpec", "TimerComponent", "TimerSpec", "cron", "timer"]


class TimerSpec(EndpointSpec, frozen=True):
    scheme: ClassVar[str] = "timer"
    name: str
    period: float = 1.0
    delay: float = 0.0
    repeat_count: int = 0
    fixed_rate: bool = False


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


class TimerConsumer(ScheduledConsumer):
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
