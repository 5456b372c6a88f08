"""The route model: plain data that the DSL builds and the compiler turns into processors.

Keeping the model as data is what lets tooling (``eip routes``, advice in tests) read and
rewrite routes before anything runs. Each step definition knows how to describe itself and
which compile function builds it (see :mod:`eip.dsl.compiler`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from eip.endpoint import EndpointRef, endpoint_text
from eip.message import ExchangePattern
from eip.processors.base import describe_callable
from eip.processors.error_handler import RedeliveryPolicy

if TYPE_CHECKING:
    from eip.audit.spec import AuditSpec
    from eip.dataformats import DataFormat

__all__ = [
    "ChoiceDef",
    "DeadLetterChannel",
    "DefaultErrorHandler",
    "EndpointRef",
    "ErrorHandlerDef",
    "FilterDef",
    "LogDef",
    "MapFieldsDef",
    "MarshalDef",
    "OnExceptionDef",
    "ProcessDef",
    "RemoveHeaderDef",
    "RouteModel",
    "SetHeaderDef",
    "SetPropertyDef",
    "StepDef",
    "StopDef",
    "ToDef",
    "TransformDef",
    "UnmarshalDef",
    "WhenDef",
    "endpoint_text",
]


class StepDef:
    """Base of every step definition."""

    kind: str = "step"

    def describe(self) -> str:
        return self.kind

    def children(self) -> list[tuple[str, list[StepDef]]]:
        """Nested step lists, labelled, for tools that walk the model."""
        return []


@dataclass(slots=True)
class ToDef(StepDef):
    endpoint: EndpointRef
    pattern: ExchangePattern | None = None
    kind = "to"

    def describe(self) -> str:
        return f"to({endpoint_text(self.endpoint)})"


@dataclass(slots=True)
class FilterDef(StepDef):
    predicate: Callable[..., Any]
    kind = "filter"

    def describe(self) -> str:
        return f"filter({describe_callable(self.predicate)})"


@dataclass(slots=True)
class WhenDef:
    predicate: Callable[..., Any] | None
    steps: list[StepDef] = field(default_factory=list)


@dataclass(slots=True)
class ChoiceDef(StepDef):
    whens: list[WhenDef]
    otherwise: list[StepDef] | None = None
    kind = "choice"

    def describe(self) -> str:
        return f"choice({len(self.whens)} when{'s' if len(self.whens) != 1 else ''}" + (
            ", otherwise)" if self.otherwise is not None else ")"
        )

    def children(self) -> list[tuple[str, list[StepDef]]]:
        out = [
            (f"when({describe_callable(w.predicate)})", w.steps)
            for w in self.whens
            if w.predicate is not None
        ]
        if self.otherwise is not None:
            out.append(("otherwise", self.otherwise))
        return out


@dataclass(slots=True)
class TransformDef(StepDef):
    expression: Any
    kind = "transform"

    def describe(self) -> str:
        return f"transform({describe_callable(self.expression)})"


@dataclass(slots=True)
class SetHeaderDef(StepDef):
    name: str
    expression: Any
    kind = "set_header"

    def describe(self) -> str:
        return f"set_header({self.name!r})"


@dataclass(slots=True)
class SetPropertyDef(StepDef):
    name: str
    expression: Any
    kind = "set_property"

    def describe(self) -> str:
        return f"set_property({self.name!r})"


@dataclass(slots=True)
class RemoveHeaderDef(StepDef):
    patterns: tuple[str, ...]
    kind = "remove_header"

    def describe(self) -> str:
        return f"remove_header({', '.join(map(repr, self.patterns))})"


@dataclass(slots=True)
class ProcessDef(StepDef):
    processor: Any
    kind = "process"

    def describe(self) -> str:
        return f"process({describe_callable(self.processor)})"


@dataclass(slots=True)
class MarshalDef(StepDef):
    data_format: DataFormat
    kind = "marshal"

    def describe(self) -> str:
        return f"marshal({self.data_format.name})"


@dataclass(slots=True)
class UnmarshalDef(StepDef):
    data_format: DataFormat
    kind = "unmarshal"

    def describe(self) -> str:
        return f"unmarshal({self.data_format.name})"


@dataclass(slots=True)
class MapFieldsDef(StepDef):
    mapper: Callable[[Any], Any]
    kind = "map_fields"

    def describe(self) -> str:
        return f"map_fields({describe_callable(self.mapper)})"


@dataclass(slots=True)
class LogDef(StepDef):
    message: Any
    level: int = logging.INFO
    logger: str | None = None
    kind = "log"

    def describe(self) -> str:
        text = self.message if isinstance(self.message, str) else describe_callable(self.message)
        return f"log({text!r})"


@dataclass(slots=True)
class StopDef(StepDef):
    kind = "stop"

    def describe(self) -> str:
        return "stop()"


@dataclass(slots=True)
class DefaultErrorHandler:
    """Redeliver as the policy says, then let the exchange fail (the default: no redelivery)."""

    redelivery: RedeliveryPolicy = field(default_factory=RedeliveryPolicy)


@dataclass(slots=True)
class DeadLetterChannel:
    """Redeliver as the policy says, then send the exchange to ``endpoint`` and count it handled.

    With ``use_original_message`` the message as it entered the route is sent (with the failure
    headers added), not the one as it was when the step failed.
    """

    endpoint: EndpointRef
    redelivery: RedeliveryPolicy = field(default_factory=RedeliveryPolicy)
    use_original_message: bool = False


ErrorHandlerDef = DefaultErrorHandler | DeadLetterChannel


@dataclass(slots=True)
class OnExceptionDef:
    types: tuple[type[BaseException], ...]
    redelivery: RedeliveryPolicy | None = None
    handled: bool = False
    continued: bool = False
    steps: list[StepDef] = field(default_factory=list)

    def describe(self) -> str:
        names = ", ".join(t.__name__ for t in self.types)
        flags = " handled" if self.handled else " continued" if self.continued else ""
        return f"on_exception({names}){flags}"


@dataclass(slots=True)
class RouteModel:
    """One route as data."""

    source: EndpointRef
    route_id: str
    steps: list[StepDef] = field(default_factory=list)
    error_handler: ErrorHandlerDef | None = None
    on_exceptions: list[OnExceptionDef] = field(default_factory=list)
    auto_startup: bool = True
    description: str | None = None
    origin: str | None = None
    #: Where the route was declared (``routes/orders.py:12``), for errors that name the file.
    defined_at: str | None = None
    #: The route's audit trail (``.audit(...)``, see :mod:`eip.audit`), None when it keeps none.
    audit: AuditSpec | None = None

    @property
    def source_uri(self) -> str:
        return endpoint_text(self.source)
