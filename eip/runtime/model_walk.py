"""Walking route models for the endpoints they use, without compiling or starting anything.

Shared by ``eip check`` (:mod:`eip.runtime.check`) and the memory-hop warnings
(:mod:`eip.runtime.memory_hops`): each :class:`EndpointUse` is one endpoint a route consumes or
sends to (a ``to``, a dead letter channel, a wire tap, an enricher, a recipient list of constant
URIs, a ``to_d`` without placeholders, an aggregator's dead letter), with the step that names it
as the compiler numbers it (``3 > when 1 > 2``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, NamedTuple

from eip.components.base import Component, EndpointSpec
from eip.dsl.dynamic import ToDynamicDef
from eip.dsl.model import ChoiceDef, DeadLetterChannel, EndpointRef, RouteModel, StepDef
from eip.dsl.routing import RecipientListDef
from eip.expressions import Expression

if TYPE_CHECKING:
    from eip.runtime.context import Context

__all__ = [
    "EndpointUse",
    "Resolved",
    "dynamic_prefixes",
    "endpoint_uses",
    "internal_key",
    "resolve_ref",
    "step_children",
]

#: An endpoint's component and spec, or None when it cannot be parsed.
Resolved = tuple[Component, EndpointSpec] | None


class EndpointUse(NamedTuple):
    """An endpoint a route consumes (``from``) or sends to, and where."""

    model: RouteModel
    step: str
    ref: EndpointRef
    consumes: bool
    #: The error handler or clause it belongs to: shared by a builder's routes, reported once.
    shared: object | None = None
    #: The step that sends (None for ``from`` and a dead letter channel).
    sender: StepDef | None = None


def endpoint_uses(model: RouteModel) -> Iterator[EndpointUse]:
    """Every endpoint the route consumes or sends to that is known before messages flow."""
    yield EndpointUse(model, "from", model.source, True)
    handler = model.error_handler
    if isinstance(handler, DeadLetterChannel):
        yield EndpointUse(model, "dead_letter_channel", handler.endpoint, False, handler)
    yield from _step_uses(model, model.steps, "", None)
    for clause in model.on_exceptions:
        yield from _step_uses(model, clause.steps, f"{clause.describe()} > ", clause)


def _step_uses(
    model: RouteModel, steps: list[StepDef], prefix: str, shared: object | None
) -> Iterator[EndpointUse]:
    for number, step in enumerate(steps, 1):
        label = f"{prefix}{number}"
        for ref in _static_endpoints(step):
            yield EndpointUse(model, label, ref, False, shared, step)
        for child, nested in step_children(step):
            yield from _step_uses(model, nested, f"{label} > {child} > ", shared)


def step_children(step: StepDef) -> list[tuple[str, list[StepDef]]]:
    """A step's nested step lists, labelled as the compiler labels them."""
    if isinstance(step, ChoiceDef):  # numbered as the compiler numbers them
        out = [(f"when {n}", w.steps) for n, w in enumerate(step.whens, 1)]
        return out + ([("otherwise", step.otherwise)] if step.otherwise is not None else [])
    return step.children()


def _static_endpoints(step: StepDef) -> list[EndpointRef]:
    """The endpoints a step sends to that are known before any message flows."""
    found: list[EndpointRef] = [
        value
        for name in ("endpoint", "dead_letter")  # to, wire_tap, enrich; aggregate
        if isinstance(value := getattr(step, name, None), str | EndpointSpec)
    ]
    if isinstance(step, ToDynamicDef) and isinstance(step.target, str) and "{" not in step.target:
        found.append(step.target)
    if isinstance(step, RecipientListDef):
        found += _constant_recipients(step)
    return found


def _constant_recipients(step: RecipientListDef) -> list[EndpointRef]:
    expression = step.expression
    if not (isinstance(expression, Expression) and expression.description.startswith("constant(")):
        return []
    value = expression.fn(None)  # type: ignore[arg-type]  # a constant ignores the exchange
    items = value if isinstance(value, list | tuple) else [value]
    out: list[EndpointRef] = []
    for item in items:
        if isinstance(item, str):
            out += [part.strip() for part in item.split(step.delimiter) if part.strip()]
        elif isinstance(item, EndpointSpec):
            out.append(item)
    return out


def dynamic_prefixes(models: list[RouteModel]) -> list[str]:
    """The fixed starts of ``to_d`` templates (``direct:{headers[kind]}`` -> ``direct:``)."""
    prefixes: list[str] = []

    def walk(steps: list[StepDef]) -> None:
        for step in steps:
            target = step.target if isinstance(step, ToDynamicDef) else None
            if isinstance(target, str) and "{" in target:
                prefixes.append(target.partition("{")[0])
            for _, nested in step_children(step):
                walk(nested)

    for model in models:
        walk(model.steps)
        for clause in model.on_exceptions:
            walk(clause.steps)
    return prefixes


def resolve_ref(context: Context, ref: EndpointRef) -> tuple[Component, EndpointSpec] | None:
    """The component and spec of an endpoint, its placeholders resolved where they can be,
    parsed but not validated (the compiler reports invalid ones); None when it cannot even
    be parsed."""
    try:
        ref = context.properties.resolve_ref(ref, strict=False).value
        if isinstance(ref, EndpointSpec):
            return context.component(ref.scheme), ref
        scheme = ref.partition(":")[0]
        component = context.component(scheme)
        return component, component.parse(ref)
    except Exception:  # reported by the compiler, with its route and step
        return None


def internal_key(resolved: tuple[Component, EndpointSpec] | None) -> str | None:
    """``direct:name`` / ``seda:name`` for an in-process endpoint, else None."""
    if resolved is None or not getattr(resolved[0], "internal", False):
        return None
    spec = resolved[1]
    key = f"{spec.scheme}:{getattr(spec, spec.path_field, '')}"
    return None if "{{" in key else key  # a placeholder without a value: reported as such
