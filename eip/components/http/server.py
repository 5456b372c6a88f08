"""eip's HTTP server: one uvicorn server per address, a raw ASGI app, no web framework.

Every HTTP route (and SOAP route) on one host and port shares one :class:`HttpServer`. Its
ASGI app finds the handler with a dict lookup for plain paths and a list of compiled regexes
for templated ones (``/api/customers/{id}``), answers 404/405/503 itself, and otherwise calls
the handler: the whole per-request path is this module and the consumer's handler.

Decisions, where the issue left room:

- **uvicorn with httptools and no middleware.** Measured (shared/BENCHMARKS.md), httptools is
  4x h11; proxy headers, access logs and lifespan are off (an integration server has routes,
  not an app lifespan). uvicorn is driven through ``startup``/``main_loop``/``shutdown`` rather
  than ``serve``, because ``serve`` installs its own SIGINT/SIGTERM handlers over eip's.
- **The socket is bound by eip**, so port 0 gives a free port (tests) that :attr:`port` reports,
  and "started" means the socket accepts connections.
- **Concurrency limit without queueing**: past ``max_concurrency`` requests in flight the
  server answers 503 with ``Retry-After`` at once; a busy integration server must shed load,
  not grow a queue.
- **Trailing slashes** do not matter: ``/api/customers/`` is ``/api/customers``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import msgspec

from eip.components.http.asgi import (
    Handler,
    PathEntry,
    Receive,
    Scope,
    Send,
    json_headers,
    normalize_path,
    respond,
)
from eip.components.http.auth import AuthSpec
from eip.errors import LifecycleError, RouteDefinitionError

__all__ = [
    "AddressInUseError",
    "Handler",
    "HttpServer",
    "PathEntry",
    "Receive",
    "Scope",
    "Send",
    "ServerSettings",
    "json_headers",
    "respond",
]

log = logging.getLogger("eip.http")


class ServerSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Settings of the HTTP servers of a context (``context.component("http").configure``)."""

    #: "" takes $EIP_HTTP_HOST, else 0.0.0.0 (an integration server receives webhooks).
    host: str = ""
    #: -1 takes $EIP_HTTP_PORT, else 8080; 0 picks a free port (see HttpServer.port).
    port: int = -1
    max_body_size: int = 1024 * 1024
    #: Seconds a client may take to send its body (uvicorn has no such limit): then 408.
    request_timeout: float = 30.0
    keep_alive_timeout: int = 5
    max_concurrency: int = 1000
    graceful_timeout: float = 10.0
    ssl_certfile: str = ""
    ssl_keyfile: str = ""
    ssl_keyfile_password: str = ""
    ssl_ca_certs: str = ""
    #: Authentication for every route that does not set its own.
    auth: AuthSpec | None = None
    openapi_path: str = "/openapi.json"
    title: str = "eip"
    api_version: str = "0.1.0"
    backlog: int = 2048

    def address(self) -> tuple[str, int]:
        host = self.host or os.environ.get("EIP_HTTP_HOST", "0.0.0.0")
        port = self.port if self.port >= 0 else int(os.environ.get("EIP_HTTP_PORT", "8080"))
        return host, port


class AddressInUseError(LifecycleError):
    """Another process listens on the HTTP server's address. It is no route's fault (every
    HTTP and SOAP route on the address shares the server), so ``eip run`` reports it alone,
    with the option that changes the address, whichever route started the server."""

    route_independent = True


_NOT_FOUND = b'{"error":"not found"}'
_NOT_ALLOWED = b'{"error":"method not allowed"}'
_BUSY = b'{"error":"overloaded, retry later"}'


