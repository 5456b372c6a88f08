"""Backoff and the self-healing loop that every RabbitMQ endpoint runs.

An endpoint (consumer or producer) is *attached* when it has an open channel with its
topology declared (and, for a consumer, a live subscription). Anything that detaches it - the
connection dropping, the broker closing the channel (a 406 on a publish, a 404 on a passive
declare, a ``consumer_timeout``), the broker cancelling the consumer (its queue deleted or
failed over), or an attach that failed after a reconnect - calls :meth:`Recovery.trigger`.
One task then waits for the connection, tries to attach again (``attach`` must be
idempotent: it redoes only what is missing), and on failure logs the
reason and tries again after a backoff (exponential with jitter, capped), for as long as the
endpoint runs. Attaching is never abandoned, and an endpoint heals without touching the
connection or the other endpoints on it.

``problem`` says why the endpoint is detached, for readiness checks and logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from eip.components.rabbitmq.client import AmqpConnection
    from eip.components.rabbitmq.link import BrokerLink

__all__ = ["Backoff", "Recovery"]

log = logging.getLogger("eip.rabbitmq")


class Backoff:
    """``initial`` doubling up to ``maximum``, each delay spread by +/- ``jitter`` (a
    fraction), so that endpoints and instances that failed together do not retry together."""

    def __init__(self, initial: float, maximum: float, jitter: float) -> None:
        self.initial = initial
        self.maximum = max(maximum, initial)
        self.jitter = jitter
        self._next = initial

    def next(self) -> float:
        delay = self._next
        self._next = min(delay * 2, self.maximum)
        if self.jitter:
            delay *= random.uniform(1 - self.jitter, 1 + self.jitter)
        return delay

    def reset(self) -> None:
        self._next = self.initial


class Recovery:
    """Re-attaches one endpoint whenever it was detached, until :meth:`stop`."""

    def __init__(
        self,
        name: str,
        link: BrokerLink,
        attach: Callable[[AmqpConnection], Awaitable[None]],
        backoff: Backoff,
    ) -> None:
        self.name = name
        self.link = link
        self._attach = attach
        self._backoff = backoff
        self._task: asyncio.Task[None] | None = None
        self._stopped = False
        self._again = False
        self.problem: str | None = None
        self.recoveries = 0

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def trigger(self, reason: str) -> None:
        """The endpoint is detached because of ``reason``: heal it in the background."""
        if self._stopped:
            return
        self.problem = reason
        if self.running:
            self._again = True  # detached again while attaching: check once more after
            return
        log.warning("rabbitmq %s detached (%s); recovering", self.name, reason)
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"rabbitmq-recovery {self.name}"
        )

    async def _run(self) -> None:
        while not self._stopped:
            self._again = False
            try:
                await self._attach(await self.link.wait_open())
            except Exception as exc:
                delay = self._backoff.next()
                self.problem = f"{type(exc).__name__}: {exc}"
                log.warning(
                    "rabbitmq %s: attaching failed (%s); retrying in %.2fs",
                    self.name,
                    self.problem,
                    delay,
                )
                await asyncio.sleep(delay)
                continue
            if self._again:
                continue  # ``attach`` is idempotent: it only redoes what was lost
            self._backoff.reset()
            self.problem = None
            self.recoveries += 1
            log.info("rabbitmq %s recovered (#%d)", self.name, self.recoveries)
            return

    async def stop(self) -> None:
        self._stopped = True
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
