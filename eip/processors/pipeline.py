"""The pipeline: runs compiled steps in order, and is where errors are handled.

This is the per-message hot path. The fast path is ``run``, the steps fused into one generated
function (:mod:`eip.processors.fuse`) that leaves only when a step returns something other
than ``None``. Awaiting and error handling live in ``_slow``, which picks up exactly where the
fast path stopped, so a route of sync steps never creates a coroutine.

Errors are handled at the failing step (as in Camel): the step is redelivered according to the
route's error handling, and when redelivery is exhausted the error handling decides whether the
exchange continues at the next step, stops as handled, or fails. A failure that already went
through error handling in a nested pipeline (a branch, a ``direct:`` sub-route) is marked on
the exchange and only propagates, so it is never redelivered twice.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING, Any

from eip.message import Exchange
from eip.processors.base import STOP, Step
from eip.processors.fuse import fuse

if TYPE_CHECKING:
    from eip.processors.error_handler import ErrorHandling

__all__ = ["Pipeline"]


class Pipeline:
    """A sequence of steps with the route's error handling."""

    __slots__ = ("errors", "labels", "run", "steps")

    def __init__(
        self,
        steps: Sequence[Step],
        labels: Sequence[str],
        errors: ErrorHandling,
        name: str = "pipeline",
    ) -> None:
        self.steps = tuple(steps)
        self.labels = tuple(labels)
        self.errors = errors
        #: The fused fast path (see :mod:`eip.processors.fuse`); same contract as ``__call__``.
        self.run: Step = fuse(self.steps, self._slow, name)

    async def _slow(
        self,
        exchange: Exchange,
        index: int,
        pending: Awaitable[Any] | None,
        error: Exception | None,
    ) -> Any:
        steps = self.steps
        count = len(steps)
        attempt = 0
        while True:
            if error is None:
                try:
                    result = await pending if pending is not None else None
                    while True:
                        if result is STOP:
                            return STOP if exchange.route_stop else None
                        index += 1
                        attempt = 0
                        if index >= count:
                            return None
                        result = steps[index](exchange)
                        if result is not None and result is not STOP:
                            result = await result
                except Exception as exc:
                    error = exc
            # The step at ``index`` failed with ``error``.
            if await self.errors.redeliver(exchange, error, attempt + 1, self.labels[index]):
                attempt += 1
                error = None
                try:
                    pending = steps[index](exchange)
                except Exception as exc:
                    error = exc
                    continue
                if pending is None:
                    pending = _DONE
                elif pending is STOP:
                    return STOP if exchange.route_stop else None
                continue
            outcome = await self.errors.exhausted(exchange, error, self.labels[index], attempt)
            if outcome is STOP:
                return STOP
            # continued: carry on with the next step as if the failing one had succeeded
            error = None
            pending = _DONE
            attempt = 0


class _Done:
    """An already-finished awaitable, so the slow path's loop has one shape."""

    __slots__ = ()

    def __await__(self) -> Any:
        return None
        yield  # pragma: no cover - makes this a generator


_DONE = _Done()
