"""What every route served on eip's HTTP server shares (HTTP routes and SOAP services):
registration on the shared server, credentials checked before the body is read, headers
decoded, the body read within its size and time limits, and the route run to completion.

The body's bytes are counted as they arrive, so a chunked body is bounded like one with a
``Content-Length``; the time a client may take to send it is bounded by the server's read
sweep (uvicorn bounds neither, shared/PITFALLS.md).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, ClassVar

from eip.components.base import ComponentHost, Consumer
from eip.components.http.auth import Authenticator, AuthSpec, Denial, Principal
from eip.components.http.server import HttpServer, Receive, Scope, Send, json_headers, respond
from eip.components.http.tracing import ServerSpans

if TYPE_CHECKING:
    from eip.runtime.route import Route

__all__ = ["ServedConsumer", "decode_headers"]

_TOO_LARGE = b'{"error":"request body too large"}'
_TIMEOUT = b'{"error":"request body not received in time"}'
_STOPPED = b'{"error":"route not running"}'
_SUSPENDED = b'{"error":"route suspended"}'
_BAD_LENGTH = b'{"error":"invalid content-length"}'


def decode_headers(raw: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    """Request headers as a dict of lowercase names; ``eip.*`` names dropped (a client must not
    steer the engine), repeated names joined by ", " (RFC 9110 5.3)."""
    headers: dict[str, Any] = {
        k.decode("latin-1"): v.decode("latin-1") for k, v in raw if k[:4] != b"eip."
    }
    if len(headers) == len(raw):
        return headers
    headers = {}
    for raw_name, raw_value in raw:
        name = raw_name.decode("latin-1")
        if name.startswith("eip."):
            continue
        value = raw_value.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


class ServedConsumer(Consumer):
    stops_after_drain: ClassVar[bool] = False

    def __init__(
        self,
        context: ComponentHost,
        route: Route,
        server: HttpServer,
        *,
        path: str,
        methods: list[str],
        auth: AuthSpec | None,
        max_body_size: int,
    ) -> None:
        super().__init__(route)
        self.context = context
        self.server = server
        self.path = path
        self.methods = methods
        settings = server.settings
        self.max_body = max_body_size if max_body_size >= 0 else settings.max_body_size
        self.request_timeout = settings.request_timeout
        auth = auth or settings.auth
        self.auth = Authenticator(auth) if auth is not None and auth.scheme != "none" else None
        self._secret_headers = self.auth.secret_headers if self.auth is not None else ()
        self.accepting = False
        self._registered = False
        #: SERVER spans, when the context traces (decided when the context starts).
        self.spans: ServerSpans | None = None

    @property
    def ready(self) -> bool:
        return self.accepting and self.server.started

    async def start(self) -> None:
        tracing = self.context.tracing
        self.spans = ServerSpans(tracing, self.path, self.server) if tracing.enabled else None
        if not self._registered:
            self.server.add(self.path, self.methods, self)
            self._registered = True
        await self.server.start()
        self.accepting = True

    async def stop(self) -> None:
        # Stay registered, answering 503: a stopped route is unavailable, not unknown.
        self.accepting = False

    async def release(self) -> None:
        # Removed by a reload: the path is free for the route that replaces it, or unknown.
        if self._registered:
            self.server.remove(self.path, self)
            self._registered = False

    async def handle(
        self, scope: Scope, receive: Receive, send: Send, params: dict[str, str] | None
    ) -> None:
        """Serve one request (the server's :class:`~eip.components.http.server.Handler`)."""
        raise NotImplementedError

    async def admit(
        self, scope: Scope, send: Send
    ) -> tuple[dict[str, Any], Principal | None] | None:
        """The request's headers and who sent it, or None once it has been answered (the
        route is stopped, or the credentials are missing or wrong)."""
        if not self.accepting:
            await self.refuse_stopped(send)
            return None
        headers = decode_headers(scope["headers"])
        principal = await self.authenticate(headers, send) if self.auth is not None else None
        if isinstance(principal, Denial):
            return None
        return headers, principal

    async def refuse_stopped(self, send: Send) -> None:
        # A suspended route answers as a stopped one does (Camel's too): 503, try again later.
        body = _SUSPENDED if self.route.status.value == "suspended" else _STOPPED
        retry = json_headers(len(body), [(b"retry-after", b"5")])
        await respond(send, 503, body, retry)

    async def authenticate(self, headers: dict[str, Any], send: Send) -> Principal | Denial | None:
        """None when the route is public; a Denial has been answered already. Credentials are
        removed from ``headers``: secrets never reach the route, its logs or its spans."""
        if self.auth is None:
            return None
        outcome = self.auth.check(headers)
        if isinstance(outcome, Denial):
            await respond(send, outcome.status, outcome.body, outcome.headers)
            return outcome
        for secret in self._secret_headers:
            headers.pop(secret, None)
        return outcome

    async def read_body(self, receive: Receive, send: Send, length: str | None) -> bytes | None:
        """The whole body, or None after answering 400/408/413 (or when the client left)."""
        limit = self.max_body
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                await respond(send, 400, _BAD_LENGTH)
                return None
            if declared > limit:
                await respond(send, 413, _TOO_LARGE)
                return None
        server = self.server
        token = server.reading(self.request_timeout)
        try:
            message = await receive()
            chunks: list[bytes] | None = None
            body: bytes = message.get("body", b"")
            size = len(body)
            while message.get("more_body") and size <= limit:
                if chunks is None:
                    chunks = [body]
                message = await receive()
                chunk = message.get("body", b"")
                size += len(chunk)
                chunks.append(chunk)
        except asyncio.CancelledError:
            if not server.done_reading(token):
                raise
            close = json_headers(len(_TIMEOUT), [(b"connection", b"close")])
            await respond(send, 408, _TIMEOUT, close)
            return None
        server.done_reading(token)
        if message["type"] == "http.disconnect":
            return None
        if size > limit:
            await respond(send, 413, _TOO_LARGE)
            return None
        return body if chunks is None else b"".join(chunks)
