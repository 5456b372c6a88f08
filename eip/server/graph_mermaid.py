"""Route pictures as Mermaid ``flowchart TD`` text, for docs (GitHub and most doc sites draw it).

Mermaid lays out by itself, so only the graph is written: nodes with quoted labels, and edges
from each step to the next; the branches of a fan-out run from its head and each branch's
last step goes straight to the step after the fan-out (Mermaid draws no join point). Node ids
are generated (``r1_n4``) because route ids may hold any character; the node's eip id is
kept in a ``%%`` comment on the line above it. Labels use Mermaid's entity codes for the characters
its grammar would read (``"`` is ``#quot;``), so user text cannot break the diagram.
"""

from __future__ import annotations

from collections.abc import Iterable

from eip.dsl.model import RouteModel
from eip.server.graph_model import Chain, Leaf, NodeInfo, RouteGraph, build_graph
from eip.server.graph_svg import category, fit, shorten_uri

__all__ = ["mermaid_label", "render_mermaid"]

_ENTITIES = {
    "#": "#35;",  # first: every other code starts with '#'
    '"': "#quot;",
    "<": "#lt;",
    ">": "#gt;",
    "&": "#amp;",
    "`": "#96;",
    "|": "#124;",
    "%": "#37;",
    "\\": "#92;",
}
_STYLE = {
    "from": "fill:#d2e3fc,stroke:#1a4fb0,stroke-width:2px",
    "endpoint": "fill:#e8f0fe,stroke:#3367d6",
    "routing": "fill:#fef3e0,stroke:#c27c00",
    "error": "fill:#fde8e8,stroke:#c5221f",
    "step": "fill:#f1f3f4,stroke:#6b7075",
}
#: An open end of a chain: the node an edge leaves from, and the edge's label.
_Exit = tuple[str, str | None]

# Shapes by category: stadium for endpoints, rhombus for a choice, rectangle otherwise.
_SHAPES = {"from": ("([", "])"), "endpoint": ("([", "])")}


def mermaid_label(text: str) -> str:
    """``text`` as the inside of a Mermaid ``"..."`` label."""
    text = " ".join(text.split())
    return "".join(_ENTITIES.get(ch, ch) for ch in text)


def render_mermaid(models: Iterable[RouteModel], *, markdown: bool = False) -> str:
    """One ``flowchart TD`` with a subgraph per route; with ``markdown``, a Markdown page with
    a heading and a fenced ``flowchart TD`` per route instead."""
    graphs = [build_graph(model) for model in models]
    if not markdown:
        lines = ["flowchart TD"]
        for n, graph in enumerate(graphs, 1):
            title = graph.route_id + (f": {graph.description}" if graph.description else "")
            lines.append(f'    subgraph r{n}["{mermaid_label(title)}"]')
            lines.extend(f"        {line}" for line in _body(graph, f"r{n}"))
            lines.append("    end")
        lines.extend(_class_defs())
        return "\n".join(lines) + "\n"
    out: list[str] = []
    for n, graph in enumerate(graphs, 1):
        out.append(f"## {graph.route_id}\n")
        if graph.description:
            out.append(f"{graph.description}\n")
        body = ["flowchart TD", *(f"    {line}" for line in _body(graph, f"r{n}")), *_class_defs()]
        out.append("```mermaid\n" + "\n".join(body) + "\n```\n")
    return "\n".join(out)


def _class_defs() -> list[str]:
    return [f"    classDef eip_{name} {style}" for name, style in _STYLE.items()]


def _body(graph: RouteGraph, prefix: str) -> list[str]:
    writer = _Writer(prefix)
    writer.chain(graph.main, [])
    for chain in graph.handlers:
        writer.chain(chain, [])
    return writer.nodes + writer.edges + writer.classes()


class _Writer:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.ids: dict[str, str] = {}
        self.kinds: dict[str, list[str]] = {}
        self.nodes: list[str] = []
        self.edges: list[str] = []

    def node(self, info: NodeInfo) -> str:
        mid = f"{self.prefix}_n{len(self.ids)}"
        self.ids[info.id] = mid
        kind = category(info.kind)
        self.kinds.setdefault(kind, []).append(mid)
        label = shorten_uri(info.label, 60) if info.uri is not None else fit(info.label, 60)
        text = mermaid_label(f"{info.kind}: {label}" if label else info.kind)
        left, right = ("{", "}") if info.kind == "choice" else _SHAPES.get(kind, ("[", "]"))
        self.nodes.append(f"%% {mermaid_label(info.id)}")
        self.nodes.append(f'{mid}{left}"{text}"{right}')
        return mid

    def chain(self, chain: Chain, incoming: list[_Exit]) -> list[_Exit]:
        """Write ``chain``, its first node reached from ``incoming``; return its open exits.
        An empty chain (a choice without otherwise) passes ``incoming`` straight on."""
        exits = incoming
        for item in chain.items:
            if isinstance(item, Leaf):
                mid = self.node(item.node)
                self.connect(exits, mid)
                exits = [] if item.ends else [(mid, item.then)]
            else:
                head = self.node(item.head)
                self.connect(exits, head)
                exits = []
                for label, branch in item.branches:
                    exits.extend(self.chain(branch, [(head, label)]))
        return exits

    def connect(self, sources: list[_Exit], target: str) -> None:
        for source, label in sources:
            arrow = f' -->|"{mermaid_label(label)}"| ' if label else " --> "
            self.edges.append(f"{source}{arrow}{target}")

    def classes(self) -> list[str]:
        return [f"class {','.join(ids)} eip_{kind}" for kind, ids in self.kinds.items()]
