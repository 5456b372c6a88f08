"""What ``timer:`` and ``cron:`` consumers share: the exchange they fire, suspend/resume in place,
a manual trigger, and stopping while asleep.

A suspended consumer (``POST /routes/{id}/suspend``) stops firing in place: a run in progress
finishes, and ``resume`` goes on from then. ``trigger`` fires once now, as if the schedule had
(the counter goes on counting), also while suspended; it is refused while a run of this
consumer is in progress, so a triggered run never overlaps a scheduled one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any, ClassVar

from eip import headers as H
from eip.components.base import Consumer, process_exchange
from eip.message import Exchange

if TYPE_CHECKING:
    from eip.runtime.route import Route

__all__ = ["ScheduledConsumer"]

log = logging.getLogger("eip.timer")


class ScheduledConsumer(Consumer):
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
            if self._resumed is not None:
                await self._wait_resumed()
                continue
            due = self.next_due(self.clock.time())
            if due is None:
                return
            await self._sleep(due - self.clock.time())
            if self.stopping():
                return
            if self._resumed is not None or self._running:
                continue  # suspended while asleep, or a triggered run is on: skip this fire
            await self._fire(self._exchange())

    async def _sleep(self, seconds: float) -> None:
        """Sleep on the clock; ``stop`` cancels the loop only while it is here."""
        self._sleeping = True
        try:
            await self.clock.sleep(seconds)
        finally:
            self._sleeping = False

    async def _wait_resumed(self) -> None:
        resumed = self._resumed
        if resumed is None:
            return
        self._sleeping = True  # stop() may cancel this wait as it cancels a sleep
        try:
            await resumed.wait()
        finally:
            self._sleeping = False

    def stopping(self) -> bool:
        return self._stopping

    def _exchange(self, extra: dict[str, Any] | None = None) -> Exchange:
        self.counter += 1
        headers: dict[str, Any] = {
            H.TIMER_NAME: self.name,
            H.TIMER_COUNTER: self.counter,
            H.TIMER_FIRED_TIME: self.clock.time(),
        }
        if extra:
            headers.update(extra)
        return Exchange(None, headers)

    async def _fire(self, exchange: Exchange, *, held: bool = False) -> bool:
        """Route ``exchange`` to completion; True when it succeeded."""
        if held:  # counted in flight since trigger(); process_exchange counts it from here
            self.route.inflight -= 1
        self._running = True
        try:
            return await process_exchange(self.route, exchange)
        except Exception:  # the schedule must survive anything a run does
            log.exception("scheduled run %s of route %s failed", self.name, self.route.id)
            return False
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
        self._spawn(self._fire(exchange, held=True), "trigger")
        return exchange

    def _spawn(self, run: Any, what: str) -> None:
        task = asyncio.create_task(run, name=f"{self.route.id}:{what}")
        self._triggered.add(task)
        task.add_done_callback(self._triggered.discard)

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
