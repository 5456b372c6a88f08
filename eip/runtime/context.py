"""The Context (Camel's CamelContext): components, routes and their lifecycle.

Start compiles every route first, so a bad route fails before anything runs; then it starts
components, producers and finally consumers, internal ones (``direct:``, ``seda:``) before the
ones that bring messages in. "Started" means ready: each ``start`` returns when its service can
take work.

Stop is graceful: consumers stop taking new messages, in-flight exchanges drain (seda queues
are emptied) within ``shutdown_timeout``, then producers and components stop in reverse order.

A start failure fails the start, unless ``supervise=True`` (``eip run``): then a route whose
consumer or producer cannot start yet (an unreachable broker) waits and is retried in the
background while the others run (see :mod:`eip.runtime.supervisor`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from eip.clock import Clock, SystemClock
from eip.components.base import Component, Producer
from eip.dsl.builder import RouteBuilder
from eip.dsl.compiler import compile_route
from eip.dsl.model import RouteModel
from eip.errors import LifecycleError, RouteDefinitionError, redact_uri
from eip.failures import FailureHistory
from eip.runtime.drain import drain_status, quiesce
from eip.runtime.endpoints import BUILTIN_COMPONENTS, EndpointRegistry
from eip.runtime.memory_hops import warn_memory_hops
from eip.runtime.route import Route, RouteStatus, Service
from eip.runtime.supervisor import StartSupervisor, retryable, start_reason
from eip.tracing import Tracing

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

    from eip.runtime.metrics import Metrics
    from eip.runtime.template import ProducerTemplate

__all__ = ["Context"]

log = logging.getLogger("eip.context")


class Context(EndpointRegistry):
    """Holds components and routes, and runs them."""

    #: Seconds between the "draining" log lines while shutdown waits for exchanges.
    drain_log_interval: float = 5.0

    def __init__(
        self,
        *,
        name: str = "eip",
        clock: Clock | None = None,
        shutdown_timeout: float = 30.0,
        tracer_provider: TracerProvider | None = None,
        tracing: bool | None = None,
        metrics: bool = False,
        failure_history: int = 50,
        supervise: bool = False,
        supervise_delay: float = 1.0,
        supervise_max_delay: float = 30.0,
    ) -> None:
        self.name = name
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.shutdown_timeout = shutdown_timeout
        self._tracer_provider = tracer_provider
        self._tracing_flag = tracing
        self.tracing = Tracing(tracer_provider, enabled=False)
        #: Per-route counters and processing-time histograms, when ``metrics=True`` (``eip run``
        #: turns them on: timing costs ~0.3 µs per exchange, so library users opt in).
        self.metrics: Metrics | None = None
        #: The last failed exchanges of each route (see :mod:`eip.failures`).
        self.failures = FailureHistory(failure_history)
        #: With ``supervise=True``, retries the routes that cannot start yet (else None: a
        #: start failure fails the start). Waits ``supervise_delay`` doubling to
        #: ``supervise_max_delay`` seconds between attempts.
        self.supervisor: StartSupervisor | None = None
        if supervise:
            self.supervisor = StartSupervisor(
                self._start_with_producers,
                self._waiting_reason,
                delay=supervise_delay,
                max_delay=supervise_max_delay,
            )
        if metrics:
            from eip.runtime.metrics import Metrics

            self.metrics = Metrics(self)
        self._component_types: dict[str, str | type[Component]] = dict(BUILTIN_COMPONENTS)
        self._components: dict[str, Component] = {}
        self._producers: dict[str, Producer] = {}
        self._producer_users: dict[str, dict[tuple[str, str | None], None]] = {}
        self._started_producers: list[Producer] = []
        self._ready_producers: dict[object, Producer] = {}
        self._started_services: list[Service] = []
        self._started_components: set[str] = set()
        self._models: list[RouteModel] = []
        self.routes: dict[str, Route] = {}
        self._start_order: list[str] = []
        self.started = False
        self._stopping = False

    # -- configuration -------------------------------------------------------------------
    def add_routes(self, *sources: RouteBuilder | RouteModel | Iterable[RouteModel]) -> None:
        """Add routes from builders or models; they are compiled when the context starts."""
        for source in sources:
            if isinstance(source, RouteBuilder):
                models = source.build()
            elif isinstance(source, RouteModel):
                models = [source]
            else:
                models = list(source)
            for model in models:
                if not model.route_id:
                    model.route_id = f"route{len(self._models) + 1}"
                if any(m.route_id == model.route_id for m in self._models):
                    raise RouteDefinitionError(
                        f"route id '{model.route_id}' is used twice", route_id=model.route_id
                    )
                self._models.append(model)
            if self.started:
                raise LifecycleError("add routes before the context starts")

    @property
    def route_models(self) -> list[RouteModel]:
        return list(self._models)

    def template(self) -> ProducerTemplate:
        from eip.runtime.template import ProducerTemplate

        return ProducerTemplate(self)

    # -- lifecycle -----------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        """True when every auto-started route runs and its consumer is connected."""
        if not self.started or self._stopping:
            return False
        for route in self.routes.values():
            if route.model.auto_startup and route.status is not RouteStatus.STARTED:
                return False
            if route.consumer is not None and not route.consumer.ready:
                return False
        return not any(component.problems() for component in self._components.values())

    @property
    def waiting(self) -> dict[str, str]:
        """The routes that wait to start (supervised start), and why: attempts, next try,
        the last error."""
        return {r.id: text for r in self.routes.values() if (text := r.waiting) is not None}

    def validate(self) -> None:
        """Compile every route without starting anything; raises RouteDefinitionError."""
        self._compile_all()

    def _compile_all(self) -> list[Route]:
        routes = [compile_route(self, model) for model in self._models]
        owners: dict[str, str] = {}
        for model in self._models:
            component, spec = self.resolve_endpoint(model.source)
            key = component.exclusive_consumer_key(spec)
            if key is None:
                continue
            if key in owners:
                raise RouteDefinitionError(
                    f"{key} is consumed by routes '{owners[key]}' and '{model.route_id}'; "
                    "only one route may consume it",
                    route_id=model.route_id,
                    step="from",
                )
            owners[key] = model.route_id
        return routes

    async def start(self) -> None:
        if self.started:
            return
        began = time.perf_counter()
        self.tracing = Tracing(self._tracer_provider, enabled=self._tracing_flag)
        routes = self._compile_all()
        warn_memory_hops(self)  # an acknowledged source sending to memory seda: say so once
        try:
            for route in routes:
                if self.tracing.enabled:
                    route.dispatch = self.tracing.traced_dispatch(route)
                if self.metrics is not None:
                    self.metrics.instrument(route)
                route.errors.history = self.failures
                self.routes[route.id] = route
            for component in list(self._components.values()):
                await self._start_component(component)
            failed = await self._start_producers()
            self.started = True
            for route in routes:
                for service in route.services:
                    if any(service is started for started in self._started_services):
                        continue  # one repository shared by several steps starts once
                    await service.start()
                    self._started_services.append(service)
            for route in sorted(routes, key=self._start_rank):
                if route.model.auto_startup:
                    await self._start_or_wait(route, failed)
        except BaseException:
            self.started = True
            await self.stop(timeout=1.0)
            raise
        waiting = self.waiting
        log.info(
            "context %s started %d route(s) in %.3fs%s",
            self.name,
            len(self._start_order),
            time.perf_counter() - began,
            f"; {len(waiting)} wait to start: {', '.join(waiting)}" if waiting else "",
        )

    async def _start_producers(self) -> dict[int, LifecycleError]:
        """Start every producer; with a supervisor, those that cannot start yet are returned
        (by id) with their errors, and the routes that send to them wait."""
        failed: dict[int, LifecycleError] = {}
        for producer in list(self._producers.values()):
            try:
                await self.start_producer(producer)
            except LifecycleError as exc:
                if self.supervisor is None or not retryable(exc) or not self._users_of(producer):
                    raise
                failed[id(producer)] = exc
                continue
            self._started_producers.append(producer)
        return failed

    async def _start_or_wait(self, route: Route, failed: dict[int, LifecycleError]) -> None:
        supervisor = self.supervisor
        if supervisor is not None:
            for producer in self.producers_of(route.id):
                if id(producer) in failed:
                    supervisor.wait(route, failed[id(producer)])
                    return
        try:
            await self._start_route(route)
        except LifecycleError as exc:
            if supervisor is None or not retryable(exc):
                raise
            supervisor.wait(route, exc)

    async def _start_with_producers(self, route: Route) -> None:
        """Start a route: its producers that do not run yet (they failed at start), then it."""
        for producer in self.producers_of(route.id):
            await self.start_producer_once(producer)
        await self._start_route(route)

    def _waiting_reason(self, route: Route, error: BaseException) -> str:
        pending = [p for p in self.producers_of(route.id) if p not in self._started_producers]
        return start_reason(error, pending[0].uri if pending else None)

    def _start_rank(self, route: Route) -> int:
        return self.start_rank(route.model)

    async def _start_route(self, route: Route) -> None:
        component, spec = self.resolve_endpoint(route.model.source, route_id=route.id, step="from")
        route.status = RouteStatus.STARTING
        consumer = component.create_consumer(spec, route)
        route.consumer = consumer
        try:
            await consumer.start()
        except Exception as exc:
            route.status = RouteStatus.STOPPED
            raise LifecycleError(
                f"route '{route.id}' could not start its consumer {route.source_uri}: "
                f"{redact_uri(str(exc))}"
            ) from exc
        route.status = RouteStatus.STARTED
        self._start_order.append(route.id)
        log.info("route %s started (from %s)", route.id, route.source_uri)

    async def start_route(self, route_id: str) -> None:
        """Start one route (and any producer of it that does not run). A route that waits to
        start is tried now; if that fails too, it goes on waiting, and this raises."""
        route = self._route(route_id)
        if route.status is RouteStatus.STARTED:
            return
        supervisor = self.supervisor
        previous = route.start_wait
        if supervisor is not None and supervisor.waits(route):
            await supervisor.forget(route)
        try:
            await self._start_with_producers(route)
        except LifecycleError as exc:
            if supervisor is not None and previous is not None and retryable(exc):
                route.start_wait = previous
                supervisor.wait(route, exc)
            raise

    async def stop_route(self, route_id: str, timeout: float | None = None) -> None:
        """Stop one route: its consumer stops taking messages, then in-flight ones drain. A
        route that waits to start stops waiting."""
        route = self._route(route_id)
        if self.supervisor is not None and self.supervisor.waits(route):
            await self.supervisor.forget(route)
        if route.status is not RouteStatus.STARTED:
            return
        route.status = RouteStatus.STOPPING
        deadline = time.monotonic() + (self.shutdown_timeout if timeout is None else timeout)
        await self._stop_consumer(route, deadline)
        self._start_order.remove(route_id)

    # -- reload (see eip.runtime.reload) ----------------------------------------------------
    async def remove_route(self, route_id: str, timeout: float | None = None) -> int:
        """Stop a route in a running context and forget it: its consumer stops, its in-flight
        exchanges drain (within ``timeout``, default the shutdown timeout), then its services
        and the producers no other route uses stop. Returns how many exchanges were still in
        flight at the deadline and were aborted (unacknowledged: their source redelivers
        them, so they may arrive twice)."""
        route = self._route(route_id)
        if route.status is RouteStatus.SUSPENDED:
            route.status = RouteStatus.STARTED  # stopped as a running route is: it drains
        await self.stop_route(route_id, timeout)
        if route_id in self._start_order:
            self._start_order.remove(route_id)
        aborted = route.inflight
        if route.consumer is not None:
            if aborted:
                await route.consumer.abort()
            try:
                await route.consumer.release()
            except Exception:
                log.exception("releasing the consumer of route %s failed", route_id)
        others = [r for r in self.routes.values() if r is not route]
        for service in reversed(route.services):
            shared = any(service is s for r in others for s in r.services)
            started = any(service is s for s in self._started_services)
            if shared or not started:
                continue
            self._started_services = [s for s in self._started_services if s is not service]
            try:
                await service.stop()
            except Exception:
                log.exception("stopping service %r of route %s failed", service, route_id)
        await self._release_producers(route_id)
        del self.routes[route_id]
        self._models = [m for m in self._models if m.route_id != route_id]
        log.info("route %s removed", route_id)
        return aborted

    async def _release_producers(self, route_id: str) -> None:
        """Forget that ``route_id`` sends to its producers; stop those nobody else uses."""
        template = set(map(id, self._ready_producers.values()))
        for key in list(self._producer_users):
            users = self._producer_users[key]
            for user in [u for u in users if u[0] == route_id]:
                del users[user]
            producer = self._producers.get(key)
            if users or producer is None or id(producer) in template:
                continue
            del self._producer_users[key]
            del self._producers[key]
            if producer in self._started_producers:
                self._started_producers.remove(producer)
                try:
                    await producer.stop()
                except Exception:
                    log.exception("stopping producer %s failed", producer.uri)

    async def add_route(self, model: RouteModel) -> Route:
        """Compile a route into a running context and start it (its producers and services
        first; under supervision a route that cannot start yet waits, as at start)."""
        if not self.started or self._stopping:
            raise LifecycleError("add_route needs a started context (use add_routes before)")
        if model.route_id in self.routes:
            raise RouteDefinitionError(
                f"route id '{model.route_id}' is used twice", route_id=model.route_id
            )
        route = compile_route(self, model)
        if self.tracing.enabled:
            route.dispatch = self.tracing.traced_dispatch(route)
        if self.metrics is not None:
            self.metrics.instrument(route)
        route.errors.history = self.failures
        self._models.append(model)
        self.routes[route.id] = route
        try:
            await self._start_added(route)
        except BaseException:
            await self.remove_route(route.id, timeout=1.0)
            raise
        return route

    async def _start_added(self, route: Route) -> None:
        for component in list(self._components.values()):
            await self._start_component(component)
        failed: dict[int, LifecycleError] = {}
        for producer in self.producers_of(route.id):
            try:
                await self.start_producer_once(producer)
            except LifecycleError as exc:
                if self.supervisor is None or not retryable(exc):
                    raise
                failed[id(producer)] = exc
        for service in route.services:
            if not any(service is started for started in self._started_services):
                await service.start()
                self._started_services.append(service)
        if route.model.auto_startup:
            await self._start_or_wait(route, failed)

    def order_models(self, route_ids: Iterable[str]) -> None:
        """Put the route models in this order (a reload keeps the files' order)."""
        rank = {route_id: n for n, route_id in enumerate(route_ids)}
        self._models.sort(key=lambda m: rank.get(m.route_id, len(rank)))
        self.routes = {m.route_id: self.routes[m.route_id] for m in self._models}

    def start_rank(self, model: RouteModel) -> int:
        """0 for routes fed by internal endpoints (``direct:``, ``seda:``), else 1: internal
        ones start first and stop last."""
        component, _ = self.resolve_endpoint(model.source)
        return 0 if getattr(component, "internal", False) else 1

    def _route(self, route_id: str) -> Route:
        try:
            return self.routes[route_id]
        except KeyError:
            raise LifecycleError(
                f"no route '{route_id}' (routes: {', '.join(self.routes) or 'none'})"
            ) from None

    async def _stop_consumer(self, route: Route, deadline: float) -> None:
        consumer = route.consumer
        if consumer is not None:
            try:
                await consumer.stop()
            except Exception:
                log.exception("stopping the consumer of route %s failed", route.id)
        if not await route.wait_idle(max(0.0, deadline - time.monotonic())):
            log.warning(
                "route %s stopped with %d exchange(s) still in flight", route.id, route.inflight
            )
        route.status = RouteStatus.STOPPED
        log.info("route %s stopped", route.id)

    async def stop(self, timeout: float | None = None) -> None:
        """Graceful shutdown; see the module docstring for the order."""
        if not self.started or self._stopping:
            return
        self._stopping = True
        if self.supervisor is not None:
            await self.supervisor.cancel()  # no route starts from here on
        deadline = time.monotonic() + (self.shutdown_timeout if timeout is None else timeout)
        order = [self.routes[r] for r in reversed(self._start_order)]
        for route in order:
            route.status = RouteStatus.STOPPING
            if route.consumer is not None and not route.consumer.stops_after_drain:
                await _stop_quietly(route)
        if not await self._quiesce(deadline):
            log.warning(
                "shutdown timeout reached, aborting what is still in flight (unacknowledged "
                "to its source): %s",
                drain_status(self.routes.values(), self.clock, 0.0),
            )
            for route in order:
                if route.consumer is not None:
                    await route.consumer.abort()
        if self._started_services:
            # Stateful steps finish their work (force-complete groups, drain wire taps), which
            # may route more exchanges through internal endpoints: drain those too.
            for service in reversed(self._started_services):
                try:
                    await service.stop()
                except Exception:
                    log.exception("stopping service %r failed", service)
            self._started_services.clear()
            await self._quiesce(deadline)
        for route in order:
            if route.consumer is not None and route.consumer.stops_after_drain:
                await _stop_quietly(route)
            route.status = RouteStatus.STOPPED
            log.info("route %s stopped", route.id)
        self._start_order.clear()
        for producer in reversed(self._started_producers):
            try:
                await producer.stop()
            except Exception:
                log.exception("stopping producer %s failed", producer.uri)
        self._started_producers.clear()
        self._ready_producers.clear()
        for component in reversed(list(self._components.values())):
            if component.scheme not in self._started_components:
                continue
            try:
                await component.stop()
            except Exception:
                log.exception("stopping component %s failed", component.scheme)
        self._started_components.clear()
        self.started = False
        self._stopping = False
        log.info("context %s stopped", self.name)

    async def _quiesce(self, deadline: float) -> bool:
        routes = self.routes.values()
        return await quiesce(routes, deadline, self.drain_log_interval, self.clock)

    async def __aenter__(self) -> Context:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


async def _stop_quietly(route: Route) -> None:
    assert route.consumer is not None
    try:
        await route.consumer.stop()
    except Exception:
        log.exception("stopping the consumer of route %s failed", route.id)
