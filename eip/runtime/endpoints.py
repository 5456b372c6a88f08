"""Components and endpoints of a context: which scheme is which component, and the shared,
started producer of each endpoint (a part of :class:`eip.runtime.context.Context`)."""

from __future__ import annotations

import asyncio
import importlib
from typing import TYPE_CHECKING, Any

from eip.components.base import Component, EndpointSpec, Producer, build_spec
from eip.dsl.model import EndpointRef
from eip.errors import LifecycleError, RouteDefinitionError, redact_uri

if TYPE_CHECKING:
    from eip.components.mock import MockEndpoint

__all__ = ["BUILTIN_COMPONENTS", "EndpointRegistry"]

BUILTIN_COMPONENTS = {
    "direct": "eip.components.direct:DirectComponent",
    "seda": "eip.components.seda:SedaComponent",
    "mock": "eip.components.mock:MockComponent",
    "log": "eip.components.log:LogComponent",
    "timer": "eip.components.timer:TimerComponent",
    "cron": "eip.components.timer:CronComponent",
    "file": "eip.components.file:FileComponent",
    "rabbitmq": "eip.components.rabbitmq:RabbitMQComponent",
    "http": "eip.components.http:HttpComponent",
    "https": "eip.components.http:HttpsComponent",
    "soap": "eip.components.soap:SoapComponent",
}


class EndpointRegistry:
    """Resolves endpoints to components and specs, and keeps one producer per endpoint."""

    started: bool
    _component_types: dict[str, str | type[Component]]
    _components: dict[str, Component]
    _producers: dict[str, Producer]
    #: For each producer (by canonical URI), the routes and steps that send to it.
    _producer_users: dict[str, dict[tuple[str, str | None], None]]
    _started_producers: list[Producer]
    _ready_producers: dict[EndpointRef, Producer]
    _started_components: set[str]

    def add_component(self, component: type[Component], scheme: str | None = None) -> None:
        """Register a component class for its scheme (or ``scheme``)."""
        self._component_types[scheme or component.scheme] = component

    def components(self) -> list[Component]:
        """The components created so far."""
        return list(self._components.values())

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
                valid_label="valid schemes",
            )
        if isinstance(kind, str):
            module_name, _, class_name = kind.partition(":")
            kind = getattr(importlib.import_module(module_name), class_name)
            self._component_types[scheme] = kind
        assert isinstance(kind, type)
        component = kind(self)  # type: ignore[arg-type]  # self is the Context
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
                spec = component.parse(ref)
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
        if route_id is not None:
            self._producer_users.setdefault(key, {})[(route_id, step)] = None
        return producer

    async def start_producer(self, producer: Producer) -> None:
        """Start one producer; a failure becomes one LifecycleError naming the routes that send
        to it, the endpoint (redacted) and the cause, as a consumer's failure does. An invalid
        route found only at start (a WSDL without the operation) stays a RouteDefinitionError
        (exit code 2 in the CLI)."""
        try:
            await producer.start()
        except RouteDefinitionError:
            raise  # already one line that names what is wrong (the WSDL, the operation)
        except Exception as exc:
            names = [f"'{r}'" + (f" (step {s})" if s else "") for r, s in self._users_of(producer)]
            who = f"route {names[0]}" if len(names) == 1 else f"routes {', '.join(names)}"
            reason = redact_uri(str(exc) or type(exc).__name__)
            raise LifecycleError(
                f"{who if names else 'the producer template'} could not start its producer "
                f"{producer.uri}: {reason}"
            ) from exc

    def _users_of(self, producer: Producer) -> list[tuple[str, str | None]]:
        key = next((k for k, p in self._producers.items() if p is producer), "")
        return list(self._producer_users.get(key, ()))

    def producers_of(self, route_id: str) -> list[Producer]:
        """The producers a route sends to (its steps, its dead letter channel), in the order
        they were made: what must run before the route may start."""
        return [
            self._producers[key]
            for key, users in self._producer_users.items()
            if key in self._producers and any(user[0] == route_id for user in users)
        ]

    async def start_producer_once(self, producer: Producer) -> None:
        """Start ``producer`` unless it runs; callers at the same time (a route's supervised
        retry, a first send of the producer template) wait for one start."""
        locks: dict[int, asyncio.Lock] = self.__dict__.setdefault("_producer_start_locks", {})
        async with locks.setdefault(id(producer), asyncio.Lock()):
            if producer not in self._started_producers:
                await self.start_producer(producer)
                self._started_producers.append(producer)

    async def producer(self, ref: EndpointRef) -> Producer:
        """A started producer, for code outside routes (the producer template)."""
        producer = self._ready_producers.get(ref)
        if producer is not None:
            return producer
        producer = self.producer_for(ref)
        # Many first sends may arrive at once: the producer starts once, the others wait.
        locks: dict[int, asyncio.Lock] = self.__dict__.setdefault("_producer_start_locks", {})
        async with locks.setdefault(id(producer), asyncio.Lock()):
            if producer not in self._started_producers:
                await self._start_component_of(ref)
                await self.start_producer(producer)
                self._started_producers.append(producer)
        self._ready_producers[ref] = producer
        return producer

    def mock(self, name: str) -> MockEndpoint:
        """The mock endpoint ``mock:name`` (created if needed), for test expectations."""
        from eip.components.mock import MockComponent

        component = self.component("mock")
        assert isinstance(component, MockComponent)
        return component.endpoint(name)

    async def _start_component_of(self, ref: EndpointRef) -> None:
        component, _ = self.resolve_endpoint(ref)
        await self._start_component(component)

    async def _start_component(self, component: Component) -> None:
        if component.scheme not in self._started_components:
            self._started_components.add(component.scheme)
            await component.start()
