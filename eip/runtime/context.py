"""The Context (Camel's CamelContext): components, routes and their lifecycle.

Start compiles every route first, so a bad route fails before anything runs; then it starts
components, producers and finally consumers, internal ones (``direct:``, ``seda:``) before the
ones that bring messages in. "Started" means ready: each ``start`` returns when its service can
take work.

Stop is graceful: consumers stop taking new messages, in-flight exchanges drain (seda queues
are emptied) within ``shutdown_timeout``, then producers and components stop in reverse order.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from eip.components.base import Component, EndpointSpec, Producer, build_spec, parse_uri
from eip.dsl.builder import RouteBuilder
from eip.dsl.compiler import compile_route
from eip.dsl.model import EndpointRef, RouteModel
from eip.errors import LifecycleError, RouteDefinitionError, redact_uri
from eip.runtime.clock import Clock, SystemClock
from eip.runtime.route import Route, RouteStatus, Service
from eip.tracing import Tracing

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

    from eip.components.mock import MockEndpoint
    from eip.runtime.template import ProducerTemplate

__all__ = ["Context"]

log = logging.getLogger("eip.context")

BUILTIN_COMPONENTS = {
    "direct": "eip.components.direct:DirectComponent",
    "seda": "eip.components.seda:SedaComponent",
    "mock": "eip.components.mock:MockComponent",
    "log": "eip.components.log:LogComponent",
    "timer": "eip.components.timer:TimerComponent",
    "cron": "eip.components.timer:CronComponent",
    "file": "eip.components.file:FileComponent",
    "rabbitmq": "eip.components.rabbitmq:RabbitMQComponent",
}


class Context:
    """Holds components and routes, and runs them."""

    def __init__(
        self,
        *,
        name: str = "eip",
        clock: Clock | None = None,
        shutdown_timeout: float = 30.0,
        tracer_provider: TracerProvider | None = None,
        tracing: bool | None = None,
    ) -> None:
        self.name = name
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.shutdown_timeout = shutdown_timeout
        self._tracer_provider = tracer_provider
        self._tracing_flag = tracing
        self.tracing = Tracing(tracer_provider, enabled=False)
        self._component_types: dict[str, str | type[Component]] = dict(BUILTIN_COMPONENTS)
        self._components: dict[str, Component] = {}
        self._producers: dict[str, Producer] = {}
        self._started_producers: list[Producer] = []
        self._ready_producers: dict[EndpointRef, Producer] = {}
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

    def add_component(self, component: type[Component], scheme: str | None = None) -> None:
        """Register a component class for its scheme (or ``scheme``)."""
        self._component_types[scheme or component.scheme] = component

    def component(self, scheme: str) -> Component:
        """The component for ``scheme``, created on first use."""
        existing = self._components.get(scheme)
        if existing is not None:
            return existing
        kind = self._component_types.get(scheme)
        if kind is None:
            raise RouteDefinitionError(
                f"unknown endpoint scheme '{scheme}:'",
                valid=sorted(self._component_types),
            )
        if isinstance(kind, str):
            module_name, _, class_name = kind.partition(":")
            kind = getattr(importlib.import_module(module_name), class_name)
            self._component_types[scheme] = kind
        assert isinstance(kind, type)
        component = kind(self)
        self._components[scheme] = component
        return component

    def resolve_endpoint(
        self, ref: EndpointRef, *, route_id: str | None = None, step: str | None = None
    ) -> tuple[Component, EndpointSpec]:
        """Parse and validate an endpoint; errors name the route and step."""
        try:
            if isinstance(ref, str):
                scheme, sep, _ = ref.partition(":")
                if not sep or not scheme:
                    raise RouteDefinitionError(
                        f"endpoint '{redact_uri(ref)}' has no scheme (expected scheme:path?options)"
                    )
                component = self.component(scheme)
                spec = parse_uri(ref, component.spec_type)
            elif isinstance(ref, EndpointSpec):
                component = self.component(ref.scheme)
                spec = ref
            else:
                raise RouteDefinitionError(
                    f"an endpoint is a URI string or an endpoint spec, got {type(ref).__name__}"
                )
            try:
                component.validate(spec)
            except ValueError as exc:
                raise RouteDefinitionError(f"endpoint {redact_uri(spec.uri)}: {exc}") from None
        except RouteDefinitionError as exc:
            exc.route_id = exc.route_id or route_id
            exc.step = exc.step or step
            raise
        return component, spec

    def spec(self, scheme: str, **options: Any) -> EndpointSpec:
        """Build a typed endpoint spec from Python values (``context.spec("seda", name="x")``)."""
        component = self.component(scheme)
        return build_spec(component.spec_type, options, f"{scheme}:")

    def producer_for(
        self, ref: EndpointRef, *, route_id: str | None = None, step: str | None = None
    ) -> Producer:
        """The shared producer for an endpoint (one per canonical URI)."""
        component, spec = self.resolve_endpoint(ref, route_id=route_id, step=step)
        key = spec.uri
        producer = self._producers.get(key)
        if producer is None:
            producer = component.create_producer(spec)
            producer.uri = redact_uri(key)
            self._producers[key] = producer
        return producer

    async def producer(self, ref: EndpointRef) -> Producer:
        """A started producer, for code outside routes (the producer template)."""
        producer = self._ready_producers.get(ref)
        if producer is not None:
            return producer
        producer = self.producer_for(ref)
        if producer not in self._started_producers:
            await self._start_component_of(ref)
            await producer.start()
            self._started_producers.append(producer)
        self._ready_producers[ref] = producer
        return producer

    def mock(self, name: str) -> MockEndpoint:
        """The mock endpoint ``mock:name`` (created if needed), for test expectations."""
        from eip.components.mock import MockComponent

        component = self.component("mock")
        assert isinstance(component, MockComponent)
        return component.endpoint(name)

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
        return True

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
        try:
            for route in routes:
                if self.tracing.enabled:
                    route.dispatch = self.tracing.traced_dispatch(route)
                self.routes[route.id] = route
            for component in list(self._components.values()):
                await self._start_component(component)
            for producer in list(self._producers.values()):
                await producer.start()
                self._started_producers.append(producer)
            self.started = True
            for route in routes:
                for service in route.services:
                    if any(service is started for started in self._started_services):
                        continue  # one repository shared by several steps starts once
                    await service.start()
                    self._started_services.append(service)
            for route in sorted(routes, key=self._start_rank):
                if route.model.auto_startup:
                    await self._start_route(route)
        except BaseException:
            self.started = True
            await self.stop(timeout=1.0)
            raise
        log.info(
            "context %s started %d route(s) in %.3fs",
            self.name,
            len(self._start_order),
            time.perf_counter() - began,
        )

    def _start_rank(self, route: Route) -> int:
        component, _ = self.resolve_endpoint(route.model.source)
        return 0 if getattr(component, "internal", False) else 1

    async def _start_component_of(self, ref: EndpointRef) -> None:
        component, _ = self.resolve_endpoint(ref)
        await self._start_component(component)

    async def _start_component(self, component: Component) -> None:
        if component.scheme not in self._started_components:
            self._started_components.add(component.scheme)
            await component.start()

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
                f"route '{route.id}' could not start its consumer {route.source_uri}: {exc}"
            ) from exc
        route.status = RouteStatus.STARTED
        self._start_order.append(route.id)
        log.info("route %s started (from %s)", route.id, route.source_uri)

    async def start_route(self, route_id: str) -> None:
        route = self._route(route_id)
        if route.status is not RouteStatus.STARTED:
            await self._start_route(route)

    async def stop_route(self, route_id: str, timeout: float | None = None) -> None:
        """Stop one route: its consumer stops taking messages, then in-flight ones drain."""
        route = self._route(route_id)
        if route.status is not RouteStatus.STARTED:
            return
        route.status = RouteStatus.STOPPING
        deadline = time.monotonic() + (self.shutdown_timeout if timeout is None else timeout)
        await self._stop_consumer(route, deadline)
        self._start_order.remove(route_id)

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
        deadline = time.monotonic() + (self.shutdown_timeout if timeout is None else timeout)
        order = [self.routes[r] for r in reversed(self._start_order)]
        for route in order:
            route.status = RouteStatus.STOPPING
            if route.consumer is not None and not route.consumer.stops_after_drain:
                await _stop_quietly(route)
        if not await self._quiesce(deadline):
            busy = {r.id: r.inflight for r in order if r.inflight}
            log.warning("shutdown timeout: exchanges still in flight per route: %s", busy)
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
        """Wait until no route has exchanges in flight and no buffered consumer has a backlog."""
        while True:
            busy = any(
                r.inflight or (r.consumer is not None and r.consumer.backlog)
                for r in self.routes.values()
            )
            if not busy:
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.005)

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
