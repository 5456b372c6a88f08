"""The HTTP consumer: one route serving one path on the shared server.

Per request, in this order: authenticate (before reading the body, so an unauthenticated
client cannot make the server read megabytes), read the body within the size and time limits
(counting bytes as they arrive, so chunked bodies are bounded too), bind it to the declared type,
build the exchange, run the route, answer.

What the route sees: HTTP request headers (lowercase names, as HTTP/1.1 servers deliver them,
credentials removed), query parameters and path parameters, all as headers (a repeated query
parameter becomes a list), plus ``eip.http.method``, ``eip.http.path`` and ``eip.http.query``.
Incoming names starting with ``eip.`` are dropped: a client must not steer the engine.

What the client gets: for in-out routes the exchange's body (see
:mod:`eip.components.http.binding`), status ``eip.http.status`` or 200, and as response headers
those exchange headers the route set or changed (not the request's own, and no ``eip.*`` ones).
In-only routes answer 202 with no body once the route completed. A route failure the error
handler did not handle answers 500 without internals (``expose_errors`` shows them); bad input
found by the route (an ``UnmarshalError``) answers 400. A failure that a dead letter channel
handled counts as delivered: the client gets the normal answer and need not retry.
"""

from __future__ import annotations

import urllib.parse
from typing import TYPE_CHECKING, Any

import msgspec

from eip import headers as H
from eip.components.base import process_exchange
from eip.components.http.binding import BodyBinder, UnsupportedMediaType, encode_reply
from eip.components.http.intake import ServedConsumer
from eip.components.http.openapi import OperationDoc
from eip.components.http.server import Receive, Scope, Send, respond
from eip.components.http.spec import HttpServerSpec
from eip.errors import PartFailedError, UnmarshalError
from eip.message import Exchange, ExchangePattern

if TYPE_CHECKING:
    from eip.components.http import HttpComponent
    from eip.runtime.route import Route

__all__ = ["HttpConsumer"]

_encode = msgspec.json.Encoder().encode

#: Never sent back as response headers, whatever the route left on the exchange.
_RESERVED = frozenset(
    {
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "upgrade",
        "te",
        "trailer",
        "host",
        "date",
        "server",
        "content-type",
        "traceparent",
        "tracestate",
    }
)


