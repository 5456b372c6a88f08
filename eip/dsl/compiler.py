"""Compile: validate a route model, resolve its endpoints and build its processors.

All the per-route work happens here, once: endpoint URIs are parsed and checked, sync and async
callables are told apart, and each step list becomes one :class:`Pipeline`. Errors raise
:class:`RouteDefinitionError` naming the route and the step (``3 > when 2 > 1``: the first
step of the second ``when`` of the route's third step).

New step kinds register a compile function with :func:`register_step`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from eip.audit.spec import AuditSpec, audit_of
from eip.dsl.model import (
    ChoiceDef,
    DeadLetterChannel,
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
    endpoint_text,
)
from eip.errors import RouteDefinitionError
from eip.processors import transform as T
from eip.processors.base import Step, processor_function, with_inline
from eip.processors.choice import choice_step
from eip.processors.error_handler import CompiledClause, ErrorHandling, RedeliveryPolicy
from eip.processors.filter import filter_step
from eip.processors.log import log_step
from eip.processors.pipeline import Pipeline
from eip.runtime.route import Route, Service

if TYPE_CHECKING:
    from eip.dsl.host import CompileHost
    from eip.message import Exchange

__all__ = ["CompileContext", "compile_route", "register_step"]

D = TypeVar("D", bound=StepDef)
StepCompiler = Callable[..., Step]
_COMPILERS: dict[type[StepDef], StepCompiler] = {}


def register_step(kind: type[D]) -> Callable[[Callable[..., Step]], Any]:
    """Register the compile function for a step definition type: ``fn(step, cc)``, or
    ``fn(step, cc, downstream)`` for a step whose ``takes_rest`` is true."""

    def decorate(fn: Callable[..., Step]) -> Any:
        _COMPILERS[kind] = fn
        return fn

    return decorate


class CompileContext:
    """What compile functions need: the context, the route, and where in the route they are."""

    def __init__(self, context: CompileHost, model: RouteModel, errors: ErrorHandling) -> None:
        self.context = context
        self.model = model
        self.route_id = model.route_id
        self.errors = errors
        self.path: list[str] = []
        self.services: list[Service] = []
        #: The route's audit (see :mod:`eip.audit.hook`), None for routes that keep none.
        self.audit: AuditSpec | None = None

    def add_service(self, service: Service) -> None:
        """Register a stateful part of a step (a worker, a timeout checker) with the route: the
        context starts it before the route's consumer and stops it once intake has drained,
        before internal endpoints and producers stop (see :class:`eip.runtime.route.Service`).
        """
        self.services.append(service)

    @property
    def where(self) -> str:
        return " > ".join(self.path)

    def error(self, message: str, **kwargs: Any) -> RouteDefinitionError:
        return RouteDefinitionError(message, route_id=self.route_id, step=self.where, **kwargs)

    def pipeline(self, steps: list[StepDef], errors: ErrorHandling | None = None) -> Pipeline:
        """Compile ``steps``; with ``errors``, they and everything nested in them use that error
        handling instead of the route's (an ``on_exception`` clause's steps, say)."""
        previous = self.errors
        if errors is not None:
            self.errors = errors
        try:
            return self._pipeline(steps)
        finally:
            self.errors = previous

    def _pipeline(self, steps: list[StepDef]) -> Pipeline:
        compiled: list[Step] = []
        labels: list[str] = []
        for number, step in enumerate(steps, 1):
            self.path.append(str(number))
            try:
                if getattr(step, "takes_rest", False):
                    # A gate such as the aggregator: the steps after it become its downstream,
                    # and this pipeline ends at it.
                    self.path[-1] = f"{number} (downstream)"
                    downstream = self._pipeline(steps[number:])
                    self.path[-1] = str(number)
                    compiled.append(self.step(step, downstream))
                    labels.append(step.describe())
                    break
                compiled.append(self.step(step))
            finally:
                self.path.pop()
            labels.append(
                endpoint_text(step.endpoint) if isinstance(step, ToDef) else step.describe()
            )
        name = f"{self.route_id}:{self.where or 'route'}"
        return Pipeline(compiled, labels, self.errors, name)

    def step(self, step: StepDef, downstream: Pipeline | None = None) -> Step:
        compile_fn = _COMPILERS.get(type(step))
        if compile_fn is None:
            raise self.error(f"no compiler for step {step.describe()}")
        try:
            if downstream is not None:
                return compile_fn(step, self, downstream)
            return compile_fn(step, self)
        except RouteDefinitionError as exc:
            if exc.route_id is None:
                exc.route_id = self.route_id
            if exc.step is None:
                exc.step = f"{self.where} {step.describe()}"
            raise
        except (TypeError, ValueError) as exc:
            raise self.error(f"{step.describe()}: {exc}") from exc

    def callable_(self, value: Any, what: str) -> Callable[..., Any]:
        if not callable(value):
            raise self.error(f"{what} must be callable, got {type(value).__name__}")
        return value  # type: ignore[no-any-return]


def compile_route(context: CompileHost, model: RouteModel) -> Route:
    """Build a :class:`Route` from its model; raises RouteDefinitionError when it is invalid,
    naming the file and line the route was declared at as well as the route and step."""
    try:
        return _compile_route(context, model)
    except RouteDefinitionError as exc:
        exc.location = exc.location or model.defined_at
        raise


def _compile_route(context: CompileHost, model: RouteModel) -> Route:
    if not model.route_id:
        raise RouteDefinitionError("route has no id")
    context.resolve_endpoint(model.source, route_id=model.route_id, step="from")
    errors = _error_handling(context, model)
    cc = CompileContext(context, model, errors)
    cc.audit = audit_of(context, model)
    errors.clauses = tuple(_clause(cc, clause) for clause in model.on_exceptions)
    pipeline = cc.pipeline(model.steps)
    route = Route(model, pipeline, errors)
    route.services = cc.services
    if cc.audit is not None:
        from eip.audit.hook import install_audit

        install_audit(cc, route)
    return route


def _error_handling(context: CompileHost, model: RouteModel) -> ErrorHandling:
    handler = model.error_handler
    redelivery = handler.redelivery if handler is not None else RedeliveryPolicy()
    dead_letter: Step | None = None
    dead_letter_uri: str | None = None
    use_original = False
    if isinstance(handler, DeadLetterChannel):
        producer = context.producer_for(
            handler.endpoint, route_id=model.route_id, step="dead_letter_channel"
        )
        dead_letter = producer.process
        dead_letter_uri = endpoint_text(handler.endpoint)
        use_original = handler.use_original_message
    return ErrorHandling(
        route_id=model.route_id,
        clock=context.clock,
        redelivery=redelivery,
        dead_letter=dead_letter,
        dead_letter_uri=dead_letter_uri,
        use_original_message=use_original,
    )


def _clause(cc: CompileContext, clause: OnExceptionDef) -> CompiledClause:
    cc.path.append(clause.describe())
    try:
        if not clause.types:
            raise cc.error("on_exception needs at least one exception type")
        for kind in clause.types:
            if not (isinstance(kind, type) and issubclass(kind, BaseException)):
                raise cc.error(f"on_exception expects exception types, got {kind!r}")
        if clause.handled and clause.continued:
            raise cc.error("on_exception cannot be both handled and continued")
        # Steps of a clause run once; failures there are not redelivered.
        plain = ErrorHandling(route_id=cc.route_id, clock=cc.context.clock, redelivery=_NONE)
        steps = cc.pipeline(clause.steps, plain).run if clause.steps else None
        return CompiledClause(
            clause.types, clause.redelivery, clause.handled, clause.continued, steps
        )
    finally:
        cc.path.pop()


_NONE = RedeliveryPolicy()


@register_step(ToDef)
def _compile_to(step: ToDef, cc: CompileContext) -> Step:
    producer = cc.context.producer_for(step.endpoint, route_id=cc.route_id, step=cc.where)
    send: Step = producer.process
    inline = producer.inline_send()
    if inline is not None:
        # The fused pipeline runs the send's own lines, not a call (the wrappers below too).
        code, values = inline
        send = with_inline(_call(producer.process), code, *values, result=True)
    tracing = cc.context.tracing
    if tracing.enabled and not getattr(producer, "traces_itself", False):
        send = tracing.traced_send(send, endpoint_text(step.endpoint))
    if cc.context.metrics is not None:  # per-step send counters for the control API
        from eip.runtime.step_counters import counted_send, step_counters

        send = counted_send(send, step_counters(cc.context).counter(cc.model, cc.where))
    if cc.audit is not None:  # the trail of endpoints an audited exchange was sent to
        from eip.audit.trail import recorded_send

        send = recorded_send(send, endpoint_text(step.endpoint), cc)
    return send


def _call(process: Step) -> Step:
    """A plain function for a producer's bound ``process`` (which cannot carry inline code)."""

    def send(exchange: Exchange) -> Any:
        return process(exchange)

    return send


