"""Components and endpoints of a context: which scheme is which component, and the shared,
started producer of each endpoint (a part of :class:`eip.runtime.context.Context`).

An endpoint with property placeholders (``{{erp.url}}/api``, see
:mod:`eip.runtime.properties`) is resolved here, once per endpoint, when its route compiles:
the resolved spec builds the producer or consumer, while the endpoint is shown (the
producer's ``uri``, errors) as written, so a resolved value never appears where a secret
could leak."""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from eip.components.base import Component, EndpointSpec, Producer, build_spec
from eip.config import Config
from eip.dsl.model import EndpointRef, endpoint_text
from eip.errors import LifecycleError, RouteDefinitionError, redact_uri
from eip.message import Exchange
from eip.runtime.properties import PlaceholderError, Properties, has_placeholders
from eip.runtime.secrets import scrub, scrub_exception

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
    #: Started producers of the producer template, by endpoint (see ``_key``).
    _ready_producers: dict[object, Producer]
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

    @property
    def properties(self) -> Properties:
        """What placeholders resolve from: the config given to :meth:`use_config`, else the
        ``EIP_..__..`` environment variables (and ``{{env:...}}``, ``{{file:...}}``)."""
        found: Properties | None = self.__dict__.get("_properties")
        if found is None:
            found = self.__dict__["_properties"] = Properties()
        return found

    def use_config(self, config: Config | Properties) -> None:
        """Resolve placeholders (``{{erp.url}}``) from ``config``; before routes compile."""
        if self._producers or self.started:
            raise LifecycleError("give the context its config before its routes compile")
        properties = config if isinstance(config, Properties) else Properties(config)
        self.__dict__["_properties"] = properties
        self.__dict__.pop("_placeholder_endpoints", None)

    def replace_properties(self, properties: Properties) -> None:
        """Resolve placeholders from ``properties`` from now on, in a running context (a
        reload with a changed config): routes compiled before keep what they resolved."""
        self.__dict__["_properties"] = properties
        self.__dict__.pop("_placeholder_endpoints", None)

    def resolve_endpoint(
        self, ref: EndpointRef, *, route_id: str | None = None, step: str | None = None
    ) -> tuple[Component, EndpointSpec]:
        """Parse and validate an endpoint, its placeholders resolved (once: later calls get
        the same spec); errors name the route and step, and show the endpoint as written."""
        try:
            if isinstance(ref, str) and "{{" not in ref:
                return self._parse(ref)
            if isinstance(ref, EndpointSpec) and not _spec_has_placeholders(ref):
                return self._parse(ref)
            found = self._with_placeholders(ref)
            return found.component, found.spec
        except RouteDefinitionError as exc:
            exc.route_id = exc.route_id or route_id
            exc.step = exc.step or step
            raise

    def _parse(self, ref: EndpointRef, shown: str | None = None) -> tuple[Component, EndpointSpec]:
        if isinstance(ref, str):
            scheme, sep, _ = ref.partition(":")
            if not sep or not scheme:
                raise RouteDefinitionError(
                    f"endpoint '{shown or redact_uri(ref)}' has no scheme (expected "
                    "scheme:path?options)"
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
            where = shown or redact_uri(spec.uri)
            raise RouteDefinitionError(f"endpoint {where}: {scrub(str(exc))}") from None
        return component, spec

    def _with_placeholders(self, ref: EndpointRef) -> _Resolved:
        cache: dict[object, _Resolved] = self.__dict__.setdefault("_placeholder_endpoints", {})
        key = _key(ref)
        found = cache.get(key)
        if found is not None:
            return found
        shown = endpoint_text(ref)
        try:
            resolved = self.properties.resolve_ref(ref)
        except PlaceholderError as exc:
            exc.reason = f"endpoint {shown}: {exc.reason}"
            raise
        try:
            component, spec = self._parse(resolved.value, shown)
        except RouteDefinitionError as exc:
            # Parse errors name the endpoint as resolved: show it as written instead.
            if isinstance(resolved.value, str):
                exc.reason = exc.reason.replace(redact_uri(resolved.value), shown)
            exc.reason = scrub(exc.reason)
            raise
        found = cache[key] = _Resolved(ref, component, spec, shown, resolved.secret)
        return found

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
            resolved = self.__dict__.get("_placeholder_endpoints", {}).get(_key(ref))
            # Shown as written: what a placeholder resolved to stays out of logs and errors.
            producer.uri = resolved.shown if resolved is not None else redact_uri(key)
            if resolved is not None and resolved.secret:
                producer.process = _scrubbing(producer.process)  # type: ignore[method-assign,assignment]
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
            reason = scrub(redact_uri(str(exc) or type(exc).__name__))
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
        ready = self._ready_producers
        producer = ready.get(_key(ref))  # a spec with a dict option is not hashable
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
        ready[_key(ref)] = producer
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


class _Resolved(NamedTuple):
    """An endpoint with placeholders, resolved once: what it is, and how it is shown."""

    ref: EndpointRef  # kept, so a cache key made from its id stays its own
    component: Component
    spec: EndpointSpec
    shown: str
    secret: bool


def _key(ref: EndpointRef) -> object:
    try:
        hash(ref)
    except TypeError:  # a spec with a list option: one cache entry per spec object
        return ("id", id(ref))
    return ref


def _spec_has_placeholders(spec: EndpointSpec) -> bool:
    for name in spec.__struct_fields__:
        value = getattr(spec, name)
        if isinstance(value, str):
            if "{{" in value:
                return True
        elif isinstance(value, list | tuple):
            if any(has_placeholders(item) for item in value):
                return True
        elif isinstance(value, dict) and any(has_placeholders(v) for v in value.values()):
            return True
    return False


def _scrubbing(process: Callable[[Exchange], Any]) -> Callable[[Exchange], Any]:
    """``process`` whose failures have secret values scrubbed from their texts, for a
    producer built from a secret placeholder: its own error texts (a URL, say) would
    otherwise carry the value into logs, the failure history and dead letters."""

    def scrubbed(exchange: Exchange) -> Any:
        try:
            result = process(exchange)
        except Exception as exc:
            scrub_exception(exc)
            raise
        if result is None or not hasattr(result, "__await__"):
            return result
        return _awaited(result)

    async def _awaited(result: Any) -> Any:
        try:
            return await result
        except Exception as exc:
            scrub_exception(exc)
            raise

    return scrubbed
