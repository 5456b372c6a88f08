"""What an operator does to one running route: suspend, resume, trigger, and look in flight.

The control API (:mod:`eip.server.control`) calls these; they take the context, so library
users may too.

**Suspend** stops intake and keeps everything else: the consumer takes no new messages,
exchanges in flight finish, and producers, services and connections stay up, so ``resume``
continues at once. What "no new messages" means depends on the consumer:

- one that can pause in place (``Consumer.pauses_in_place``) does: a ``timer:`` or ``cron:``
  stops firing (fires that fall due meanwhile are skipped; ``trigger`` still runs one);
- any other is stopped, and started again on resume. A RabbitMQ consumer cancels its
  subscription (its unacked messages stay with the broker, which redelivers them if the
  process dies meanwhile); a ``seda:`` route's workers finish their exchange and stop, the
  queue keeps the rest and senders feel its back-pressure; a ``direct:`` route detaches, so
  a send to it fails with ``NoConsumerError`` at once, or waits up to the sender's
  ``timeout`` for the resume; a ``file:`` poller stops polling;
- an HTTP or SOAP route cannot make its clients wait, so it answers ``503`` with
  ``Retry-After: 5`` and ``{"error": "route suspended"}`` (what Camel does) until resumed.

While suspended, ``route.consumer`` is a stand-in (:class:`SuspendedIntake`) for a consumer
that was stopped, so that nothing stops it twice (a RabbitMQ consumer would release its
shared connection twice). Shutdown takes a suspended route down with the rest; a suspended
``seda:`` or ``direct:`` route is started again for that, so its queue drains (its messages
live only in memory) and in-flight exchanges of other routes still find it.

``Context.stop_route`` and ``Context.start_route`` know nothing of suspension: use
:func:`stop_route` and :func:`start_route` here on a route that may be suspended (a suspended
route stops as a started one does; starting a suspended route resumes it).

**Trigger** runs a ``timer:`` or ``cron:`` route now, once, as if its schedule fired, in the
background (the answer does not wait for the run). It is refused while a run is in progress.

A call that does not fit the route's state raises :class:`RouteStateError` (the API's 409),
saying what the state is and what would help.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from eip import headers as H
from eip.components.base import Consumer
from eip.errors import LifecycleError, redact_uri
from eip.runtime.route import Route, RouteStatus

if TYPE_CHECKING:
    from eip.message import Exchange
    from eip.runtime.context import Context

__all__ = [
    "RouteStateError",
    "SuspendedIntake",
    "inflight_exchanges",
    "resume_route",
    "start_route",
    "stop_route",
    "suspend_route",
    "trigger_route",
]

log = logging.getLogger("eip.context")


class RouteStateError(LifecycleError):
    """The route is not in a state the operation applies to (suspend a stopped route,
    resume one that is not suspended, trigger one that is not a timer)."""


class SuspendedIntake(Consumer):
    """Stands in for a consumer that was stopped to suspend its route."""

    def __init__(self, real: Consumer, context: Context) -> None:
        super().__init__(real.route)
        self.real = real
        self.context = context

    async def start(self) -> None:  # pragma: no cover - resume_route starts the real one
        raise LifecycleError(f"route '{self.route.id}' is suspended: resume it")

    async def stop(self) -> None:
        """Nothing to stop (the real one is stopped), except at shutdown: then an internal
        consumer (direct, seda) starts again, for the drain; the context stops it after."""
        real = self.real
        if real.stops_after_drain and self.context._stopping:
            self.route.consumer = real
            await real.resume()

    async def abort(self) -> None:
        await self.real.abort()

    async def release(self) -> None:
        await self.real.release()

    @property
    def backlog(self) -> int:
        return self.real.backlog

    @property
    def ready(self) -> bool:
        return False

    @property
    def problem(self) -> str | None:
        return "route suspended"


_locks: weakref.WeakKeyDictionary[Route, asyncio.Lock] = weakref.WeakKeyDictionary()


def _lock(route: Route) -> asyncio.Lock:
    """One operation at a time per route (a resume must not start a consumer that a
    suspend is still stopping)."""
    lock = _locks.get(route)
    if lock is None:
        lock = _locks[route] = asyncio.Lock()
    return lock


def _route(context: Context, route_id: str) -> Route:
    route = context.routes.get(route_id)
    if route is None:
        known = ", ".join(sorted(context.routes)) or "none"
        raise LifecycleError(f"no route {route_id!r} (routes: {known})")
    return route


def _state(route: Route) -> str:
    waiting = route.waiting
    return f"{route.status.value} ({waiting})" if waiting else route.status.value


async def suspend_route(context: Context, route_id: str) -> Route:
    """Stop the route's intake; in-flight exchanges finish, everything else stays."""
    route = _route(context, route_id)
    async with _lock(route):
        consumer = route.consumer
        if route.status is not RouteStatus.STARTED or consumer is None:
            hint = "" if route.status is RouteStatus.SUSPENDED else "; start it first"
            raise RouteStateError(
                f"route '{route.id}' is {_state(route)}, not started: cannot suspend it{hint}"
            )
        route.status = RouteStatus.SUSPENDED  # HTTP refusals say so from now on
        if not consumer.pauses_in_place:
            route.consumer = SuspendedIntake(consumer, context)
        try:
            await consumer.suspend()
        except Exception as exc:
            route.consumer = consumer
            route.status = RouteStatus.STARTED
            raise LifecycleError(
                f"route '{route.id}' could not suspend its consumer: {redact_uri(str(exc))}"
            ) from exc
    log.info("route %s suspended", route.id)
    return route