class HttpServer:
    """One listening address and the handlers of its paths; it is its own ASGI app."""

    def __init__(self, settings: ServerSettings, host: str, port: int) -> None:
        self.settings = settings
        self.host = host
        self.requested_port = port
        self._exact: dict[str, PathEntry] = {}
        self._templated: list[PathEntry] = []
        self._server: Any = None
        self._socket: socket.socket | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._reads: dict[asyncio.Task[Any], float] = {}
        self._expired: set[asyncio.Task[Any]] = set()
        self._now = time.monotonic()
        self.inflight = 0
        self.max_concurrency = settings.max_concurrency
        self.started = False
        #: Called when the set of handlers changes (the OpenAPI document is rebuilt lazily).
        self.on_change: Callable[[], None] | None = None
        #: What the server is and how to move it, for the error when its address is taken.
        self.label = "the HTTP server"
        self.address_hint: str | None = None

    @property
    def port(self) -> int:
        """The port actually bound (differs from the requested one for port 0)."""
        if self._socket is None:
            return self.requested_port
        return int(self._socket.getsockname()[1])

    @property
    def base_url(self) -> str:
        scheme = "https" if self.settings.ssl_certfile else "http"
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        if ":" in host:
            host = f"[{host}]"
        return f"{scheme}://{host}:{self.port}"

    # -- handlers --------------------------------------------------------------------------
    def add(self, template: str, methods: Sequence[str], handler: Handler) -> None:
        """Serve ``template`` for ``methods`` (empty: any) with ``handler``."""
        template = normalize_path(template)
        entry = self._entry(template)
        self._replace_restarted(entry, handler)
        taken = [m for m in methods if m in entry.methods] or (
            ["any method"] if not methods and entry.any is not None else []
        )
        if taken or (entry.any is not None and methods) or (not methods and entry.methods):
            raise RouteDefinitionError(
                f"{', '.join(taken) or 'some methods of'} {template} on {self.host}:"
                f"{self.requested_port} already served by another route"
            )
        if methods:
            for method in methods:
                entry.methods[method] = handler
        else:
            entry.any = handler
        if self.on_change is not None:
            self.on_change()

    def remove(self, template: str, handler: Handler) -> None:
        """Stop serving ``template`` with ``handler`` (its route was removed by a reload)."""
        entry = self._entry(normalize_path(template))
        for method, existing in list(entry.methods.items()):
            if existing is handler:
                del entry.methods[method]
        if entry.any is handler:
            entry.any = None
        if not entry.methods and entry.any is None:  # unknown again: 404, not 405
            self._exact.pop(entry.template, None)
            if entry in self._templated:
                self._templated.remove(entry)
        if self.on_change is not None:
            self.on_change()

    @staticmethod
    def _replace_restarted(entry: PathEntry, handler: Handler) -> None:
        """A route restarted with ``start_route`` brings a new consumer: it takes over from the
        route's previous one instead of colliding with it."""
        route = getattr(handler, "route", None)
        if route is None:
            return
        for method, existing in list(entry.methods.items()):
            if getattr(existing, "route", None) is route:
                del entry.methods[method]
        if entry.any is not None and getattr(entry.any, "route", None) is route:
            entry.any = None

    def entries(self) -> list[PathEntry]:
        return [*self._exact.values(), *self._templated]

    def _entry(self, template: str) -> PathEntry:
        entry = self._exact.get(template)
        if entry is not None:
            return entry
        for existing in self._templated:
            if existing.template == template:
                return existing
        entry = PathEntry(template)
        if entry.regex is None:
            self._exact[template] = entry
        else:
            # Templates with more literal characters first: /a/{x}/b before /a/{x}/{y}.
            self._templated.append(entry)
            self._templated.sort(key=lambda e: -e.literal_length)
        return entry

    # -- the ASGI app ----------------------------------------------------------------------
    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        """Find the handler and return its coroutine: one coroutine per request, not two.
        (uvicorn is told the app is ASGI 3, as it cannot see that through a plain def.)"""
        if scope["type"] != "http":
            return _nothing()  # lifespan is off; websockets are not served
        path = scope["path"]
        if len(path) > 1 and path[-1] == "/":
            path = path.rstrip("/") or "/"
        params: dict[str, str] | None = None
        entry = self._exact.get(path)
        if entry is None:
            for candidate in self._templated:
                assert candidate.regex is not None
                match = candidate.regex.match(path)
                if match is not None:
                    entry, params = candidate, match.groupdict()
                    break
            else:
                return respond(send, 404, _NOT_FOUND)
        handler = entry.handler(scope["method"])
        if handler is None:
            allow = json_headers(len(_NOT_ALLOWED), [(b"allow", entry.allow.encode())])
            return respond(send, 405, _NOT_ALLOWED, allow)
        return handler.handle(scope, receive, send, params)

    def overloaded(self, send: Send) -> Awaitable[None]:
        """The 503 a handler answers when ``inflight`` reached ``max_concurrency``."""
        return respond(send, 503, _BUSY, json_headers(len(_BUSY), [(b"retry-after", b"1")]))

    def reading(self, deadline_in: float) -> asyncio.Task[Any] | None:
        """Register the current request's body read for the time-out sweep; returns the token
        to pass to :meth:`done_reading`. A dict entry per read, not a timer per request: the
        sweep runs with uvicorn's tick (every 0.1 s)."""
        task = asyncio.current_task()
        if task is not None:
            self._reads[task] = self._now + deadline_in
        return task

    def done_reading(self, task: asyncio.Task[Any] | None) -> bool:
        """Unregister a read; True when the sweep cancelled it for taking too long."""
        if task is None:
            return False
        self._reads.pop(task, None)
        if task in self._expired:
            self._expired.discard(task)
            task.uncancel()
            return True
        return False

    def _sweep(self) -> None:
        self._now = now = time.monotonic()
        if self._reads:
            for task, deadline in list(self._reads.items()):
                if deadline <= now and task not in self._expired:
                    self._expired.add(task)
                    task.cancel()

    async def _tick(self, server: Any) -> None:
        """uvicorn's own tick (date header, exit flag), plus the read-deadline sweep."""
        counter = 0
        while not await server.on_tick(counter):
            counter = (counter + 1) % 864000
            await asyncio.sleep(0.1)
            self._sweep()

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        """Bind and listen; returns once the server accepts connections."""
        if self.started:
            return
        import uvicorn

        settings = self.settings
        try:
            import httptools  # noqa: F401

            protocol = "httptools"
        except ImportError:  # pragma: no cover - httptools is a dependency
            log.warning("httptools is not installed: falling back to h11 (about 4x slower)")
            protocol = "h11"
        ssl_options: dict[str, Any] = {}
        if settings.ssl_certfile:
            ssl_options = {
                "ssl_certfile": settings.ssl_certfile,
                "ssl_keyfile": settings.ssl_keyfile or None,
                "ssl_keyfile_password": settings.ssl_keyfile_password or None,
                "ssl_ca_certs": settings.ssl_ca_certs or None,
            }
        config = uvicorn.Config(
            self,
            http=protocol,
            interface="asgi3",
            loop="none",
            ws="none",
            lifespan="off",
            log_config=None,
            access_log=False,
            proxy_headers=False,
            server_header=False,
            timeout_keep_alive=settings.keep_alive_timeout,
            timeout_graceful_shutdown=int(settings.graceful_timeout) or None,
            backlog=settings.backlog,
            **ssl_options,
        )
        try:
            config.load()
        except Exception as exc:
            raise LifecycleError(f"HTTP server {self.host}:{self.requested_port}: {exc}") from exc
        server = uvicorn.Server(config)
        server.lifespan = config.lifespan_class(config)
        try:
            self._socket = _bind(self.host, self.requested_port, settings.backlog)
        except AddressInUseError as exc:
            raise AddressInUseError(
                f"cannot listen on {self.host}:{self.requested_port} for {self.label}: the "
                f"address is in use by another process; {self._address_hint()}"
            ) from exc.__cause__
        try:
            await server.startup(sockets=[self._socket])
        except BaseException:
            self._socket.close()
            self._socket = None
            raise
        self._server = server
        self._ticker = asyncio.create_task(self._tick(server), name=f"http-server {self.port}")
        self.started = True
        log.info("HTTP server listening on %s:%d (%s)", self.host, self.port, self.base_url)

    def _address_hint(self) -> str:
        if self.address_hint is not None:
            return self.address_hint
        if self.settings.port >= 0:  # configured in code: context.component("http").configure
            return "configure another port for it"
        if self.settings.address() == (self.host, self.requested_port):
            return "start eip with --http-port (or set $EIP_HTTP_PORT) to use another port"
        return "change the port option of the endpoints that serve on it"

    async def stop(self) -> None:
        """Stop accepting connections; let in-flight responses finish (graceful_timeout)."""
        if not self.started:
            return
        self.started = False
        server = self._server
        server.should_exit = True
        if self._ticker is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        await server.shutdown(sockets=[self._socket] if self._socket is not None else None)
        self._socket = None
        self._server = None
        log.info("HTTP server on %s:%d stopped", self.host, self.requested_port)


async def _nothing() -> None:
    return None


def _bind(host: str, port: int, backlog: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted connections inherit it (Linux). Without it a reply written in two parts
        # (headers, body) waits for the client's delayed ACK: ~40 ms per sequential request.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise AddressInUseError(
                f"cannot listen on {host}:{port}: the address is in use by another process"
            ) from exc
        raise LifecycleError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    sock.set_inheritable(True)
    return sock
