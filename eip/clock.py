"""Clocks: the system clock, and a manual clock so timer and timeout tests never sleep.

Everything in eip that waits for time (redelivery backoff, timers, cron, polling) waits on the
context's clock, never on ``asyncio.sleep`` directly.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Protocol

__all__ = ["Clock", "ManualClock", "SystemClock"]


class Clock(Protocol):
    def time(self) -> float:
        """Wall-clock time as seconds since the epoch."""
        ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock."""

    def time(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class ManualClock:
    """A clock that moves only when a test calls :meth:`advance`.

    Sleepers wake in due order; :meth:`advance` lets each woken task run before it moves on, so
    a chain of sleeps (backoff 1s, 2s, 4s) resolves within one ``advance(7)``.
    """

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def time(self) -> float:
        return self._now

    @property
    def pending(self) -> int:
        """How many tasks are sleeping on this clock."""
        return sum(1 for _, _, fut in self._sleepers if not fut.done())

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._seq), fut))
        await fut

    async def wait_for_sleepers(self, count: int = 1, timeout: float = 5.0) -> None:
        """Wait (in real time) until at least ``count`` tasks sleep on this clock."""
        deadline = time.monotonic() + timeout
        while self.pending < count:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"expected {count} sleepers on the manual clock, have {self.pending}"
                )
            await asyncio.sleep(0.001)

    async def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, waking every sleeper that falls due on the way."""
        target = self._now + seconds
        await _settle()
        while self._sleepers and self._sleepers[0][0] <= target:
            due, _, fut = heapq.heappop(self._sleepers)
            self._now = max(self._now, due)
            if not fut.done():
                fut.set_result(None)
            await _settle()
        self._now = target
        await _settle()


async def _settle(rounds: int = 20) -> None:
    """Give woken tasks a few loop iterations to run up to their next await."""
    for _ in range(rounds):
        await asyncio.sleep(0)
