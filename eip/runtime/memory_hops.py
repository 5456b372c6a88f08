"""Where a crash would lose acknowledged messages: a memory ``seda:`` hop after a source that
is settled on completion.

A RabbitMQ consumer acks, a file consumer moves its file and an in-only HTTP consumer answers
202 once the exchange *completes*. A send to a memory-only ``seda:`` queue completes as soon as
the queue has taken a copy, so the source is settled while the copy still waits in memory: a
crash (SIGKILL, OOM, power) loses what the queue holds. :func:`memory_hops` finds each such
send, and ``eip check`` and the context's start report it as a warning naming the route, the
step and the endpoint.

What counts:

- a route **acknowledges its source** when its ``from`` component says so
  (:meth:`~eip.components.base.Component.acknowledges_source`: RabbitMQ; file unless
  ``noop``; HTTP ``pattern=in-only``; a durable seda queue, whose row is deleted on
  completion). A route called synchronously by one (through ``direct:``, or ``seda:`` with
  ``wait_for_completion=true``) completes inside its caller's exchange, so it counts too;
- every send that completes with the exchange: ``to``, choice branches, multicast outputs,
  split parts, recipient lists of constant URIs, ``to_d`` without placeholders, a dead letter
  channel, ``on_exception`` clauses, an aggregator's dead letter;
- not a **wire tap**: it is fire-and-forget by design (it queues the copy in memory and drops
  it when its own queue is full), whatever its endpoint; not an **enricher**: it sends in-out,
  and seda waits for an in-out exchange.

A send with ``wait_for_completion=true`` or to a durable queue (``durable=true&path=FILE``)
is fine: the source is settled only once the consuming route finished, or once the message is
in the file.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, NamedTuple

from eip.dsl.model import RouteModel, endpoint_text
from eip.dsl.routing import EnrichDef, WireTapDef
from eip.errors import RouteDefinitionError, redact_uri
from eip.runtime.model_walk import (
    EndpointUse,
    Resolved,
    endpoint_uses,
    internal_key,
    resolve_ref,
)

if TYPE_CHECKING:
    from eip.runtime.context import Context

__all__ = ["MemoryHop", "memory_hops", "warn_memory_hops"]

log = logging.getLogger("eip.context")


class MemoryHop:
    """One send to a memory seda queue that a crash could lose acknowledged messages at."""

    __slots__ = ("endpoint", "model", "step", "text")

    def __init__(self, model: RouteModel, step: str, endpoint: str, text: str) -> None:
        self.model = model
        self.step = step
        self.endpoint = endpoint
        self.text = text

    @property
    def route_id(self) -> str:
        return self.model.route_id

    @property
    def message(self) -> str:
        """One line: the file and line, the route, the step, then what and why."""
        where = RouteDefinitionError(
            self.text, route_id=self.model.route_id, step=self.step, location=self.model.defined_at
        )
        return str(where)


class _Origin(NamedTuple):
    """The acknowledged source a route's exchanges complete for."""

    route_id: str
    source: str


def memory_hops(
    context: Context, resolved: list[tuple[EndpointUse, Resolved]] | None = None
) -> list[MemoryHop]:
    """Each send that completes before its message is safe while the route's source (or its
    caller's) is settled on completion; in route and step order."""
    if resolved is None:
        uses = [use for model in context.route_models for use in endpoint_uses(model)]
        resolved = [(use, resolve_ref(context, use.ref)) for use in uses]
    origins = _acknowledging_routes(resolved)
    hops: list[MemoryHop] = []
    reported: set[tuple[int, str]] = set()
    for use, found in resolved:
        origin = origins.get(use.model.route_id)
        if origin is None or use.consumes or found is None or _detached(use):
            continue
        key = internal_key(found)
        if key is None or not key.startswith("seda:") or _waits(found):
            continue
        if use.shared is not None:  # a builder's error handling: once, not once per route
            if (id(use.shared), key) in reported:
                continue
            reported.add((id(use.shared), key))
        hops.append(MemoryHop(use.model, use.step, key, _why(key, use, origin)))
    return hops


def warn_memory_hops(context: Context) -> list[MemoryHop]:
    """Log one WARNING per memory hop (the context calls this once, when it starts)."""
    hops = memory_hops(context)
    for hop in hops:
        log.warning("%s", hop.message, extra={"route_id": hop.route_id})
    return hops


def _acknowledging_routes(resolved: list[tuple[EndpointUse, Resolved]]) -> dict[str, _Origin]:
    """Route id -> the acknowledged source its exchanges complete for: its own, or that of a
    route that calls it synchronously (``direct:``, waiting ``seda:``)."""
    origins: dict[str, _Origin] = {}
    consumers: dict[str, list[str]] = {}
    for use, found in resolved:
        if not use.consumes or found is None:
            continue
        key = internal_key(found)
        if key is not None:
            consumers.setdefault(key, []).append(use.model.route_id)
        if found[0].acknowledges_source(found[1]):
            origins[use.model.route_id] = _Origin(use.model.route_id, _shown(use))
    calls = [
        (use.model.route_id, key)
        for use, found in resolved
        if not use.consumes
        and found is not None
        and not _detached(use)
        and (key := internal_key(found)) is not None
        and _waits(found)
    ]
    changed = True
    while changed:
        changed = False
        for caller, key in calls:
            origin = origins.get(caller)
            if origin is None:
                continue
            for callee in consumers.get(key, ()):
                if callee not in origins:
                    origins[callee] = origin
                    changed = True
    return origins


def _waits(found: Resolved) -> bool:
    """Whether a send to this in-process endpoint completes only with the consuming route's
    exchange (``direct:``, waiting ``seda:``), or once the message is durable."""
    if found is None:
        return False
    spec = found[1]
    if spec.scheme != "seda":
        return True  # direct: calls the consuming route in place
    return bool(getattr(spec, "wait_for_completion", False) or getattr(spec, "durable", False))


def _detached(use: EndpointUse) -> bool:
    """Sends whose outcome the route does not hold: a wire tap (fire-and-forget by design),
    an enricher (in-out: seda waits for it)."""
    return isinstance(use.sender, WireTapDef | EnrichDef)


def _shown(use: EndpointUse) -> str:
    return redact_uri(endpoint_text(use.ref))


def _why(key: str, use: EndpointUse, origin: _Origin) -> str:
    if origin.route_id == use.model.route_id:
        source = f"its source {origin.source}"
    else:
        source = f"the source of route '{origin.route_id}' ({origin.source})"
    return (
        f"sends to {key} without wait_for_completion=true: {source} is acknowledged as soon as "
        f"the in-memory queue has taken the message, so a crash loses what the queue holds; "
        f"set wait_for_completion=true, make the queue durable ({key}?durable=true&path=FILE), "
        "or send through RabbitMQ"
    )
