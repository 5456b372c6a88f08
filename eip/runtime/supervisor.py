"""Supervised start (Camel's supervising route controller): a route that cannot start now is
retried in the background, while every other route runs.

``Context(supervise=True)`` (what ``eip run`` uses) turns it on; library use keeps failing fast.
At start, a route *waits* when its consumer cannot start (an unreachable broker: a
:class:`~eip.errors.LifecycleError` from the consumer's start) or when a producer it sends to
cannot start (the routes that send to it wait, and start once it does). A waiting route is
retried with backoff: ``delay`` doubling up to ``max_delay``, each delay spread by ``jitter``
(a fraction, downwards only, so the cap holds), and every attempt that fails logs one WARNING
line. While it waits, its status is ``starting`` and :attr:`Route.waiting
<eip.runtime.route.Route.waiting>` says why, for readiness and the control API::

    waiting to start (attempt 3, next in 4s): cannot connect to RabbitMQ at amqp://...

What stays fatal, as without supervision: an invalid route (a
:class:`~eip.errors.RouteDefinitionError`, found at compile or at start, such as a WSDL without
the operation) and a fault that is no route's (an HTTP address another process holds): waiting
would not cure those. A retry that meets one gives up: the route stays stopped, and its
``waiting`` text says so. Stopping the route, or the context, cancels its retries.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from eip.errors import ExchangeError, LifecycleError, RouteDefinitionError, redact_uri
from eip.runtime.route import RouteStatus

if TYPE_CHECKING:
    from eip.runtime.route import Route

__all__ = ["StartSupervisor", "StartWait", "retryable", "start_reason"]

log = logging.getLogger("eip.context")


def retryable(error: BaseException) -> bool:
    """Whether a start failure may heal by itself: a LifecycleError whose causes hold no
    invalid route and no fault of the machine (an address in use)."""
    if not isinstance(error, LifecycleError):
        return False
    seen = 0
    current: BaseException | None = error
    while current is not None and seen < 16:
        if isinstance(current, RouteDefinitionError) or getattr(
            current, "route_independent", False
        ):
            return False
        current = current.__cause__
        seen += 1
    return True


def start_reason(error: BaseException, producer: str | None = None) -> str:
    """The reason a start failed, short: the cause's own words (``cannot connect to RabbitMQ
    at ...``), after the ``producer`` it was for when it was one; credentials redacted."""
    cause = error.__cause__ if isinstance(error, LifecycleError) else None
    if cause is None:
        text = str(error)
    else:
        own = Exception.__str__(cause) if isinstance(cause, ExchangeError) else str(cause)
        text = own or type(cause).__name__
    if producer:
        text = f"its producer {producer}: {text}"
    return redact_uri(" ".join(text.split()))


class StartWait:
    """What the supervisor knows of one waiting route: attempts so far, the last error, when
    it tries next, and whether it gave up (a failure that waiting cannot cure)."""

    __slots__ = ("attempts", "gave_up", "next_at", "reason", "task")

    def __init__(self, reason: str) -> None:
        self.attempts = 1
        self.reason = reason
        self.next_at = 0.0
        self.gave_up = False
        self.task: asyncio.Task[None] | None = None

    def describe(self) -> str:
        if self.gave_up:
            return f"failed to start (attempt {self.attempts}, not retried): {self.reason}"
        left = max(0.0, self.next_at - asyncio.get_running_loop().time())
        when = f"{left:.1f}s" if left < 10 else f"{left:.0f}s"
        return f"waiting to start (attempt {self.attempts}, next in {when}): {self.reason}"


class StartSupervisor:
    """Retries starting the waiting routes of one context, each in a task of its own."""

    def __init__(
        self,
        start: Callable[[Route], Awaitable[None]],
        reason: Callable[[Route, BaseException], str],
        *,
        delay: float = 1.0,
        max_delay: float = 30.0,
        jitter: float = 0.2,
    ) -> None:
        if delay <= 0 or max_delay < delay:
            raise ValueError(f"need 0 < delay <= max_delay, got {delay} and {max_delay}")
        if not 0 <= jitter < 1:
            raise ValueError(f"jitter is a fraction in [0, 1), got {jitter}")
        self._start = start
        self._reason = reason
        self.delay = delay
        self.max_delay = max_delay
        self.jitter = jitter
        self.routes: dict[str, Route] = {}

    def backoff(self, attempts: int) -> float:
        """The wait after ``attempts`` failed attempts: doubling from ``delay``, capped."""
        base = min(self.max_delay, self.delay * 2.0 ** min(attempts - 1, 60))
        return base * (1 - random.uniform(0, self.jitter)) if self.jitter else base

    def wait(self, route: Route, error: BaseException) -> None:
        """``route`` could not start with ``error``: retry it in the background."""
        wait = route.start_wait
        reason = self._reason(route, error)
        if wait is None:
            wait = route.start_wait = StartWait(reason)
        else:
            wait.attempts += 1
            wait.reason = reason
            wait.gave_up = False
        self.routes[route.id] = route
        self._arm(route, wait)

    def _arm(self, route: Route, wait: StartWait) -> None:
        route.status = RouteStatus.STARTING
        route.consumer = None  # the one that failed to start is not the route's
        delay = self.backoff(wait.attempts)
        wait.next_at = asyncio.get_running_loop().time() + delay
        log.warning(
            "route %s cannot start yet (attempt %d), retrying in %.1fs: %s",
            route.id,
            wait.attempts,
            delay,
            wait.reason,
        )
        wait.task = asyncio.create_task(self._retry(route, wait, delay), name=f"start {route.id}")

    async def _retry(self, route: Route, wait: StartWait, delay: float) -> None:
        await asyncio.sleep(delay)
        try:
            await self._start(route)
        except Exception as exc:
            wait.task = None
            wait.attempts += 1
            wait.reason = self._reason(route, exc)
            if not retryable(exc):
                wait.gave_up = True
                route.status = RouteStatus.STOPPED
                route.consumer = None
                log.error("route %s: start failed, not retrying: %s", route.id, exc)
                return
            self._arm(route, wait)
            return
        wait.task = None
        route.start_wait = None
        self.routes.pop(route.id, None)
        log.info("route %s started after %d failed attempt(s)", route.id, wait.attempts)

    def waits(self, route: Route) -> bool:
        return route.id in self.routes

    async def forget(self, route: Route) -> None:
        """Stop retrying ``route`` (it is stopped, or started by hand); waits for its task."""
        self.routes.pop(route.id, None)
        wait = route.start_wait
        route.start_wait = None
        if wait is not None and wait.task is not None:
            task, wait.task = wait.task, None
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if route.status is not RouteStatus.STARTED:
            route.status = RouteStatus.STOPPED
            route.consumer = None

    async def cancel(self) -> None:
        """Stop every retry (the context stops); returns when their tasks have ended."""
        for route in list(self.routes.values()):
            await self.forget(route)
