"""The fluent route DSL.

Routes read top to bottom as in Camel's Java DSL, but nested branches are arguments, so there
is no ``end()`` to forget::

    class CustomerSync(RouteBuilder):
        def configure(self) -> None:
            (self.from_("seda:customers")
                 .route_id("customer-sync")
                 .unmarshal(json(Customer))
                 .filter(body("active"))
                 .choice(
                     when(body("region") == "CN").to("direct:cn"),
                     otherwise().to("direct:rest"),
                 ))

``filter(predicate)`` gates the rest of the pipeline it stands in (in a ``when`` branch: the rest
of that branch). Every builder method only records a step; nothing is validated or resolved
until the route is compiled at start.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Self

from eip.dataformats import DataFormat
from eip.dsl.diagnostics import Declared, caller, configure_error
from eip.dsl.dynamic import DynamicSteps
from eip.dsl.model import (
    ChoiceDef,
    DeadLetterChannel,
    DefaultErrorHandler,
    EndpointRef,
    ErrorHandlerDef,
    FilterDef,
    LogDef,
    MapFieldsDef,
    MarshalDef,
    OnExceptionDef,
    ProcessDef,
    RemoveHeaderDef,
    RouteModel,
    SetHeaderDef,
    SetPropertyDef,
    StepDef,
    StopDef,
    ToDef,
    TransformDef,
    UnmarshalDef,
    WhenDef,
)
from eip.dsl.polling import PollingSteps
from eip.dsl.reconcile import ReconcileSteps
from eip.dsl.routing import RoutingSteps
from eip.dsl.security import SecuritySteps
from eip.dsl.stateful import StatefulSteps
from eip.message import ExchangePattern
from eip.processors.error_handler import RedeliveryPolicy

if TYPE_CHECKING:
    from eip.audit.store import AuditStore
    from eip.dsl.rest import RestBuilder

__all__ = [
    "OnExceptionBuilder",
    "OtherwiseBuilder",
    "PipelineBuilder",
    "RouteBuilder",
    "RouteDefinition",
    "StepsBuilder",
    "WhenBuilder",
    "otherwise",
    "pipeline",
    "when",
]


class StepsBuilder(
    StatefulSteps, RoutingSteps, DynamicSteps, SecuritySteps, PollingSteps, ReconcileSteps
):
    """The EIP steps shared by routes and nested branches."""

    def to(self, *endpoints: EndpointRef, pattern: ExchangePattern | None = None) -> Self:
        """Send to each endpoint in turn (``direct:``, ``seda:``, ``mock:``, ``log:``, ...)."""
        for endpoint in endpoints:
            self._add(ToDef(endpoint, pattern))
        return self

    def filter(self, predicate: Callable[..., Any]) -> Self:
        """Let the exchange continue only when ``predicate(exchange)`` is true."""
        return self._add(FilterDef(predicate))

    def choice(self, *branches: WhenBuilder | OtherwiseBuilder) -> Self:
        """Content-based router: the first ``when`` whose predicate holds takes the exchange."""
        whens: list[WhenDef] = []
        other: list[StepDef] | None = None
        for branch in branches:
            if isinstance(branch, WhenBuilder):
                whens.append(WhenDef(branch.predicate, branch.steps))
            else:
                other = branch.steps if other is None else other + branch.steps
        return self._add(ChoiceDef(whens, other))

    def transform(self, expression: Callable[..., Any]) -> Self:
        """Replace the body with ``expression(exchange)`` (sync or async)."""
        return self._add(TransformDef(expression))

    def set_body(self, value: Any) -> Self:
        """Set the body to a constant or to an expression's value."""
        return self._add(TransformDef(value))

    def set_header(self, name: str, value: Any) -> Self:
        """Set header ``name`` to a constant or to an expression's value."""
        return self._add(SetHeaderDef(name, value))

    def set_property(self, name: str, value: Any) -> Self:
        return self._add(SetPropertyDef(name, value))

    def remove_header(self, *patterns: str) -> Self:
        """Remove headers by name or glob pattern (``"x-*"``)."""
        return self._add(RemoveHeaderDef(tuple(patterns)))

    def process(self, processor: Any) -> Self:
        """Run custom code: a function of the exchange, or an object with ``process()``."""
        return self._add(ProcessDef(processor))

    def map_fields(self, mapper: Callable[[Any], Any]) -> Self:
        """Replace the body with ``mapper(body)``, e.g. an :class:`eip.mapping.FieldMapper`."""
        return self._add(MapFieldsDef(mapper))

    def marshal(self, data_format: DataFormat) -> Self:
        """Write the body in a data format (to bytes)."""
        return self._add(MarshalDef(data_format))

    def unmarshal(self, data_format: DataFormat) -> Self:
        """Read the body from a data format (bytes to objects); bad input fails with its place."""
        return self._add(UnmarshalDef(data_format))

    def log(self, message: Any, level: int = logging.INFO, logger: str | None = None) -> Self:
        """Log a message; a str may use ``{body}``, ``{headers}``, ``{exchange_id}``,
        ``{route_id}``."""
        return self._add(LogDef(message, level, logger))

    def stop(self) -> Self:
        """Stop routing this exchange in the current route; it completes successfully."""
        return self._add(StopDef())


class WhenBuilder(StepsBuilder):
    """A ``choice`` branch; build with :func:`when`."""

    def __init__(self, predicate: Callable[..., Any] | None) -> None:
        super().__init__()
        self.predicate = predicate


class OtherwiseBuilder(StepsBuilder):
    """The ``choice`` branch taken when no ``when`` matches; build with :func:`otherwise`."""


