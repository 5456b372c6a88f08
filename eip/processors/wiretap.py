"""Wire tap: send a copy of the exchange to an endpoint without holding up the route.

Decisions:

- The step only appends the copy to a bounded queue and returns None: the route never waits
  and never fails because of the tap. One worker task per wire-tap step sends the copies in
  order; it is started on the first copy and ends when the queue is empty, so an idle tap
  holds no task and there is never a task per message while the tap keeps up.
- When ``max_pending`` copies are waiting, a new copy is dropped and counted in ``dropped``,
  with a WARNING on the first drop and every :attr:`WireTap.LOG_EVERY` drops after it: a tap
  is a side channel, and back-pressure on it must not slow the route.
- ``copy=True`` sends ``exchange.copy()`` (own headers and properties, same body object);
  ``copy=False`` sends a new exchange with only the body (Camel's new-exchange mode: nothing of
  the route's headers or properties leaks). Either way the tapped exchange is in-only.
- The send is a pipeline with the route's error handling (redelivery, dead letter channel); a
  failure after that is logged and counted in ``failed``. The worker completes each tapped
  exchange's unit of work, since it is what created it.
- The tap is a route service (``start``/``stop``): at context shutdown, once intake has
  drained, ``stop`` waits up to ``drain_timeout`` seconds for the queue to empty; what is left
  after that is dropped (counted and logged), and the worker is cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque

from eip.message import Exchange, ExchangePattern
from eip.processors.base import STOP, Step

__all__ = ["WireTap"]

log = logging.getLogger("eip.wiretap")


class WireTap:
    """One wire-tap step: ``process`` is the step, ``start``/``stop`` the service."""

    LOG_EVERY = 100

    def __init__(
        self,
        send: Step,
        label: str,
        *,
        copy: bool = True,
        max_pending: int = 1000,
        drain_timeout: float = 30.0,
    ) -> None:
        if max_pending < 1:
            raise ValueError(f"max_pending must be >= 1, got {max_pending}")
        self.label = label
        self.copy = copy
        self.max_pending = max_pending
        self.drain_timeout = drain_timeout
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self._send = send
        self._queue: deque[Exchange] = deque()
        self._worker: asyncio.Task[None] | None = None
        self._sending = False

    @property
    def pending(self) -> int:
        """Copies waiting to be sent (not counting the one being sent)."""
        return len(self._queue)

    def process(self, exchange: Exchange) -> None:
        queue = self._queue
        if len(queue) >= self.max_pending:
            self._drop()
            return
        if self.copy:
            tap = exchange.copy()
            tap.pattern = ExchangePattern.IN_ONLY
            tap.original = exchange.original
        else:
            tap = Exchange(exchange.body)
            tap.route_id = exchange.route_id
            tap.trace_context = exchange.trace_context
        queue.append(tap)
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(
                self._drain(), name=f"wire_tap({self.label})"
            )

    def _drop(self) -> None:
        self.dropped += 1
        if self.dropped % self.LOG_EVERY == 1 or self.LOG_EVERY == 1:
            log.warning(
                "wire tap to %s is %d copies behind: dropped %d so far",
                self.label,
                self.max_pending,
                self.dropped,
            )

    async def _drain(self) -> None:
        queue = self._queue
        try:
            while queue:
                await self._send_one(queue.popleft())
        finally:
            self._worker = None

    async def _send_one(self, tap: Exchange) -> None:
        self._sending = True
        try:
            result = self._send(tap)
            if result is not None and result is not STOP:
                await result
        except Exception as exc:
            tap.exception = exc
            self.failed += 1
            log.warning("wire tap to %s failed: %s: %s", self.label, type(exc).__name__, exc)
        else:
            self.sent += 1
        finally:
            self._sending = False
        done = tap.done()
        if done is not None:
            await done

    async def start(self) -> None:
        """Nothing to prepare: the worker starts with the first copy."""

    async def stop(self) -> None:
        """Wait for queued copies to be sent (up to ``drain_timeout``), then drop the rest."""
        worker = self._worker
        if worker is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(worker), self.drain_timeout)
        except TimeoutError:
            lost = len(self._queue) + self._sending  # the copy being sent is lost too
            self._queue.clear()
            self.dropped += lost
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
            log.warning(
                "wire tap to %s: %d queued copies dropped at shutdown after %.1fs",
                self.label,
                lost,
                self.drain_timeout,
            )

    def __repr__(self) -> str:
        return f"WireTap({self.label!r}, pending={self.pending}, dropped={self.dropped})"