class HttpConsumer(ServedConsumer):
    def __init__(self, component: HttpComponent, spec: HttpServerSpec, route: Route) -> None:
        super().__init__(
            component.context,
            route,
            component.server_for(spec),
            path=spec.path,
            methods=[m.upper() for m in spec.methods],
            auth=spec.auth_spec(),
            max_body_size=spec.max_body_size,
        )
        self.component = component
        self.spec = spec
        self.binder = (
            BodyBinder(spec.body, spec.consumes, self.max_body) if spec.body is not None else None
        )
        self.pattern = (
            ExchangePattern.IN_ONLY if spec.pattern == "in-only" else ExchangePattern.IN_OUT
        )
        self.in_only = self.pattern is ExchangePattern.IN_ONLY
        self._operations = self._describe() if spec.openapi else []

    def operations(self) -> list[OperationDoc]:
        """This route's entries in the server's OpenAPI document."""
        return self._operations

    def _describe(self) -> list[OperationDoc]:
        spec = self.spec
        # Any method: document the one a client would use (POST with a body type, else GET
        # and POST); methods=... documents exactly what is served.
        methods = self.methods or (["POST"] if spec.body is not None else ["GET", "POST"])
        media: tuple[str, ...] = self.binder.accepted if self.binder is not None else ()
        return [
            OperationDoc(
                path=spec.path,
                method=method,
                route_id=self.route.id,
                summary=spec.summary or self.route.model.description,
                body_type=spec.body,
                response_type=spec.response,
                media_types=media or ("application/json",),
                success_status=202 if self.in_only else 200,
                security=self.auth.security_scheme() if self.auth is not None else None,
                max_body_size=self.max_body,
            )
            for method in methods
        ]

    # -- one request ---------------------------------------------------------------------
    async def handle(
        self, scope: Scope, receive: Receive, send: Send, params: dict[str, str] | None
    ) -> None:
        """The whole request (this is the per-request hot path)."""
        admitted = await self.admit(scope, send)
        if admitted is None:
            return
        headers, principal = admitted
        server = self.server
        if server.inflight >= server.max_concurrency:
            await server.overloaded(send)
            return
        server.inflight += 1
        try:
            body = await self.read_body(receive, send, headers.get("content-length"))
            if body is None:
                return
            if self.binder is not None:
                try:
                    body = self.binder.decode(headers.get("content-type"), body)
                except UnsupportedMediaType as exc:
                    await _error(send, 415, "unsupported media type", str(exc))
                    return
                except UnmarshalError as exc:
                    await _error(send, 400, "invalid request body", exc.reason, exc.location)
                    return
            headers[H.HTTP_METHOD] = scope["method"]
            headers[H.HTTP_PATH] = scope["path"]
            query = scope["query_string"]
            if query:
                _add_query(headers, query.decode("latin-1"))
            if params:
                headers.update(params)
            exchange = Exchange(body, headers, self.pattern)
            if principal is not None:
                if principal.name is not None:
                    headers[H.HTTP_PRINCIPAL] = principal.name
                if principal.claims is not None:
                    exchange.properties[H.HTTP_CLAIMS] = principal.claims
            incoming = headers.copy()
            spans = self.spans
            span = spans.start(scope, exchange) if spans is not None else None
            await process_exchange(self.route, exchange)
            status = await self._answer(send, exchange, incoming)
            if span is not None:
                assert spans is not None
                spans.finish(span, status, exchange)
        finally:
            server.inflight -= 1

    async def _answer(self, send: Send, exchange: Exchange, incoming: dict[str, Any]) -> int:
        failure = exchange.exception
        if failure is not None:
            return await self._answer_failure(send, exchange, failure)
        out: list[tuple[bytes, bytes]] = []
        content_type: str | None = self.spec.response_content_type or None
        status = 202 if self.in_only else 200
        headers = exchange.headers
        if headers != incoming:  # the route set or changed headers: send those back
            for name, value in headers.items():
                if incoming.get(name, _MISSING) is value or name.startswith("eip."):
                    continue
                lower = name.lower()
                if lower == "content-type":
                    content_type = str(value)
                elif lower not in _RESERVED and isinstance(value, str | int | float):
                    out.append((lower.encode("latin-1"), str(value).encode("latin-1")))
            chosen = headers.get(H.HTTP_STATUS)
            if chosen is not None:
                status = int(chosen)
        if self.in_only or status in (204, 304):
            data = b""
        else:
            data, content_type = encode_reply(exchange.body, content_type)
        if content_type:
            out.append((b"content-type", content_type.encode("latin-1")))
        out.append((b"content-length", str(len(data)).encode()))
        await respond(send, status, data, out)
        return status

    async def _answer_failure(self, send: Send, exchange: Exchange, failure: BaseException) -> int:
        original = PartFailedError.unwrap(failure)  # a split part's bad input is still bad input
        if isinstance(original, UnmarshalError):
            await _error(send, 400, "invalid input", original.reason, original.location)
            return 400
        detail = f"{type(failure).__name__}: {failure}" if self.spec.expose_errors else None
        await _error(send, 500, "route failed", detail, exchange_id=exchange.id)
        return 500


class _Missing:
    pass


_MISSING = _Missing()


def _add_query(headers: dict[str, Any], query: str) -> None:
    """Query parameters as headers (over an HTTP header of the same name); a repeated one
    becomes a list, in order."""
    headers[H.HTTP_QUERY] = query
    values: dict[str, list[str]] = {}
    for key, value in urllib.parse.parse_qsl(query, keep_blank_values=True):
        if not key.startswith("eip."):
            values.setdefault(key, []).append(value)
    for key, found in values.items():
        headers[key] = found[0] if len(found) == 1 else found


async def _error(
    send: Send,
    status: int,
    error: str,
    detail: str | None = None,
    location: str | None = None,
    exchange_id: str | None = None,
) -> None:
    payload: dict[str, str] = {"error": error}
    if detail is not None:
        payload["detail"] = detail
    if location is not None:
        payload["location"] = location
    if exchange_id is not None:
        payload["exchange_id"] = exchange_id
    await respond(send, status, _encode(payload))
