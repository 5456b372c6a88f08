"""The live console at ``/console`` on the management port: the routes drawn, with live counters.

One HTML page, no build step, nothing fetched from elsewhere: the server draws each route as
inline SVG from its model (:func:`eip.server.graph.render_svg`), and a small inline script
polls the JSON API every 2 s (``/routes``, ``/health/ready``, ``/routes/{id}/failures``) to
show each route's status, readiness, counters and recent failures, with stop/start and
suspend/resume buttons that send the token typed at the top of the page (kept in
``sessionStorage``) as a bearer token. Refusals show the API's own words (403: changes
disabled; 401: wrong token; 409: the route's state does not allow it).

The route's exchange counters go on its ``from`` node. ``GET /console/node-failures`` adds,
per node, how many of the route's recent failures (the failure history) happened there, so
the failing step stands out in red, and, when metrics are on, each endpoint send's counters
(sent, failed, mean time of the sends that waited; :mod:`eip.runtime.step_counters`), which
go on the send's node.

The page is guarded as an admin page should be: a ``Content-Security-Policy`` that lets only
this page's own inline script and style run (by a per-response nonce) and lets it talk only to
its own origin, ``X-Content-Type-Options: nosniff``, no framing, no caching, no referrer.
Everything from user code (route ids, descriptions, URIs) is escaped on the server, and the
script puts API data into the page with ``textContent`` only.
"""

from __future__ import annotations

import html
import re
import secrets
from typing import TYPE_CHECKING, Any

import msgspec

from eip.components.http.asgi import Receive, Scope, Send, json_headers, respond
from eip.dsl.model import RouteModel
from eip.server.console_assets import SCRIPT, STYLE
from eip.server.control import send_counters
from eip.server.graph import node_id_for_step_path, nodes, render_svg
from eip.server.graph_layout import TITLE_H

if TYPE_CHECKING:
    from eip.components.http.server import HttpServer
    from eip.runtime.context import Context

__all__ = ["Console", "failure_node"]

_encode = msgspec.json.Encoder().encode
_ARROW = re.compile(r'(id="|url\(#)eip-arrow\b')
_TITLE_CROP = TITLE_H - 6  # the picture's own title band: the card's header says it instead
_PLACES = 1000  # failed_at texts remembered per route (split part indexes make them many)
_SIZE = re.compile(r'width="([\d.]+)" height="([\d.]+)" viewBox="0 0 ([\d.]+) ([\d.]+)"')


def failure_node(model: RouteModel, failed_at: str | None) -> str | None:
    """The node a failure's ``failed_at`` names, or None when no single node is meant.

    The history names a step by its description (``unmarshal(json)``), an endpoint by its
    redacted URI, and a step inside a split part or a branch with that part first
    (``split part index 3 > unmarshal(json)``). A route may have two alike steps: then no
    node is blamed rather than the wrong one."""
    if not failed_at:
        return None
    last = failed_at.rsplit(" > ", 1)[-1].strip()
    infos = [n for n in nodes(model) if n.kind != "from"]
    for wanted in dict.fromkeys((failed_at, last)):
        found = [n.id for n in infos if wanted in (n.detail, n.uri)]
        if found:
            return found[0] if len(found) == 1 else None
    if failed_at[:1].isdigit():  # a compiler step path: "3 > when 1 > 2"
        node = node_id_for_step_path(model, failed_at)
        return None if node.endswith("/from") else node
    return None


def _picture(model: RouteModel, number: int) -> str:
    """One route's SVG, with its own marker id (several pictures share one page) and without
    its title band."""
    svg = _ARROW.sub(lambda m: f"{m.group(1)}eip-arrow-{number}", render_svg([model]))

    def crop(match: re.Match[str]) -> str:
        width, height = float(match.group(3)), float(match.group(4))
        cut = _TITLE_CROP if height > _TITLE_CROP * 2 else 0.0
        return (
            f'width="{width:g}" height="{height - cut:g}" '
            f'viewBox="0 {cut:g} {width:g} {height - cut:g}"'
        )

    return _SIZE.sub(crop, svg, count=1)


