"""Routing EIPs: multicast, recipient list, wire tap, enricher, throttler, circuit breaker.

Each EIP has a step definition (plain data, walked by ``eip routes``), a builder method on
:class:`RoutingSteps` and a compile function; the behaviour and its decisions are documented
in the processor modules (:mod:`eip.processors.multicast`, ``recipient_list``, ``wiretap``,
``enrich``, ``throttle``, ``circuit_breaker``). Outputs and sub-pipelines are given as an
endpoint (URI or spec) or as ``pipeline()...``; an endpoint is short for ``pipeline().to(it)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Self

from eip.dsl.base import StepsBase
from eip.dsl.compiler import CompileContext, register_step
from eip.dsl.model import EndpointRef, StepDef, ToDef, endpoint_text
from eip.endpoint import EndpointSpec
from eip.processors.base import Step, describe_callable
from eip.processors.circuit_breaker import CircuitBreaker, register_breaker
from eip.processors.enrich import EnrichStrategy, enrich_step
from eip.processors.error_handler import ErrorHandling, RedeliveryPolicy
from eip.processors.multicast import Multicast
from eip.processors.recipient_list import RecipientList
from eip.processors.strategies import AggregationStrategy
from eip.processors.throttle import Throttle
from eip.processors.wiretap import WireTap

__all__ = [
    "CircuitBreakerDef",
    "EnrichDef",
    "MulticastDef",
    "RecipientListDef",
    "RoutingSteps",
    "ThrottleDef",
    "WireTapDef",
]

Output = EndpointRef | StepsBase


def _steps(output: Output, what: str) -> list[StepDef]:
    if isinstance(output, StepsBase):
        return output.steps
    if isinstance(output, str | EndpointSpec):
        return [ToDef(output)]
    raise TypeError(
        f"{what} must be an endpoint URI, an endpoint spec or a pipeline(), "
        f"got {type(output).__name__}"
    )


def _flags(**options: Any) -> str:
    """``, parallel, aggregate=collect_bodies`` for the options that are set."""
    parts = []
    for name, value in options.items():
        if value is True:
            parts.append(name)
        elif value is not None and value is not False:
            text = value if isinstance(value, int | float | str) else describe_callable(value)
            parts.append(f"{name}={text}")
    return "".join(f", {part}" for part in parts)


@dataclass(slots=True)
class MulticastDef(StepDef):
    outputs: list[list[StepDef]]
    parallel: bool = False
    max_parallel: int = 10
    aggregate: AggregationStrategy | None = None
    stop_on_exception: bool = False
    timeout: float | None = None
    kind = "multicast"

    def describe(self) -> str:
        flags = _flags(
            parallel=self.parallel,
            aggregate=self.aggregate,
            stop_on_exception=self.stop_on_exception,
            timeout=self.timeout,
        )
        return f"multicast({len(self.outputs)} outputs{flags})"

    def children(self) -> list[tuple[str, list[StepDef]]]:
        return [(f"output {n}", steps) for n, steps in enumerate(self.outputs, 1)]


@dataclass(slots=True)
class RecipientListDef(StepDef):
    expression: Callable[..., Any]
    delimiter: str = ","
    parallel: bool = False
    max_parallel: int = 10
    aggregate: AggregationStrategy | None = None
    stop_on_exception: bool = False
    ignore_invalid_endpoints: bool = False
    cache_size: int = 100
    timeout: float | None = None
    kind = "recipient_list"

    def describe(self) -> str:
        flags = _flags(
            parallel=self.parallel,
            aggregate=self.aggregate,
            stop_on_exception=self.stop_on_exception,
            ignore_invalid_endpoints=self.ignore_invalid_endpoints,
            timeout=self.timeout,
        )
        return f"recipient_list({describe_callable(self.expression)}{flags})"


@dataclass(slots=True)
class WireTapDef(StepDef):
    endpoint: EndpointRef
    copy: bool = True
    max_pending: int = 1000
    kind = "wire_tap"

    def describe(self) -> str:
        return f"wire_tap({endpoint_text(self.endpoint)}{'' if self.copy else ', copy=False'})"


@dataclass(slots=True)
class EnrichDef(StepDef):
    endpoint: EndpointRef
    strategy: EnrichStrategy | None = None
    kind = "enrich"

    def describe(self) -> str:
        return f"enrich({endpoint_text(self.endpoint)}{_flags(strategy=self.strategy)})"


@dataclass(slots=True)
class ThrottleDef(StepDef):
    rate: int
    per: float = 1.0
    key: Callable[..., Any] | None = None
    reject: bool = False
    max_keys: int = 10_000
    kind = "throttle"

    def describe(self) -> str:
        return f"throttle({self.rate}/{self.per:g}s{_flags(key=self.key, reject=self.reject)})"


@dataclass(slots=True)
class CircuitBreakerDef(StepDef):
    protected: list[StepDef]
    fallback: list[StepDef] | None = None
    failure_rate: float = 0.5
    minimum_calls: int = 10
    window: int = 20
    open_for: float = 30.0
    half_open_calls: int = 1
    record: tuple[type[BaseException], ...] = (Exception,)
    name: str | None = None
    kind = "circuit_breaker"

    def describe(self) -> str:
        text = f"failure_rate={self.failure_rate:g}, open_for={self.open_for:g}s"
        if self.name:
            text = f"{self.name!r}, {text}"
        return f"circuit_breaker({text}{', fallback' if self.fallback is not None else ''})"

    def children(self) -> list[tuple[str, list[StepDef]]]:
        out = [("protected", self.protected)]
        if self.fallback is not None:
            out.append(("fallback", self.fallback))
        return out


class RoutingSteps(StepsBase):
    """DSL methods of the routing EIPs (mixed into every step builder)."""

    def multicast(
        self,
        *outputs: Output,
        parallel: bool = False,
        max_parallel: int = 10,
        aggregate: AggregationStrategy | None = None,
        stop_on_exception: bool = False,
        timeout: float | None = None,
    ) -> Self:
        """Send a copy of the exchange to each output (endpoint or ``pipeline()``).

        ``aggregate(old, new)`` folds the outputs' results into the exchange (see
        :mod:`eip.processors.strategies`); without it the exchange continues unchanged.
        ``timeout`` (seconds) needs ``parallel=True``.
        """
        return self._add(
            MulticastDef(
                [_steps(output, "a multicast output") for output in outputs],
                parallel,
                max_parallel,
                aggregate,
                stop_on_exception,
                timeout,
            )
        )

    def recipient_list(
        self,
        expression: Callable[..., Any],
        delimiter: str = ",",
        *,
        parallel: bool = False,
        max_parallel: int = 10,
        aggregate: AggregationStrategy | None = None,
        stop_on_exception: bool = False,
        ignore_invalid_endpoints: bool = False,
        cache_size: int = 100,
        timeout: float | None = None,
    ) -> Self:
        """Multicast to the endpoints ``expression(exchange)`` names: a ``delimiter``-separated
        str (``header("to")``), an endpoint spec, or a list of them. Options as for multicast.
        """
        return self._add(
            RecipientListDef(
                expression,
                delimiter,
                parallel,
                max_parallel,
                aggregate,
                stop_on_exception,
                ignore_invalid_endpoints,
                cache_size,
                timeout,
            )
        )

    def wire_tap(
        self, endpoint: EndpointRef, *, copy: bool = True, max_pending: int = 1000
    ) -> Self:
        """Send a copy to ``endpoint`` in the background; the route neither waits nor fails.

        At most ``max_pending`` copies wait; more are dropped and counted. With ``copy=False``
        the tap gets a new exchange with the body only.
        """
        return self._add(WireTapDef(endpoint, copy, max_pending))

    def enrich(self, endpoint: EndpointRef, strategy: EnrichStrategy | None = None) -> Self:
        """Ask ``endpoint`` (in-out, with a copy) and take its reply body, or merge it with
        ``strategy(original, reply) -> Exchange``."""
        return self._add(EnrichDef(endpoint, strategy))

    def throttle(
        self,
        rate: int,
        per: float = 1.0,
        *,
        key: Callable[..., Any] | None = None,
        reject: bool = False,
        max_keys: int = 10_000,
    ) -> Self:
        """At most ``rate`` exchanges per ``per`` seconds (per ``key(exchange)`` if given);
        the others wait their turn, or fail with ``ThrottledError`` when ``reject``."""
        return self._add(ThrottleDef(rate, per, key, reject, max_keys))

    def circuit_breaker(
        self,
        protected: Output,
        fallback: Output | None = None,
        *,
        failure_rate: float = 0.5,
        minimum_calls: int = 10,
        window: int = 20,
        open_for: float = 30.0,
        half_open_calls: int = 1,
        record: tuple[type[BaseException], ...] = (Exception,),
        name: str | None = None,
    ) -> Self:
        """Run ``protected`` behind a circuit breaker; while it is open, run ``fallback`` (or
        fail fast with ``CircuitOpenError``). ``name`` finds it in ``circuit_breakers(ctx)``.
        """
        return self._add(
            CircuitBreakerDef(
                _steps(protected, "the protected part of a circuit breaker"),
                None if fallback is None else _steps(fallback, "a circuit breaker fallback"),
                failure_rate,
                minimum_calls,
                window,
                open_for,
                half_open_calls,
                tuple(record) if isinstance(record, tuple | list) else (record,),
                name,
            )
        )


def _label(steps: list[StepDef]) -> str:
    if len(steps) == 1 and isinstance(steps[0], ToDef):
        return endpoint_text(steps[0].endpoint)
    return " > ".join(step.describe() for step in steps) or "empty pipeline"


def _nested(cc: CompileContext, label: str, steps: list[StepDef]) -> Step:
    cc.path.append(label)
    try:
        return cc.pipeline(steps).run
    finally:
        cc.path.pop()


def _engine(step: MulticastDef | RecipientListDef, name: str) -> Multicast:
    return Multicast(
        name,
        parallel=step.parallel,
        max_parallel=step.max_parallel,
        aggregate=step.aggregate,
        stop_on_exception=step.stop_on_exception,
        timeout=step.timeout,
    )


@register_step(MulticastDef)
def _compile_multicast(step: MulticastDef, cc: CompileContext) -> Step:
    if not step.outputs:
        raise cc.error("multicast needs at least one output")
    outputs = tuple(_nested(cc, f"output {n}", s) for n, s in enumerate(step.outputs, 1))
    labels = tuple(f"output {n} ({_label(s)})" for n, s in enumerate(step.outputs, 1))
    send = _engine(step, "multicast").send

    def multicast(exchange: Any) -> Any:
        return send(exchange, outputs, labels)

    return multicast


@register_step(RecipientListDef)
def _compile_recipient_list(step: RecipientListDef, cc: CompileContext) -> Step:
    return RecipientList(
        cc.callable_(step.expression, "recipient_list expression"),
        _engine(step, "recipient_list"),
        context=cc.context,
        errors=cc.errors,
        delimiter=step.delimiter,
        ignore_invalid_endpoints=step.ignore_invalid_endpoints,
        cache_size=step.cache_size,
    ).step


@register_step(WireTapDef)
def _compile_wire_tap(step: WireTapDef, cc: CompileContext) -> Step:
    tap = WireTap(
        _nested(cc, "tap", [ToDef(step.endpoint)]),
        endpoint_text(step.endpoint),
        copy=step.copy,
        max_pending=step.max_pending,
        drain_timeout=cc.context.shutdown_timeout,
    )
    cc.add_service(tap)
    return tap.process


@register_step(EnrichDef)
def _compile_enrich(step: EnrichDef, cc: CompileContext) -> Step:
    strategy = None if step.strategy is None else cc.callable_(step.strategy, "enrich strategy")
    return enrich_step(cc.step(ToDef(step.endpoint)), strategy)


@register_step(ThrottleDef)
def _compile_throttle(step: ThrottleDef, cc: CompileContext) -> Step:
    throttle = Throttle(
        step.rate,
        step.per,
        cc.context.clock,
        key=step.key,
        reject=step.reject,
        max_keys=step.max_keys,
    )
    return throttle.process


@register_step(CircuitBreakerDef)
def _compile_circuit_breaker(step: CircuitBreakerDef, cc: CompileContext) -> Step:
    if not step.protected:
        raise cc.error("circuit_breaker needs steps to protect")
    for kind in step.record:
        if not (isinstance(kind, type) and issubclass(kind, BaseException)):
            raise cc.error(f"record expects exception types, got {kind!r}")
    # The protected steps run without the route's error handling (nested ones included): each
    # call is one outcome for the breaker, and the route's redelivery retries the breaker step.
    inner = ErrorHandling(route_id=cc.route_id, clock=cc.context.clock, redelivery=_NO_RETRY)
    route_errors, cc.errors = cc.errors, inner
    try:
        protected = _nested(cc, "protected", step.protected)
    finally:
        cc.errors = route_errors
    fallback = None if step.fallback is None else _nested(cc, "fallback", step.fallback)
    breaker = CircuitBreaker(
        step.name or f"{cc.route_id}:{cc.where}",
        protected,
        fallback,
        cc.context.clock,
        failure_rate=step.failure_rate,
        minimum_calls=step.minimum_calls,
        window=step.window,
        open_for=step.open_for,
        half_open_calls=step.half_open_calls,
        record=step.record,
        inner_errors=inner,
    )
    register_breaker(cc.context, breaker)
    return breaker.process


_NO_RETRY = RedeliveryPolicy()