@register_step(FilterDef)
def _compile_filter(step: FilterDef, cc: CompileContext) -> Step:
    predicate = cc.callable_(step.predicate, "filter predicate")
    if cc.audit is not None and len(cc.path) == 1:  # stops the route: the outcome is filtered
        from eip.audit.trail import marking_filter

        return marking_filter(predicate)
    return filter_step(predicate)


@register_step(ChoiceDef)
def _compile_choice(step: ChoiceDef, cc: CompileContext) -> Step:
    if not step.whens:
        raise cc.error("choice needs at least one when(...)")
    branches = []
    for number, branch in enumerate(step.whens, 1):
        cc.path.append(f"when {number}")
        try:
            if branch.predicate is None:
                raise cc.error("when() has no predicate")
            predicate = cc.callable_(branch.predicate, "when predicate")
            branches.append((predicate, cc.pipeline(branch.steps).run))
        finally:
            cc.path.pop()
    otherwise = None
    if step.otherwise is not None:
        cc.path.append("otherwise")
        try:
            otherwise = cc.pipeline(step.otherwise).run
        finally:
            cc.path.pop()
    return choice_step(branches, otherwise)


@register_step(TransformDef)
def _compile_transform(step: TransformDef, cc: CompileContext) -> Step:
    return T.transform_step(step.expression)


