"""Route pictures as one self-contained SVG: no fonts, stylesheets or scripts to fetch.

Each route is a ``<g class="route" data-route=...>`` with its title; each node a
``<g class="node" id=... data-node=... data-kind=...>`` (a rounded rect, the step kind, a
short label, the full description as its ``<title>`` tooltip) holding an empty
``<text class="counter" data-node=...>`` that the console fills with live counters. Styles are
presentation attributes, so the picture looks the same in a browser, an ``<img>`` or a file
viewer. Every text comes from user code (route ids, labels, URIs), so all of it is escaped,
and characters XML cannot hold are dropped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from eip.dsl.model import RouteModel
from eip.server.graph_layout import (
    LINE_CHARS,
    NODE_W,
    Edge,
    Frame,
    Placed,
    RouteLayout,
    layout_route,
    node_height,
)
from eip.server.graph_model import build_graph

__all__ = ["escape", "fit", "render_svg", "shorten_uri"]

ROUTE_GAP = 18.0
MAX_WIDTH = 1600.0  # routes are set side by side in rows up to this width
_FONT = "DejaVu Sans, Liberation Sans, Arial, Helvetica, sans-serif"
_CHAR_W = 6.3  # mean advance of an 11px sans-serif character, for fitting labels
_KIND_CHARS = 24
# XML 1.0 cannot carry C0 controls (but tab, newline, return), surrogates, U+FFFE/U+FFFF.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")

# (fill, stroke) by what a node does.
_STYLE = {
    "from": ("#d2e3fc", "#1a4fb0"),
    "endpoint": ("#e8f0fe", "#3367d6"),
    "routing": ("#fef3e0", "#c27c00"),
    "error": ("#fde8e8", "#c5221f"),
    "step": ("#f1f3f4", "#6b7075"),
}
_CATEGORY = {
    "from": "from",
    "to": "endpoint",
    "to_d": "endpoint",
    "enrich": "endpoint",
    "wire_tap": "endpoint",
    "recipient_list": "endpoint",
    "choice": "routing",
    "filter": "routing",
    "multicast": "routing",
    "split": "routing",
    "aggregate": "routing",
    "circuit_breaker": "routing",
    "throttle": "routing",
    "idempotent_consumer": "routing",
    "stop": "routing",
    "on_exception": "error",
    "error_handler": "error",
    "dead_letter_channel": "error",
}


def category(kind: str) -> str:
    """``from``, ``endpoint``, ``routing``, ``error`` or ``step`` (Mermaid uses these too)."""
    return _CATEGORY.get(kind, "step")


def escape(text: str) -> str:
    """Text safe in XML content and in double- or single-quoted attributes."""
    text = _NOT_XML.sub("", text)
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("'", "&#39;")
    )


def fit(text: str, chars: int) -> str:
    """``text`` cut to ``chars`` characters, ending in an ellipsis when it was longer."""
    text = " ".join(text.split())
    return text if len(text) <= chars else text[: chars - 1] + "\u2026"


def shorten_uri(uri: str, chars: int = LINE_CHARS) -> str:
    """A long URI with its middle elided: the scheme and path stay, and the query's end."""
    uri = " ".join(uri.split())
    if len(uri) <= chars:
        return uri
    tail = chars // 3
    head = chars - tail - 1
    return f"{uri[:head]}\u2026{uri[-tail:]}"


def render_svg(models: Iterable[RouteModel], *, max_width: float = MAX_WIDTH) -> str:
    """One SVG picture of the routes, in rows up to ``max_width`` wide (a route wider than
    that gets a row of its own)."""
    layouts = [layout_route(build_graph(model)) for model in models]
    parts: list[str] = []
    x = y = row_h = width = 0.0
    for lay in layouts:
        if x > 0 and x + lay.width > max_width:
            x, y, row_h = 0.0, y + row_h + ROUTE_GAP, 0.0
        parts.append(_route(lay, x, y))
        width = max(width, x + lay.width)
        x += lay.width + ROUTE_GAP
        row_h = max(row_h, lay.height)
    height = y + row_h
    if not layouts:
        width, height = 200.0, 40.0
        parts.append('<text x="16" y="24" fill="#6b7075" font-size="12">no routes</text>')
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="eip-routes" width="{width:g}" '
        f'height="{height:g}" viewBox="0 0 {width:g} {height:g}" font-family="{_FONT}" '
        f'font-size="11">'
        '<defs><marker id="eip-arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" '
        'markerHeight="8" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        'fill="#5f6368"/></marker></defs>'
        f"{''.join(parts)}</svg>\n"
    )


