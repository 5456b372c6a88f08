"""A route model as a graph: nodes with stable ids, in a tree of chains and fan-outs.

This is the one walk of the model that the route pictures (:mod:`eip.server.graph_svg`,
:mod:`eip.server.graph_mermaid`) and the control API share, so a counter the API reports for
a node id lands on the node the console drew with that id.

Node ids are the route id and the step's path, joined by ``/``, in the compiler's numbering
(see :mod:`eip.dsl.compiler`): ``crm-sync/from``, ``crm-sync/3`` (the third step),
``crm-sync/3/when-1/2`` (the second step of its first ``when``), ``crm-sync/3/otherwise/1``,
``.../output-2/1`` (multicast), ``.../each-part/1`` (split), ``.../protected/1`` and
``.../fallback/1`` (circuit breaker); error handling: ``crm-sync/on-exception-1`` and its
steps ``crm-sync/on-exception-1/1``, and ``crm-sync/dead-letter`` or ``crm-sync/error-handler``.
:func:`node_id_for_step_path` maps a compiler step path (``3 > when 1 > 2``) to its node.

Step kinds outside eip still appear: any step is a node, and one whose ``children()`` returns
sub-pipelines fans out into them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from eip.components.base import EndpointSpec
from eip.dsl.model import (
    ChoiceDef,
    DeadLetterChannel,
    DefaultErrorHandler,
    OnExceptionDef,
    RouteModel,
    StepDef,
    StopDef,
    endpoint_text,
)
from eip.processors.base import describe_callable
from eip.redaction import redact_uri

__all__ = [
    "Chain",
    "Fan",
    "Leaf",
    "NodeInfo",
    "RouteGraph",
    "build_graph",
    "node_id",
    "node_id_for_step_path",
    "nodes",
]

# ``Builder.configure.<locals>.<lambda>`` reads as ``<lambda>`` in a picture; the full name
# stays in the node's detail (its tooltip).
_LOCALS = re.compile(r"[\w.]*<locals>\.")
_NOT_WORD = re.compile(r"[^0-9A-Za-z]+")
_DOWNSTREAM = re.compile(r"(\d+) \(downstream\)")
_NUMBERED = re.compile(r"(\d+) ")  # "4 to(mock:x)": a step number and its description


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """One node of a route's picture: a step, the route's source, or its error handling.

    ``label`` is short and readable (for the picture); ``detail`` is the step's full
    description; ``uri`` is the endpoint of an endpoint node, credentials redacted.
    """

    id: str
    kind: str
    label: str
    uri: str | None = None
    detail: str = ""


@dataclass(slots=True)
class Leaf:
    """A node the exchange passes through. ``ends``: nothing runs after it (``stop()``);
    ``then``: the label of the edge that leaves it (``each part`` after a split)."""

    node: NodeInfo
    ends: bool = False
    then: str | None = None


@dataclass(slots=True)
class Fan:
    """A node whose sub-pipelines (branches, outputs, parts) run below it and join again."""

    head: NodeInfo
    branches: list[tuple[str, Chain]]
    join: str


@dataclass(slots=True)
class Chain:
    items: list[Leaf | Fan] = field(default_factory=list)


@dataclass(slots=True)
class RouteGraph:
    route_id: str
    description: str | None
    main: Chain
    #: ``on_exception`` clauses (the clause, then its steps) and the error handler.
    handlers: list[Chain]


def node_id(route_id: str, path: Sequence[str]) -> str:
    """The stable id of the node at ``path`` (``["3", "when-1", "2"]``) in a route."""
    return "/".join((route_id, *path))


def build_graph(model: RouteModel) -> RouteGraph:
    """Walk ``model`` into its graph (no layout yet)."""
    rid = model.route_id
    source = model.source_uri
    main = Chain([Leaf(NodeInfo(node_id(rid, ["from"]), "from", source, source, source))])
    main.items.extend(_chain(rid, [], model.steps).items)
    handlers = [_clause(rid, n, clause) for n, clause in enumerate(model.on_exceptions, 1)]
    handler = _error_handler(rid, model)
    if handler is not None:
        handlers.append(Chain([Leaf(handler)]))
    return RouteGraph(rid, model.description, main, handlers)


def nodes(model: RouteModel) -> list[NodeInfo]:
    """Every node of the route, in reading order: source, steps, then error handling."""
    graph = build_graph(model)
    out = list(_walk(graph.main))
    for chain in graph.handlers:
        out.extend(_walk(chain))
    return out


def node_id_for_step_path(model: RouteModel, where: str) -> str:
    """The node for a compiler step path (``RouteDefinitionError.step``, a pipeline's name):
    ``"3 > when 1 > 2"`` is ``<route>/3/when-1/2``. A path inside a node that has no node of
    its own (a wire tap's send) gives that node; an empty path gives the ``from`` node."""
    parts = [p.strip() for p in where.split(" > ") if p.strip()]
    segments: list[str] = []
    for n, part in enumerate(parts):
        downstream = _DOWNSTREAM.fullmatch(part)
        if downstream is not None:
            # Steps after an aggregate or split are compiled as its downstream, numbered anew.
            base = int(downstream.group(1))
            following = parts[n + 1] if n + 1 < len(parts) else None
            if following is not None and following.isdigit():
                parts[n + 1] = str(base + int(following))
                continue
            part = str(base)
        segments.append(_segment(model, part))
    known = {info.id for info in nodes(model)}
    while segments and node_id(model.route_id, segments) not in known:
        segments.pop()
    return node_id(model.route_id, segments or ["from"])


def _segment(model: RouteModel, part: str) -> str:
    if part.isdigit():
        return part
    numbered = _NUMBERED.match(part)
    if numbered is not None:
        return numbered.group(1)
    if part == "dead_letter_channel":
        return "dead-letter"
    for n, clause in enumerate(model.on_exceptions, 1):
        if part == clause.describe():
            return f"on-exception-{n}"
    return _slug(part)


def _walk(chain: Chain) -> Iterator[NodeInfo]:
    for item in chain.items:
        if isinstance(item, Leaf):
            yield item.node
        else:
            yield item.head
            for _, branch in item.branches:
                yield from _walk(branch)


def _chain(rid: str, prefix: list[str], steps: list[StepDef]) -> Chain:
    chain = Chain()
    for number, step in enumerate(steps, 1):
        path = [*prefix, str(number)]
        node = _node(node_id(rid, path), step)
        branches = _branches(step)
        if branches:
            chain.items.append(
                Fan(
                    node,
                    [(label, _chain(rid, [*path, seg], sub)) for seg, label, sub in branches],
                    node_id(rid, [*path, "join"]),
                )
            )
        else:
            chain.items.append(Leaf(node, isinstance(step, StopDef), _then(step)))
    return chain


def _branches(step: StepDef) -> list[tuple[str, str, list[StepDef]]]:
    """(id segment, edge label, steps) of each sub-pipeline, numbered as the compiler does."""
    if isinstance(step, ChoiceDef):
        out = [
            (f"when-{n}", f"when {n}: {_short(describe_callable(w.predicate))}", w.steps)
            for n, w in enumerate(step.whens, 1)
        ]
        # Without an otherwise, an exchange that matches no when goes straight on: an empty lane.
        out.append(("otherwise", "otherwise", step.otherwise or []))
        return out
    return [(_slug(label), label, sub) for label, sub in step.children()]


def _then(step: StepDef) -> str | None:
    """A split without a sub-pipeline runs the rest of the route per part; an aggregate runs
    it per completed group."""
    if not getattr(step, "takes_rest", False):
        return None
    return "each group" if step.kind == "aggregate" else "each part"


def _node(nid: str, step: StepDef) -> NodeInfo:
    detail = step.describe()
    uri = _uri(step)
    if uri is not None:
        return NodeInfo(nid, step.kind, uri, uri, detail)
    return NodeInfo(nid, step.kind, _inner(detail, step.kind), None, detail)


def _uri(step: StepDef) -> str | None:
    endpoint = getattr(step, "endpoint", None)
    if isinstance(endpoint, str | EndpointSpec):
        return endpoint_text(endpoint)
    target = getattr(step, "target", None)  # to_d with a URI template
    if step.kind == "to_d" and isinstance(target, str):
        return redact_uri(target)
    return None


def _inner(text: str, kind: str) -> str:
    """``filter(is_web)`` labelled ``is_web``: the kind is shown on its own line."""
    if text.startswith(f"{kind}(") and text.endswith(")"):
        text = text[len(kind) + 1 : -1]
    elif text == kind:
        text = ""
    return _short(text)


def _short(text: str) -> str:
    return _LOCALS.sub("", text)


def _slug(text: str) -> str:
    return _NOT_WORD.sub("-", text).strip("-").lower() or "branch"


def _clause(rid: str, number: int, clause: OnExceptionDef) -> Chain:
    seg = f"on-exception-{number}"
    names = ", ".join(t.__name__ if isinstance(t, type) else repr(t) for t in clause.types)
    flag = " (handled)" if clause.handled else " (continued)" if clause.continued else ""
    head = NodeInfo(node_id(rid, [seg]), "on_exception", names + flag, None, clause.describe())
    chain = Chain([Leaf(head)])
    chain.items.extend(_chain(rid, [seg], clause.steps).items)
    return chain


def _error_handler(rid: str, model: RouteModel) -> NodeInfo | None:
    handler = model.error_handler
    if isinstance(handler, DeadLetterChannel):
        uri = endpoint_text(handler.endpoint)
        retries = handler.redelivery.max_redeliveries
        detail = f"dead_letter_channel({uri}, max_redeliveries={retries})"
        return NodeInfo(node_id(rid, ["dead-letter"]), "dead_letter_channel", uri, uri, detail)
    if isinstance(handler, DefaultErrorHandler) and handler.redelivery.max_redeliveries:
        retries = handler.redelivery.max_redeliveries
        text = "for ever" if retries < 0 else f"{retries}x"
        label = f"redeliver {text}, then fail"
        detail = f"default_error_handler(max_redeliveries={retries})"
        return NodeInfo(node_id(rid, ["error-handler"]), "error_handler", label, None, detail)
    return None