async def resume_route(context: Context, route_id: str) -> Route:
    """Take messages again on a suspended route."""
    route = _route(context, route_id)
    async with _lock(route):
        consumer = route.consumer
        if route.status is not RouteStatus.SUSPENDED or consumer is None:
            raise RouteStateError(
                f"route '{route.id}' is {_state(route)}, not suspended: nothing to resume"
            )
        real = consumer.real if isinstance(consumer, SuspendedIntake) else consumer
        route.consumer = real
        try:
            await real.resume()
        except Exception as exc:
            route.consumer = consumer  # still suspended: a later resume tries again
            raise LifecycleError(
                f"route '{route.id}' could not resume its consumer {route.source_uri}: "
                f"{redact_uri(str(exc))}"
            ) from exc
        route.status = RouteStatus.STARTED
    log.info("route %s resumed", route.id)
    return route


async def stop_route(context: Context, route_id: str, timeout: float | None = None) -> Route:
    """``Context.stop_route``, for a suspended route too (it stops as a started one does)."""
    route = _route(context, route_id)
    async with _lock(route):
        if route.status is RouteStatus.SUSPENDED:
            route.status = RouteStatus.STARTED  # stopped as a started route is: it drains
        await context.stop_route(route.id, timeout)
    return route


async def start_route(context: Context, route_id: str) -> Route:
    """``Context.start_route``; a suspended route is resumed."""
    route = _route(context, route_id)
    if route.status is RouteStatus.SUSPENDED:
        return await resume_route(context, route_id)
    async with _lock(route):
        await context.start_route(route.id)
    return route


def trigger_route(context: Context, route_id: str) -> Exchange:
    """Fire a ``timer:`` or ``cron:`` route once now (in the background); the exchange."""
    route = _route(context, route_id)
    scheme = route.source_uri.split(":", 1)[0]
    if scheme not in ("timer", "cron"):
        raise RouteStateError(
            f"route '{route.id}' reads from {redact_uri(route.source_uri)}, not a timer or "
            "cron: only scheduled routes can be triggered"
        )
    trigger: Callable[[], Exchange | None] | None = getattr(route.consumer, "trigger", None)
    usable = route.status in (RouteStatus.STARTED, RouteStatus.SUSPENDED)
    if not usable or trigger is None:
        raise RouteStateError(f"route '{route.id}' is {_state(route)}: start it first")
    exchange = trigger()
    if exchange is None:
        raise RouteStateError(
            f"route '{route.id}' is running already (in flight: {route.inflight}): "
            "trigger it again once that run finished"
        )
    log.info("route %s triggered (exchange %s)", route.id, exchange.id)
    return exchange


def inflight_exchanges(route: Route, limit: int = 1000) -> list[dict[str, Any]]:
    """The exchanges suspended mid-route, oldest first (at most ``limit``): id, message id,
    age in seconds, and the redelivery it waits for, if any. One that finishes synchronously
    is never in flight long enough to list."""
    monotonic = time.monotonic()
    clock_now = route.errors.clock.time()
    backoffs = {b.exchange_id: b for b in route.errors.backoffs.values()}
    oldest = sorted(route.inflight_since.items(), key=lambda item: item[1])[:limit]
    out = []
    for exchange, since in oldest:
        message_id = exchange.headers.get(H.MESSAGE_ID)
        backoff = backoffs.get(exchange.id)
        out.append(
            {
                "exchange_id": exchange.id,
                "message_id": None if message_id is None else str(message_id),
                "age_seconds": round(monotonic - since, 3),
                "redelivery": None if backoff is None else backoff.describe(clock_now),
            }
        )
    return out
