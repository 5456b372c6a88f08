"""``direct:name`` - a synchronous in-process call into the route consuming ``name``.

The same exchange object travels into the called route (as in Camel), so for in-out the reply
is simply the exchange's message when the call returns. If the called route is all sync steps,
the call is a plain function call with no await at all. A send with no consuming route fails
with :class:`~eip.errors.NoConsumerError` (or waits up to ``timeout`` seconds for one to start,
when set).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, ClassVar

from eip.components.base import Component, Consumer, EndpointSpec, Producer
from eip.components.typed import make_spec, typed_spec
from eip.errors import NoConsumerError, RouteDefinitionError
from eip.message import Exchange

if TYPE_CHECKING:
    from eip.runtime.route import Route

__all__ = ["DirectComponent", "DirectSpec", "direct"]


class DirectSpec(EndpointSpec, frozen=True):
    scheme: ClassVar[str] = "direct"
    name: str
    timeout: float = 0.0


@typed_spec(DirectSpec)
def direct(name: str, *, timeout: float = 0.0) -> DirectSpec:
    """Typed form of ``direct:name``."""
    return make_spec(DirectSpec, {"name": name, "timeout": timeout})


class DirectComponent(Component):
    scheme: ClassVar[str] = "direct"
    spec_type: ClassVar[type[EndpointSpec]] = DirectSpec
    internal: ClassVar[bool] = True

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        self.consumers: dict[str, Route] = {}
        self._arrivals: dict[str, asyncio.Event] = {}

    def validate(self, spec: Any) -> None:
        if not spec.name:
            raise ValueError("direct endpoints need a name: direct:<name>")

    def exclusive_consumer_key(self, spec: Any) -> str | None:
        return f"direct:{spec.name}"

    def create_producer(self, spec: Any) -> Producer:
        return DirectProducer(self, spec)

    def create_consumer(self, spec: Any, route: Route) -> Consumer:
        return DirectConsumer(self, spec, route)

    def attach(self, name: str, route: Route) -> None:
        existing = self.consumers.get(name)
        if existing is not None and existing is not route:
            raise RouteDefinitionError(
                f"direct:{name} is already consumed by route '{existing.id}'", route_id=route.id
            )
        self.consumers[name] = route
        event = self._arrivals.pop(name, None)
        if event is not None:
            event.set()

    def detach(self, name: str, route: Route) -> None:
        if self.consumers.get(name) is route:
            del self.consumers[name]

    async def wait_for(self, name: str, timeout: float) -> Route | None:
        event = self._arrivals.setdefault(name, asyncio.Event())
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            return None
        return self.consumers.get(name)


class DirectProducer(Producer):
    def __init__(self, component: DirectComponent, spec: DirectSpec) -> None:
        self.component = component
        self.name = spec.name
        self.timeout = spec.timeout
        self.consumers = component.consumers

    def process(self, exchange: Exchange) -> Any:
        route = self.consumers.get(self.name)
        if route is None:
            if self.timeout > 0:
                return self._wait_and_send(exchange)
            raise NoConsumerError(
                f"no route consumes from direct:{self.name}", endpoint=f"direct:{self.name}"
            )
        return route.dispatch(exchange)

    async def _wait_and_send(self, exchange: Exchange) -> Any:
        route = await self.component.wait_for(self.name, self.timeout)
        if route is None:
            raise NoConsumerError(
                f"no route consumed from direct:{self.name} within {self.timeout}s",
                endpoint=f"direct:{self.name}",
            )
        result = route.dispatch(exchange)
        if result is not None:
            await result


class DirectConsumer(Consumer):
    stops_after_drain: ClassVar[bool] = True

    def __init__(self, component: DirectComponent, spec: DirectSpec, route: Route) -> None:
        super().__init__(route)
        self.component = component
        self.name = spec.name

    async def start(self) -> None:
        self.component.attach(self.name, self.route)

    async def stop(self) -> None:
        self.component.detach(self.name, self.route)