class Console:
    """Serves the console page and the per-node failure counts it polls."""

    def __init__(self, context: Context) -> None:
        self.context = context
        self._pictures: dict[str, tuple[RouteModel, str]] = {}
        self._drawn = 0  # pictures drawn: each gets its own marker id
        self._failure_nodes: dict[str, tuple[RouteModel, dict[str, str | None]]] = {}
        self._send_nodes: dict[str, tuple[RouteModel, dict[str, str]]] = {}

    def install(self, http: HttpServer) -> None:
        http.add("/console", ["GET"], _Page(self))
        http.add("/console/node-failures", ["GET"], _NodeFailures(self))

    def picture(self, model: RouteModel) -> str:
        cached = self._pictures.get(model.route_id)
        if cached is None or cached[0] is not model:  # drawn once per model (a reload redraws)
            self._drawn += 1
            cached = (model, _picture(model, self._drawn))
            self._pictures[model.route_id] = cached
        return cached[1]

    def page(self, nonce: str) -> bytes:
        models = self._models()
        cards = "".join(_card(model, self.picture(model), n) for n, model in enumerate(models))
        return _PAGE.format(
            nonce=nonce,
            style=STYLE,
            script=SCRIPT,
            name=html.escape(self.context.name),
            count=len(models),
            index="".join(_index_entry(model, n) for n, model in enumerate(models)),
            cards=cards or '<p class="desc">no routes</p>',
        ).encode()

    def node_failures(self) -> dict[str, dict[str, int]]:
        """Per route, per node id, how many of the recent failures happened there."""
        out: dict[str, dict[str, int]] = {}
        for model in self._models():
            cached = self._failure_nodes.get(model.route_id)
            if cached is None or cached[0] is not model:
                cached = (model, {})
                self._failure_nodes[model.route_id] = cached
            where = cached[1]
            if len(where) > _PLACES:
                where.clear()
            counts: dict[str, int] = {}
            for record in self.context.failures.of(model.route_id):
                key = record.failed_at or ""
                if key not in where:
                    where[key] = failure_node(model, record.failed_at)
                node = where[key]
                if node is not None:
                    counts[node] = counts.get(node, 0) + 1
            if counts:
                out[model.route_id] = counts
        return out

    def node_sends(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Per route, per node id, its sends' counters (nothing when metrics are off)."""
        out = {}
        for model in self._models():
            sends = send_counters(self.context, model, self._send_nodes)
            if sends:
                out[model.route_id] = sends
        return out

    def _models(self) -> list[RouteModel]:
        return [route.model for route in self.context.routes.values()]


def _index_entry(model: RouteModel, number: int) -> str:
    rid = html.escape(model.route_id)
    return (
        f'<li><a href="#route-{number}" data-route="{rid}"><span class="dot"></span>'
        f'<span class="name">{rid}</span><span class="fails" title="recent failures"></span>'
        '<span class="total" title="exchanges"></span>'
        "</a></li>"
    )


def _card(model: RouteModel, svg: str, number: int) -> str:
    rid = html.escape(model.route_id)
    desc = f'<p class="desc">{html.escape(model.description)}</p>' if model.description else ""
    return (
        f'<section class="route" id="route-{number}" data-route="{rid}" data-status="">'
        f'<div class="head"><h2>{rid}</h2><span class="pill status unknown">\u2026</span>'
        '<span class="counters">'
        '<span><b data-counter="total">\u2013</b> total</span>'
        '<span class="failed"><b data-counter="failed">\u2013</b> failed</span>'
        '<span><b data-counter="inflight">\u2013</b> in flight</span>'
        '<span>p99 <b data-counter="p99">\u2013</b></span></span>'
        '<button class="pause" type="button" data-action="suspend" hidden>Suspend</button>'
        '<button class="toggle" type="button" data-action="stop">Stop</button>'
        '<p class="note problem"></p><p class="note message" role="status"></p></div>'
        f'{desc}<div class="graph">{svg}</div>'
        '<details class="failures" data-count="0"><summary>recent failures: '
        '<span class="count">0</span></summary><table><thead><tr><th>time</th>'
        "<th>exception</th><th>message</th><th>failed at</th></tr></thead><tbody></tbody>"
        "</table></details></section>"
    )


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>eip console: {name}</title><link rel="icon" href="data:,">
<style nonce="{nonce}">{style}</style></head>
<body><header><h1>eip console <span>\u00b7 context {name}</span></h1>
<span id="ready" class="pill unknown">\u2026</span><span id="updated"></span>
<span class="spacer"></span>
<label>Token <input id="token" type="password" autocomplete="off"
 placeholder="EIP_MANAGEMENT_TOKEN"></label>
<ul id="problems"></ul><p id="notice"></p></header>
<div class="layout"><nav><h2>routes <span>{count}</span></h2><ol id="index">{index}</ol></nav>
<main>{cards}</main></div>
<script nonce="{nonce}">{script}</script></body></html>
"""


def _headers(size: int, nonce: str) -> list[tuple[bytes, bytes]]:
    policy = (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
        "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    )
    return [
        (b"content-type", b"text/html; charset=utf-8"),
        (b"content-length", str(size).encode()),
        (b"content-security-policy", policy.encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"no-referrer"),
        (b"cache-control", b"no-store"),
    ]


class _Page:
    def __init__(self, console: Console) -> None:
        self.console = console

    async def handle(self, scope: Scope, receive: Receive, send: Send, params: Any) -> None:
        nonce = secrets.token_urlsafe(18)
        body = self.console.page(nonce)
        await respond(send, 200, body, _headers(len(body), nonce))


class _NodeFailures:
    def __init__(self, console: Console) -> None:
        self.console = console

    async def handle(self, scope: Scope, receive: Receive, send: Send, params: Any) -> None:
        console = self.console
        body = _encode({"routes": console.node_failures(), "sends": console.node_sends()})
        extra = [(b"x-content-type-options", b"nosniff"), (b"cache-control", b"no-store")]
        await respond(send, 200, body, json_headers(len(body), extra))
