"""What compiling a route needs from the context that runs it.

The context compiles its routes (``compile_route(self, model)``) and compile functions call
back into it: for producers, endpoint checks, the clock and the tracing. Typing them against
this protocol rather than the Context keeps the DSL from importing the runtime's context,
which imports the DSL; the context satisfies it structurally (see tests/test_layering.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from eip.endpoint import EndpointRef, EndpointResolver

if TYPE_CHECKING:
    from eip.clock import Clock
    from eip.components.base import Component, EndpointSpec, Producer
    from eip.tracing import Tracing

__all__ = ["CompileHost"]


class CompileHost(EndpointResolver, Protocol):
    """The context as compile functions see it (and, through ``producer``, what the steps
    that resolve endpoints per message keep)."""

    @property
    def clock(self) -> Clock: ...

    @property
    def tracing(self) -> Tracing: ...

    @property
    def shutdown_timeout(self) -> float: ...

    @property
    def metrics(self) -> object | None:
        """Set when the context counts (per-step send counters are built then)."""
        ...

    def resolve_endpoint(
        self, ref: EndpointRef, *, route_id: str | None = None, step: str | None = None
    ) -> tuple[Component, EndpointSpec]:
        """Parse and validate an endpoint; errors name the route and the step."""
        ...

    def producer_for(
        self, ref: EndpointRef, *, route_id: str | None = None, step: str | None = None
    ) -> Producer:
        """The shared producer of an endpoint (started by the context before the route)."""
        ...
