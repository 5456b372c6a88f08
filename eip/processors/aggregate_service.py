"""The aggregator's background work: inactivity timeouts, completion intervals, recovery of
unconfirmed groups, and completing open groups on stop (see :mod:`eip.processors.aggregate`).

It runs as a route service: started before the route's consumer, stopped once intake has
drained. Every loop waits on the context clock and survives any error of a single pass.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import Any

from eip.clock import Clock
from eip.message import Exchange
from eip.processors.base import STOP, Step
from eip.stores.base import AggregationRepository, CompletedGroup, StoreError

__all__ = ["AggregatorService"]

log = logging.getLogger("eip.aggregator")


class AggregatorService:
    """Start/stop and the background loops of an :class:`~eip.processors.aggregate.Aggregator`."""

    name: str
    clock: Clock
    repository: AggregationRepository
    completion_timeout: float | None
    completion_interval: float | None
    force_completion_on_stop: bool
    recovery_interval: float
    max_redeliveries: int
    dead_letter: Step | None
    _timeouts: collections.deque[tuple[float, str]]
    _timeout_added: asyncio.Event
    _emitting: set[str]
    _tasks: list[asyncio.Task[None]]

    async def _complete_key(self, key: str, trigger: str) -> None:
        raise NotImplementedError

    async def _complete_all(self, trigger: str, keep: str | None = None) -> None:
        raise NotImplementedError

    async def _emit(self, completed: CompletedGroup, redelivered: bool = False) -> None:
        raise NotImplementedError

    def _exchange(self, completed: CompletedGroup, redelivered: bool) -> Exchange:
        raise NotImplementedError

    async def start(self) -> None:
        if self.completion_timeout is not None:
            for group in await self.repository.open_groups():
                self._timeouts.append((group.updated + self.completion_timeout, group.key))
            self._spawn(self._timeout_loop(), "timeouts")
        if self.completion_interval is not None:
            self._spawn(self._interval_loop(), "interval")
        self._spawn(self._recovery_loop(), "recovery")

    def _spawn(self, coroutine: Any, what: str) -> None:
        self._tasks.append(asyncio.create_task(coroutine, name=f"{self.name}:{what}"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self.force_completion_on_stop:
            await self._complete_all("stop")

    async def _timeout_loop(self) -> None:
        assert self.completion_timeout is not None
        while True:
            if not self._timeouts:
                self._timeout_added.clear()
                await self._timeout_added.wait()
                continue
            due, key = self._timeouts[0]
            delay = due - self.clock.time()
            if delay > 0:
                await self.clock.sleep(delay)
                continue
            self._timeouts.popleft()
            group = await self.repository.get(key)
            if group is not None and group.updated + self.completion_timeout <= self.clock.time():
                await self._guard(self._complete_key(key, "timeout"))

    async def _interval_loop(self) -> None:
        assert self.completion_interval is not None
        while True:
            await self.clock.sleep(self.completion_interval)
            await self._guard(self._complete_all("interval"))

    async def _recovery_loop(self) -> None:
        while True:
            await self._guard(self.recover())
            await self.clock.sleep(self.recovery_interval)

    async def recover(self) -> None:
        """Redeliver completed groups whose downstream never confirmed them."""
        for completed in await self.repository.unconfirmed():
            if completed.id in self._emitting:
                continue
            try:
                count = await self.repository.mark_redelivered(completed.id)
            except StoreError:
                continue  # confirmed meanwhile (by us or another instance)
            completed.redeliveries = count
            if count > self.max_redeliveries and self.dead_letter is not None:
                await self._dead_letter(completed)
                continue
            log.warning(
                "%s: redelivering group %r (%s), attempt %d",
                self.name,
                completed.key,
                completed.id,
                count,
            )
            await self._emit(completed, redelivered=True)

    async def _dead_letter(self, completed: CompletedGroup) -> None:
        assert self.dead_letter is not None
        exchange = self._exchange(completed, redelivered=True)
        result = self.dead_letter(exchange)
        if result is not None and result is not STOP:
            await result
        await self.repository.confirm(completed.id)
        log.error("%s: group %r moved to the dead letter endpoint", self.name, completed.key)

    async def _guard(self, coroutine: Any) -> None:
        try:
            await coroutine
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s: background completion failed; will try again", self.name)