def _route(lay: RouteLayout, x: float, y: float) -> str:
    rid = escape(lay.route_id)
    out = [
        f'<g class="route" data-route="{rid}" transform="translate({x:g},{y:g})">',
        f'<rect class="route-frame" x="0.5" y="0.5" width="{lay.width - 1:g}" '
        f'height="{lay.height - 1:g}" rx="10" fill="#ffffff" stroke="#dadce0"/>',
        f'<text class="route-title" x="16" y="22" font-size="14" font-weight="bold" '
        f'fill="#202124">{escape(fit(lay.route_id, 80))}</text>',
    ]
    if lay.description:
        width_chars = max(int((lay.width - 32) / _CHAR_W), 20)
        out.append(
            f'<text class="route-description" x="16" y="38" fill="#5f6368">'
            f"{escape(fit(lay.description, width_chars))}</text>"
        )
    if lay.handlers_x is not None:
        x = lay.handlers_x
        out.append(
            f'<line x1="{x:g}" y1="46" x2="{x:g}" y2="{lay.height - 12:g}" stroke="#dadce0" '
            f'stroke-dasharray="4 4"/><text class="section" x="{x + 24:g}" y="58" '
            f'fill="#c5221f" font-weight="bold">on failure</text>'
        )
    out.extend(_frame(frame) for frame in lay.frames)
    out.append('<g class="edges">')
    out.extend(_edge(edge) for edge in lay.edges)
    out.append("</g>")
    out.extend(
        f'<circle class="join" data-join="{escape(j.id)}" cx="{j.x:g}" cy="{j.y:g}" r="4" '
        f'fill="#5f6368"/>'
        for j in lay.joints
    )
    out.append('<g class="nodes">')
    out.extend(_node(placed) for placed in lay.placed)
    out.append("</g></g>")
    return "".join(out)


def _edge(edge: Edge) -> str:
    d = " ".join(f"{'M' if i == 0 else 'L'}{x:g},{y:g}" for i, (x, y) in enumerate(edge.points))
    arrow = ' marker-end="url(#eip-arrow)"' if edge.arrow else ""
    text = ""
    if edge.label and edge.label_at is not None:
        lx, ly = edge.label_at
        text = (
            f'<text class="edge-label" x="{lx:g}" y="{ly:g}" font-size="10" fill="#5f6368">'
            f"{escape(fit(edge.label, 30))}</text>"
        )
    return (
        f'<path class="edge" data-source="{escape(edge.source)}" '
        f'data-target="{escape(edge.target)}" d="{d}" fill="none" stroke="#5f6368" '
        f'stroke-width="1.3"{arrow}/>{text}'
    )


def _uri_break(uri: str) -> int:
    """Where a long URI's first line ends: before its last ``/ ? &`` that fits, if any."""
    cut = max(uri.rfind(ch, LINE_CHARS // 2, LINE_CHARS) for ch in "/?&")
    return cut if cut > 0 else LINE_CHARS


def _frame(frame: Frame) -> str:
    chars = max(int((frame.width - 16) / 5.8), 4)
    return (
        f'<rect class="branch" x="{frame.x:g}" y="{frame.y:g}" width="{frame.width:g}" '
        f'height="{frame.height:g}" rx="8" fill="#fafafa" stroke="#bdc1c6" '
        f'stroke-dasharray="4 3"/><text class="branch-label" x="{frame.x + 8:g}" '
        f'y="{frame.y + 13:g}" font-size="10" fill="#5f6368">{escape(fit(frame.label, chars))}'
        "</text>"
    )


def _node(placed: Placed) -> str:
    node = placed.node
    nid = escape(node.id)
    fill, stroke = _STYLE[category(node.kind)]
    height = node_height(node)
    if node.uri is None:
        lines = [fit(node.label, LINE_CHARS)]
    elif len(node.label) <= LINE_CHARS:
        lines = [node.label]
    else:  # the scheme and name on the first line, the rest (elided in the middle) below
        cut = _uri_break(node.label)
        lines = [node.label[:cut], shorten_uri(node.label[cut:])]
    tip = node.detail or node.label
    if node.uri is not None and node.uri not in tip:
        tip = f"{tip}\n{node.uri}"
    width = 2.0 if node.kind == "from" else 1.2
    text = "".join(
        f'<text class="label" x="10" y="{35 + 14 * n}" fill="#202124">{escape(line)}</text>'
        for n, line in enumerate(lines)
    )
    return (
        f'<g class="node" id="{nid}" data-node="{nid}" data-kind="{escape(node.kind)}" '
        f'transform="translate({placed.x:g},{placed.y:g})">'
        f"<title>{escape(tip)}</title>"
        f'<rect width="{NODE_W:g}" height="{height:g}" rx="9" fill="{fill}" stroke="{stroke}" '
        f'stroke-width="{width:g}"/>'
        f'<text class="kind" x="10" y="17" font-size="10" font-weight="bold" fill="{stroke}">'
        f"{escape(fit(node.kind.replace('_', ' '), _KIND_CHARS))}</text>"
        f'<text class="counter" data-node="{nid}" x="{NODE_W - 10:g}" y="17" font-size="10" '
        f'text-anchor="end" fill="#202124"></text>{text}</g>'
    )
