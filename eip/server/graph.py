"""Route graphs drawn from the route models: the console's SVG, ``eip graph``, Mermaid docs.

One renderer serves the live console (server-side SVG, live counters filled in by node id)
and offline use (``eip graph routes/ -o routes.svg``, ``--format mermaid``)::

    from eip.server.graph import nodes, render_mermaid, render_svg

    svg = render_svg(context.route_models)        # one <g class="route"> per route
    ids = [n.id for n in nodes(model)]            # "crm-sync/from", "crm-sync/3/when-1/2", ...

A route reads top to bottom from its ``from`` endpoint; the branches of a choice, the outputs
of a multicast, a split's per-part pipeline and a circuit breaker's protected and fallback
steps run side by side below their step and join again under it. Error handling (the
``on_exception`` clauses and a dead letter channel) is drawn to the right. Endpoint URIs are
shown redacted (:func:`eip.errors.redact_uri`) and shortened; the full description is each
node's tooltip. The parts: :mod:`~eip.server.graph_model` (the walk and the node ids),
:mod:`~eip.server.graph_layout`, :mod:`~eip.server.graph_svg`, :mod:`~eip.server.graph_mermaid`.
"""

from __future__ import annotations

from eip.server.graph_mermaid import render_mermaid
from eip.server.graph_model import NodeInfo, build_graph, node_id, node_id_for_step_path, nodes
from eip.server.graph_svg import render_svg

__all__ = [
    "NodeInfo",
    "build_graph",
    "node_id",
    "node_id_for_step_path",
    "nodes",
    "render_mermaid",
    "render_svg",
]
