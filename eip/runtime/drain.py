"""Draining at shutdown: wait until no exchange is in flight, and say what is waited for.

A part of :meth:`eip.runtime.context.Context.stop`, kept apart so the context stays short.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Collection
from typing import TYPE_CHECKING

from eip.clock import Clock

if TYPE_CHECKING:
    from eip.runtime.route import Route

__all__ = ["drain_status", "quiesce"]

log = logging.getLogger("eip.context")


async def quiesce(
    routes: Collection[Route], deadline: float, interval: float, clock: Clock
) -> bool:
    """Wait until no route has exchanges in flight and no buffered consumer has a backlog.

    While it waits it says what for: at once, then every ``interval`` seconds (the context's
    ``drain_log_interval``): routes, exchanges in flight, those waiting in a redelivery
    backoff. A backoff is not cut short (Camel's default too): the exchange is redelivered if
    that happens within the shutdown timeout, and is otherwise aborted with the rest,
    unacknowledged.
    """
    began = time.monotonic()
    next_report = began
    reported = False
    while True:
        busy = any(r.inflight or (r.consumer is not None and r.consumer.backlog) for r in routes)
        now = time.monotonic()
        if not busy:
            if reported:
                log.info("drained in %.1fs", now - began)
            return True
        if now >= deadline:
            return False
        if now >= next_report:
            log.info(
                "draining (%.0fs left of the shutdown timeout): %s",
                deadline - now,
                drain_status(routes, clock, deadline - now),
            )
            reported = True
            next_report = now + interval
        await asyncio.sleep(0.005)


def drain_status(routes: Collection[Route], clock: Clock, left: float) -> str:
    """What shutdown waits for, per route: in flight, queued, in redelivery backoff."""
    now = clock.time()
    parts = []
    for route in routes:
        backlog = route.consumer.backlog if route.consumer is not None else 0
        if not route.inflight and not backlog:
            continue
        text = f"route {route.id}: {route.inflight} in flight"
        if backlog:
            text += f", {backlog} queued"
        backoffs = sorted(route.errors.backoffs.values(), key=lambda b: b.due)
        if backoffs:
            first = backoffs[0]
            text += f", {len(backoffs)} in redelivery backoff ({first.describe(now)}"
            if first.due - now > left:
                text += ", after the shutdown timeout: it will be aborted"
            text += ", ..." if len(backoffs) > 1 else ""
            text += ")"
        parts.append(text)
    return "; ".join(parts) or "nothing"