@register_step(SetHeaderDef)
def _compile_set_header(step: SetHeaderDef, cc: CompileContext) -> Step:
    return T.header_setter(step.name, step.expression)


@register_step(SetPropertyDef)
def _compile_set_property(step: SetPropertyDef, cc: CompileContext) -> Step:
    return T.property_setter(step.name, step.expression)


@register_step(RemoveHeaderDef)
def _compile_remove_header(step: RemoveHeaderDef, cc: CompileContext) -> Step:
    if not step.patterns:
        raise cc.error("remove_header needs at least one header name or pattern")
    return T.header_remover(step.patterns)


@register_step(ProcessDef)
def _compile_process(step: ProcessDef, cc: CompileContext) -> Step:
    processor_function(step.processor)  # raises TypeError, reported with the step
    return T.process_step(step.processor)


@register_step(MapFieldsDef)
def _compile_map_fields(step: MapFieldsDef, cc: CompileContext) -> Step:
    return T.map_fields_step(cc.callable_(step.mapper, "map_fields mapper"))


@register_step(MarshalDef)
def _compile_marshal(step: MarshalDef, cc: CompileContext) -> Step:
    return T.marshal_step(step.data_format)


@register_step(UnmarshalDef)
def _compile_unmarshal(step: UnmarshalDef, cc: CompileContext) -> Step:
    return T.unmarshal_step(step.data_format)


@register_step(LogDef)
def _compile_log(step: LogDef, cc: CompileContext) -> Step:
    name = step.logger or f"eip.route.{cc.route_id}"
    if not isinstance(step.level, int) or logging.getLevelName(step.level).startswith("Level "):
        raise cc.error(f"log level must be a logging level, got {step.level!r}")
    return log_step(step.message, step.level, name)


@register_step(StopDef)
def _compile_stop(step: StopDef, cc: CompileContext) -> Step:
    return T.stop_step()