class PipelineBuilder(StepsBuilder):
    """A nested sequence of steps, for EIPs that take sub-routes (multicast, ...)."""


def pipeline() -> PipelineBuilder:
    """Start a nested sequence of steps: ``multicast(pipeline().set_body(...).to("x"), ...)``."""
    return PipelineBuilder()


def when(predicate: Callable[..., Any] | None = None) -> WhenBuilder:
    """A branch of ``choice`` taken when ``predicate(exchange)`` is true."""
    return WhenBuilder(predicate)


def otherwise() -> OtherwiseBuilder:
    """The branch of ``choice`` taken when no ``when`` matched."""
    return OtherwiseBuilder()


class OnExceptionBuilder(StepsBuilder):
    """What to do when one of ``types`` is raised; steps run after redelivery is exhausted."""

    def __init__(self, definition: OnExceptionDef) -> None:
        super().__init__()
        self.definition = definition
        self.steps = definition.steps

    def handled(self, value: bool = True) -> Self:
        """Count the exchange as a success after the clause's steps ran; routing stops."""
        self.definition.handled = value
        return self

    def continued(self, value: bool = True) -> Self:
        """Ignore the error and continue at the step after the failing one."""
        self.definition.continued = value
        return self

    def redelivery(self, policy: RedeliveryPolicy | None = None, **options: Any) -> Self:
        """Redelivery for this exception type (replaces the error handler's policy)."""
        self.definition.redelivery = policy if policy is not None else RedeliveryPolicy(**options)
        return self


class RouteDefinition(StepsBuilder):
    """One route under construction; created by :meth:`RouteBuilder.from_`."""

    def __init__(
        self, source: EndpointRef, origin: str | None = None, declared: Declared | None = None
    ) -> None:
        super().__init__()
        self.declared = declared
        self.model = RouteModel(
            source=source,
            route_id="",
            steps=self.steps,
            origin=origin,
            defined_at=str(declared) if declared is not None else None,
        )

    def route_id(self, route_id: str) -> Self:
        self.model.route_id = route_id
        return self

    def description(self, text: str) -> Self:
        self.model.description = text
        return self

    def auto_startup(self, value: bool) -> Self:
        """Whether the context starts this route with the others (default True)."""
        self.model.auto_startup = value
        return self

    def error_handler(self, handler: ErrorHandlerDef) -> Self:
        """The error handler of this route (overrides the builder's)."""
        self.model.error_handler = handler
        return self

    def audit(
        self,
        key: Callable[..., Any] | None = None,
        *,
        fields: Sequence[str] | str = (),
        store: AuditStore | str | None = None,
        **options: Any,
    ) -> Self:
        """Keep a tamper-evident audit record of every exchange of this route: time, exchange,
        business ``key``, principal, outcome, endpoints, and the body ``fields`` named (none
        by default), in ``store`` (default: the config's ``[audit]`` store, else
        ``sqlite:$EIP_DATA_DIR/audit.db``); ``options`` (``table``, ``chain``) go to a store
        given by name. Each exchange completes only once its record is durable. See
        :mod:`eip.audit`."""
        from eip.audit.spec import AuditSpec, field_paths

        self.model.audit = AuditSpec(key, field_paths(fields), store, options)
        return self


class RouteBuilder:
    """Subclass and implement :meth:`configure` to declare routes.

    ``on_exception`` and ``error_handler`` called in ``configure`` apply to every route of this
    builder (a route's own ``error_handler`` wins).
    """

    def __init__(self) -> None:
        self._routes: list[RouteDefinition] = []
        self._on_exceptions: list[OnExceptionDef] = []
        self._error_handler: ErrorHandlerDef | None = None
        self._configured = False

    def configure(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement configure()")

    def from_(self, source: EndpointRef) -> RouteDefinition:
        route = RouteDefinition(source, origin=type(self).__qualname__, declared=caller())
        self._routes.append(route)
        return route

    def rest(self, base: str = "", **options: Any) -> RestBuilder:
        """Declare HTTP routes by verb under ``base`` (see :mod:`eip.dsl.rest`)."""
        from eip.dsl.rest import RestBuilder

        return RestBuilder(self, base, options)

    def on_exception(self, *types: type[BaseException]) -> OnExceptionBuilder:
        definition = OnExceptionDef(types=tuple(types))
        self._on_exceptions.append(definition)
        return OnExceptionBuilder(definition)

    def error_handler(self, handler: ErrorHandlerDef) -> None:
        self._error_handler = handler

    def build(self) -> list[RouteModel]:
        """Run ``configure`` once and return the route models.

        Anything ``configure`` raises becomes one RouteDefinitionError naming the file and
        line, this builder, and the route and step being declared (the cause is chained)."""
        if not self._configured:
            try:
                self.configure()
            except Exception as exc:
                error = configure_error(self, self._routes, exc)
                if error is exc:
                    raise
                raise error from exc
            self._configured = True
        models = []
        for route in self._routes:
            model = route.model
            if model.error_handler is None:
                model.error_handler = self._error_handler
            model.on_exceptions = [*self._on_exceptions]
            models.append(model)
        return models


def dead_letter_channel(
    endpoint: EndpointRef,
    *,
    redelivery: RedeliveryPolicy | None = None,
    use_original_message: bool = False,
) -> DeadLetterChannel:
    """An error handler that redelivers, then sends the failed exchange to ``endpoint``."""
    return DeadLetterChannel(endpoint, redelivery or RedeliveryPolicy(), use_original_message)


def default_error_handler(redelivery: RedeliveryPolicy | None = None) -> DefaultErrorHandler:
    """An error handler that redelivers, then lets the exchange fail."""
    return DefaultErrorHandler(redelivery or RedeliveryPolicy())
