"""A running route: its consumer, its compiled pipeline and its in-flight bookkeeping."""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from bisect import bisect_left
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

from eip.message import Exchange
from eip.processors.base import Step
from eip.processors.fuse import Entry, fuse

if TYPE_CHECKING:
    from eip.components.base import Consumer
    from eip.dsl.model import RouteModel
    from eip.processors.error_handler import ErrorHandling
    from eip.processors.pipeline import Pipeline
    from eip.runtime.metrics import RouteTimings
    from eip.runtime.supervisor import StartWait
    from eip.tracing import InlineTrace

#: How a suspended exchange is timed: ``timed(pending, timings, started, clock)``.
Timed = Callable[[Awaitable[Any], "RouteTimings", float, Callable[[], float]], Awaitable[Any]]

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
        self._trace: InlineTrace | None = None
        self._timing: tuple[RouteTimings, Timed] | None = None
        self._generated: Step | None = None
        #: The route's own dispatch (untraced, untimed): see :meth:`_entry`.
        self.own_dispatch: Step = self._entry()
        self.dispatch: Step = self.own_dispatch

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

    def _entry(self) -> Step:
        """Generate ``dispatch``: the route's bookkeeping fused with its top pipeline into one
        function (:class:`eip.processors.fuse.Entry`), so an exchange that completes
        synchronously costs no call of the route's own. It does what this would::

            def dispatch(exchange):
                self.exchanges_total += 1
                if exchange.route_id is None:
                    exchange.route_id = self.id
                if self._needs_original and exchange.original is None:
                    exchange.original = exchange.snapshot()
                result = self.pipeline.run(exchange)
                if result is None:
                    return None
                if result is STOP:
                    exchange.route_stop = False
                    return None
                self.inflight += 1  # only exchanges that suspend count as in flight
                return self._finish(exchange, result)

        With a trace (:meth:`trace_inline`) each exchange runs in its route span, and with
        timings (:meth:`time_inline`) it is timed, the timing outermost: what the tracing and
        metrics wrappers do, without their calls.
        """
        timing = self._timing
        if timing is None:
            generated = self._fuse(None, timed=None)
        else:
            # Two functions from one pipeline: the timed one, and the untimed one every
            # exchange enters, which hands one in ``mask + 1`` to the timed one.
            timed = self._fuse(timing, timed=None)
            generated = self._fuse(None, timed=timed)
            generated.eip_timed = timed  # type: ignore[attr-defined]  # for debugging, tests
        self._generated = generated
        return generated

    def _fuse(self, timing: tuple[RouteTimings, Timed] | None, timed: Step | None) -> Step:
        """One generated dispatch: timed when ``timing`` is given; with ``timed`` (the timed
        twin), the untimed entry that counts the exchange and hands the sampled ones (by the
        route's :class:`RouteTimings` mask) to the twin, which then counts nothing itself."""
        pipeline = self.pipeline
        run_slow = pipeline._slow
        finish = self._finish
        trace = self._trace
        clock = time.perf_counter

        def suspend(exchange: Exchange, index: int, pending: Any, error: Any, *held: Any) -> Any:
            # ``held``: the timing's start, then the trace's span and parent (see slow_args)
            self.inflight += 1
            result: Any = finish(exchange, run_slow(exchange, index, pending, error))
            if trace is not None:
                result = trace.wrap(exchange, held[-2], held[-1], result)
            if timing is not None:
                timings, time_pending = timing
                result = time_pending(result, timings, held[0], clock)
            return result

        # Names end in "_" so that they cannot meet the names of the steps' own code.
        prologue = ["route_.exchanges_total += 1"] if timing is None else []
        values: dict[str, Any] = {"route_": self, "route_id_": self.id}
        if timed is not None:
            assert self._timing is not None
            prologue += ["if not route_.exchanges_total & sampling_.mask:", "    return timed_(ex)"]
            values.update(sampling_=self._timing[0], timed_=timed)
        traced: list[str] = []
        route_lines = ["if ex.route_id is None:", "    ex.route_id = route_id_"]
        if self._needs_original:
            route_lines += ["if ex.original is None:", "    ex.original = ex.snapshot()"]
        final: list[str] = []
        failed: list[str] = []
        slow_args = ""
        if trace is not None:
            traced = list(trace.prologue)
            final += trace.final
            failed += trace.failed
            values.update(trace.values)
            slow_args = trace.slow_args
        if timing is not None:
            timings = timing[0]
            prologue.insert(0, "started_ = clock_()")
            observe = [
                "elapsed_ = clock_() - started_",
                "weight_ = timings_.mask + 1",  # each timed exchange stands for the skipped
                "if elapsed_ <= first_:",  # most sync exchanges: a compare, not a bisect
                "    counts_[0] += weight_",
                "else:",
                "    counts_[bisect_(bounds_, elapsed_)] += weight_",
                "timings_.sum += elapsed_ * weight_",
                "timings_.adapt(started_)",
            ]
            final += observe
            if failed:
                failed += observe
            values.update(clock_=clock, timings_=timings, counts_=timings.counts)
            values.update(bounds_=timings.bounds, first_=timings.bounds[0], bisect_=bisect_left)
            slow_args = ", started_" + slow_args
        entry = Entry(
            [*prologue, *traced, *route_lines],
            values,
            final=final,
            failed=failed,
            slow_args=slow_args,
        )
        name = f"{self.id}:dispatch" if timing is None else f"{self.id}:timed dispatch"
        return fuse(pipeline.steps, suspend, name, entry=entry)

    def trace_inline(self, trace: InlineTrace) -> bool:
        """Run every exchange in its route span with the span's code inside the generated
        dispatch (see :meth:`eip.tracing.Tracing.traced_dispatch`). Only while ``dispatch``
        is the generated one; False (nothing done) when something wraps it already, for the
        caller to wrap it instead."""
        if self.dispatch is not self._generated:
            return False
        self._trace = trace
        self.dispatch = self._entry()
        return True

    def time_inline(self, timings: RouteTimings, timed: Timed) -> bool:
        """Time every exchange into ``timings`` with the timing inside the generated dispatch
        (no wrapper call; under load one exchange in up to 16 is timed, see
        :class:`~eip.runtime.metrics.RouteTimings`, and the others cost a test and a jump).
        Only while ``dispatch`` is the generated one; False (nothing done) when something
        wraps it already (a traced route's dispatch when tracing is not inline, an audit), for
        the caller to wrap it instead."""
        if self.dispatch is not self._generated:
            return False
        self._timing = (timings, timed)
        self.dispatch = self._entry()
        return True

    @property
    def dispatch_is_fused(self) -> bool:
        """True while ``dispatch`` is the route's generated one (nothing wraps it): a consumer
        may then rely on the last step having run when it returns None."""
        return self.dispatch is self._generated

    def resume_failed(self, exchange: Exchange, index: int, error: Exception) -> Awaitable[None]:
        """Finish an exchange whose top-level step ``index`` failed after the route returned
        (a send settled later, by its publisher confirm): the route's error handling runs
        from that step exactly as if the step had raised ``error``; in flight until done."""
        self.inflight += 1
        return self._finish(exchange, self.pipeline._slow(exchange, index, None, error))

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
