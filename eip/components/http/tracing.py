"""HTTP spans after the OpenTelemetry HTTP semantic conventions.

The consumer opens a SERVER span named ``{method} {route}`` (``POST /api/customers/{id}``) as a
child of the caller's ``traceparent``; the route's own span is its child. The producer opens a
CLIENT span named ``{method}`` as a child of the exchange's current span and injects its
context into the request's ``traceparent``, so one trace spans the incoming request, the
route and every outgoing call. Attributes follow the stable HTTP conventions
(``http.request.method``, ``http.route``, ``url.full``, ``http.response.status_code``, ...);
server spans are errors from status 500, client spans from status 400 (as the conventions say).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from opentelemetry.trace import SpanKind

from eip.errors import redact_uri
from eip.message import Exchange
from eip.tracing import Tracing, extract

if TYPE_CHECKING:
    from eip.components.http.server import HttpServer, Scope

__all__ = ["ClientSpans", "ServerSpans"]


class ServerSpans:
    """SERVER spans of one HTTP route."""

    def __init__(self, tracing: Tracing, route_template: str, server: HttpServer) -> None:
        assert tracing.spans is not None
        self.spans = tracing.spans
        self.route = route_template
        self.server = server

    def start(self, scope: Scope, exchange: Exchange) -> Any:
        method = scope["method"]
        attributes: dict[str, Any] = {
            "http.request.method": method,
            "http.route": self.route,
            "url.path": scope["path"],
            "url.scheme": scope.get("scheme", "http"),
            "server.port": self.server.port,
            "network.protocol.version": scope.get("http_version", "1.1"),
        }
        client = scope.get("client")
        if client:
            attributes["client.address"] = client[0]
        agent = exchange.headers.get("user-agent")
        if agent:
            attributes["user_agent.original"] = agent
        parent = extract(exchange.headers)
        span = self.spans.start(f"{method} {self.route}", parent, SpanKind.SERVER, attributes)
        exchange.trace_context = span
        return span

    def finish(self, span: Any, status: int, exchange: Exchange) -> None:
        error = str(status) if status >= 500 else None
        attributes: dict[str, Any] = {"http.response.status_code": status}
        if error is not None:
            attributes["error.type"] = error
        self.spans.annotate(span, attributes, error)
        self.spans.end(span)


class ClientSpans:
    """CLIENT spans of one HTTP producer."""

    def __init__(self, tracing: Tracing, host: str, port: int) -> None:
        assert tracing.spans is not None
        self.spans = tracing.spans
        self.host = host
        self.port = port

    def start(self, exchange: Exchange, method: str, url: str) -> Any:
        attributes: dict[str, Any] = {
            "http.request.method": method,
            "server.address": self.host,
            "server.port": self.port,
            "url.full": redact_uri(url),  # cached: a URL seen before costs one dict lookup
        }
        return self.spans.start(method, exchange.trace_context, SpanKind.CLIENT, attributes)

    def finish(self, span: Any, status: int) -> None:
        error = str(status) if status >= 400 else None
        attributes: dict[str, Any] = {"http.response.status_code": status}
        if error is not None:
            attributes["error.type"] = error
        self.spans.annotate(span, attributes, error)
        self.spans.end(span)

    def fail(self, span: Any, exc: BaseException) -> None:
        self.spans.annotate(span, {"error.type": type(exc).__qualname__})
        self.spans.fail(span, exc)
