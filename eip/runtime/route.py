"""A running route: its consumer, its compiled pipeline and its in-flight bookkeeping."""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from eip.message import Exchange
from eip.processors.base import STOP

if TYPE_CHECKING:
    from eip.components.base import Consumer
    from eip.dsl.model import RouteModel
    from eip.processors.error_handler import ErrorHandling
    from eip.processors.pipeline import Pipeline
    from eip.runtime.supervisor import StartWait

__all__ = ["Route", "RouteStatus", "Service"]

log = logging.getLogger("eip.route")


class Service(Protocol):
    """A stateful part of a compiled step (a worker task, a timeout checker, a store).

    ``start`` runs before the route's consumer starts; ``stop`` runs once the context has
    stopped intake and drained in-flight exchanges, and may still route exchanges (an
    aggregator completing its open groups) before internal endpoints stop.
    """

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class RouteStatus(enum.Enum):
    STOPPED = "stopped"
    STARTING = "starting"
    STARTED = "started"
    STOPPING = "stopping"
    #: Intake paused (``suspend``): the consumer takes no new messages, the route keeps its
    #: producers and services, and ``resume`` continues it (Camel's suspended route).
    SUSPENDED = "suspended"


class Route:
    """What the context runs for one route model.

    ``dispatch`` is the entry point for consumers: it runs the pipeline and returns None when
    the exchange finished synchronously, or an awaitable. It raises the exchange's exception
    when routing failed, after setting it on the exchange. Completing the exchange's unit of
    work is the caller's job (see :func:`eip.components.base.complete`).
    """

    def __init__(self, model: RouteModel, pipeline: Pipeline, errors: ErrorHandling) -> None:
        self.model = model
        self.id = model.route_id
        self.pipeline = pipeline
        self.errors = errors
        self.consumer: Consumer | None = None
        self.services: list[Service] = []
        self.status = RouteStatus.STOPPED
        self.inflight = 0
        self.exchanges_total = 0
        self.exchanges_failed = 0
        #: Exchanges that suspended mid-route, and since when (``time.monotonic()``), for
        #: ``GET /routes/{id}/inflight``; one that completes synchronously never lands here.
        self.inflight_since: dict[Exchange, float] = {}
        #: Set while the context's supervisor retries starting this route (supervised start).
        self.start_wait: StartWait | None = None
        self._idle: asyncio.Event | None = None
        self._needs_original = errors.needs_original_message
        self._run = pipeline.run
        self.dispatch: Callable[[Exchange], Any] = self._dispatch

    @property
    def source_uri(self) -> str:
        return self.model.source_uri

    @property
    def waiting(self) -> str | None:
        """Why the route waits to start, how often it was tried and when it is tried next
        (``waiting to start (attempt 3, next in 4s): cannot connect to RabbitMQ at ...``), or
        None: for readiness and the control API (see :mod:`eip.runtime.supervisor`)."""
        wait = self.start_wait
        return None if wait is None else wait.describe()

    def _dispatch(self, exchange: Exchange) -> Any:
        # ``inflight`` only counts exchanges that suspend: one that completes synchronously
        # cannot be observed half-done by anybody else on the loop.
        self.exchanges_total += 1
        if exchange.route_id is None:
            exchange.route_id = self.id
        if self._needs_original and exchange.original is None:
            exchange.original = exchange.snapshot()
        result = self._run(exchange)
        if result is None:
            return None
        if result is STOP:
            exchange.route_stop = False
            return None
        self.inflight += 1
        return self._finish(exchange, result)

    async def _finish(self, exchange: Exchange, pending: Any) -> None:
        since = self.inflight_since
        since[exchange] = time.monotonic()
        try:
            await pending
        except BaseException as exc:
            self.exchanges_failed += 1
            exchange.exception = exc
            raise
        finally:
            exchange.route_stop = False
            since.pop(exchange, None)
            self.leave()

    def leave(self) -> None:
        """One exchange (or completion) less in flight."""
        self.inflight -= 1
        if self._idle is not None and self.inflight == 0:
            self._idle.set()

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until no exchange is in flight; False if ``timeout`` ran out first."""
        if self.inflight == 0:
            return True
        self._idle = asyncio.Event()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return self.inflight == 0
        finally:
            self._idle = None
        return True

    def __repr__(self) -> str:
        return f"Route({self.id!r}, from={self.source_uri!r}, status={self.status.value})"
