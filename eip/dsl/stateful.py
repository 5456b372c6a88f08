"""Stateful EIPs: splitter, aggregator, idempotent consumer (DSL, model and compile)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Self

from eip import headers as H
from eip.dsl.base import StepsBase
from eip.dsl.model import EndpointRef, StepDef, ToDef
from eip.expressions import header
from eip.processors.base import Step, describe_callable
from eip.stores.base import AggregationRepository, IdempotentRepository

if TYPE_CHECKING:
    from eip.dsl.compiler import CompileContext
    from eip.processors.pipeline import Pipeline

__all__ = ["AggregateDef", "IdempotentDef", "SplitDef", "StatefulSteps"]

Strategy = Callable[[Any, Any], Any]

#: By default the aggregator knows an input again by the transport's message id.
_MESSAGE_ID = header(H.MESSAGE_ID)


@dataclass(slots=True)
class SplitDef(StepDef):
    expression: Callable[..., Any]
    then: list[StepDef] | None = None
    aggregate: Strategy | None = None
    parallel: bool = False
    max_parallel: int = 10
    stop_on_exception: bool = False
    kind = "split"

    @property
    def takes_rest(self) -> bool:
        """Without a sub-pipeline, the rest of the route runs for each part."""
        return self.then is None

    def describe(self) -> str:
        return f"split({describe_callable(self.expression)})"

    def children(self) -> list[tuple[str, list[StepDef]]]:
        return [("each part", self.then)] if self.then is not None else []


@dataclass(slots=True)
class AggregateDef(StepDef):
    correlation: Callable[..., Any]
    strategy: Strategy
    options: dict[str, Any] = field(default_factory=dict)
    repository: AggregationRepository | None = None
    dead_letter: EndpointRef | None = None
    kind = "aggregate"
    takes_rest = True

    def describe(self) -> str:
        triggers = [
            f"{name}={value!r}" if not callable(value) else f"{name}={describe_callable(value)}"
            for name, value in self.options.items()
            if name.startswith("completion") and value is not None
        ]
        return f"aggregate({describe_callable(self.correlation)}, {', '.join(triggers)})"


@dataclass(slots=True)
class IdempotentDef(StepDef):
    message_id: Callable[..., Any]
    repository: IdempotentRepository | None = None
    skip_duplicates: bool = True
    eager: bool = True
    remove_on_failure: bool = True
    kind = "idempotent_consumer"

    def describe(self) -> str:
        store = type(self.repository).__name__ if self.repository is not None else "memory"
        return f"idempotent_consumer({describe_callable(self.message_id)}, {store})"


class StatefulSteps(StepsBase):
    """DSL methods of the stateful EIPs (mixed into every step builder)."""

    def split(
        self,
        expression: Callable[..., Any],
        then: StepsBase | EndpointRef | None = None,
        *,
        aggregate: Strategy | None = None,
        parallel: bool = False,
        max_parallel: int = 10,
        stop_on_exception: bool = False,
    ) -> Self:
        """Process each part of the message (see :mod:`eip.splitters` for sources).

        With ``then`` (a ``pipeline()`` or an endpoint), each part runs through it and the
        route continues with the original message (or the ``aggregate`` of the parts).
        Without, the rest of the route runs for each part.
        """
        steps: list[StepDef] | None
        if then is None:
            steps = None
        elif isinstance(then, StepsBase):
            steps = then.steps
        else:
            steps = [ToDef(then)]
        return self._add(
            SplitDef(expression, steps, aggregate, parallel, max_parallel, stop_on_exception)
        )

    def aggregate(
        self,
        correlation: Callable[..., Any],
        strategy: Strategy,
        *,
        completion_size: int | Callable[..., Any] | None = None,
        completion_timeout: float | None = None,
        completion_interval: float | None = None,
        completion_predicate: Callable[..., Any] | None = None,
        eager_check: bool = False,
        complete_on_new_group: bool = False,
        force_completion_on_stop: bool = True,
        close_on_completion: bool = False,
        discard_on_timeout: bool = False,
        ignore_invalid_keys: bool = False,
        input_id: Callable[..., Any] | None = _MESSAGE_ID,
        repository: AggregationRepository | None = None,
        recovery_interval: float = 5.0,
        max_redeliveries: int = 3,
        dead_letter: EndpointRef | None = None,
    ) -> Self:
        """Collect exchanges by ``correlation`` key; the rest of the route runs per completed
        group. See :mod:`eip.processors.aggregate` for the guarantees."""
        options = {
            "completion_size": completion_size,
            "completion_timeout": completion_timeout,
            "completion_interval": completion_interval,
            "completion_predicate": completion_predicate,
            "eager_check": eager_check,
            "complete_on_new_group": complete_on_new_group,
            "force_completion_on_stop": force_completion_on_stop,
            "close_on_completion": close_on_completion,
            "discard_on_timeout": discard_on_timeout,
            "ignore_invalid_keys": ignore_invalid_keys,
            "input_id": input_id,
            "recovery_interval": recovery_interval,
            "max_redeliveries": max_redeliveries,
        }
        return self._add(AggregateDef(correlation, strategy, options, repository, dead_letter))

    def idempotent_consumer(
        self,
        message_id: Callable[..., Any],
        repository: IdempotentRepository | None = None,
        *,
        skip_duplicates: bool = True,
        eager: bool = True,
        remove_on_failure: bool = True,
    ) -> Self:
        """Let each message id through once (see :mod:`eip.processors.idempotent`)."""
        return self._add(
            IdempotentDef(message_id, repository, skip_duplicates, eager, remove_on_failure)
        )


def _register() -> None:
    from eip.dsl.compiler import register_step
    from eip.processors.aggregate import Aggregator
    from eip.processors.idempotent import idempotent_step
    from eip.processors.split import Splitter
    from eip.stores.memory import MemoryAggregationRepository, MemoryIdempotentRepository

    @register_step(SplitDef)
    def _compile_split(
        step: SplitDef, cc: CompileContext, downstream: Pipeline | None = None
    ) -> Step:
        expression = cc.callable_(step.expression, "split expression")
        if step.max_parallel < 1:
            raise cc.error(f"max_parallel must be >= 1, got {step.max_parallel}")
        if downstream is not None:
            parts = downstream.run
        else:
            assert step.then is not None
            cc.path.append("each part")
            try:
                parts = cc.pipeline(step.then).run
            finally:
                cc.path.pop()
        return Splitter(
            expression,
            parts,
            aggregate=step.aggregate,
            parallel=step.parallel,
            max_parallel=step.max_parallel,
            stop_on_exception=step.stop_on_exception,
        )

    @register_step(AggregateDef)
    def _compile_aggregate(step: AggregateDef, cc: CompileContext, downstream: Pipeline) -> Step:
        options = dict(step.options)
        cc.callable_(step.correlation, "correlation expression")
        cc.callable_(step.strategy, "aggregation strategy")
        triggers = ("completion_size", "completion_timeout", "completion_interval")
        if not any(options[t] is not None for t in triggers) and not (
            options["completion_predicate"] is not None or options["complete_on_new_group"]
        ):
            raise cc.error(
                "aggregate needs a completion condition: completion_size, completion_timeout, "
                "completion_interval, completion_predicate or complete_on_new_group"
            )
        for name in ("completion_timeout", "completion_interval", "recovery_interval"):
            value = options[name]
            if value is not None and value <= 0:
                raise cc.error(f"{name} must be > 0 seconds, got {value}")
        size = options["completion_size"]
        if isinstance(size, int) and size < 1:
            raise cc.error(f"completion_size must be >= 1, got {size}")
        repository = (
            step.repository if step.repository is not None else MemoryAggregationRepository()
        )
        cc.add_service(repository)
        dead_letter = None
        if step.dead_letter is not None:
            dead_letter = cc.context.producer_for(
                step.dead_letter, route_id=cc.route_id, step=cc.where
            ).process
        aggregator = Aggregator(
            name=f"{cc.route_id}:aggregate",
            clock=cc.context.clock,
            correlation=step.correlation,
            strategy=step.strategy,
            downstream=downstream.run,
            repository=repository,
            dead_letter=dead_letter,
            **options,
        )
        cc.add_service(aggregator)
        return aggregator.step

    @register_step(IdempotentDef)
    def _compile_idempotent(step: IdempotentDef, cc: CompileContext) -> Step:
        repository = (
            step.repository if step.repository is not None else MemoryIdempotentRepository()
        )
        cc.add_service(repository)
        return idempotent_step(
            cc.callable_(step.message_id, "message id expression"),
            repository,
            skip_duplicates=step.skip_duplicates,
            eager=step.eager,
            remove_on_failure=step.remove_on_failure,
        )


_register()
