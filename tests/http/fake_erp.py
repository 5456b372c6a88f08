"""A real fake ERP REST server for the HTTP producer tests: aiohttp on a random loopback port.

::

    async with FakeErp() as erp:
        erp.reply("/api/customers", Reply(500, json={"error": "db down"}))
        ... to(f"{erp.url}/api/customers") ...
        await erp.wait_for_requests(3)
        assert erp.requests[0].headers["content-type"] == "application/json"

Each path has a queue of responders, taken in order, the last one repeating; a responder is a
:class:`Reply` (status, compact JSON or bytes body, headers, optional delay) or a raw aiohttp
handler (``async (request) -> StreamResponse``), for behaviour such as a body dribbled slowly.
Unprogrammed, ``POST /api/customers`` answers 201 ``{"erp_id": "E-1"}`` and anything else 404.
Every request is recorded before it is answered.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from aiohttp import web

__all__ = ["FakeErp", "Handler", "Recorded", "Reply"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_NO_JSON = object()


@dataclass(frozen=True)
class Reply:
    """One canned response; ``delay`` seconds pass before it is sent (a slow server)."""

    status: int = 200
    json: Any = _NO_JSON
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass(frozen=True)
class Recorded:
    """One request as the ERP received it."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes

    @property
    def params(self) -> dict[str, list[str]]:
        """The query string parsed (every value a list, as parameters may repeat)."""
        return urllib.parse.parse_qs(self.query, keep_blank_values=True)


Responder = Reply | Handler


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))  # compact, so tests can compare bytes


DEFAULT_CREATED = Reply(201, json={"erp_id": "E-1"})


class FakeErp:
    """The server; use as ``async with FakeErp() as erp``."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self._routes: dict[tuple[str, str], list[Responder]] = {}
        self._arrived = asyncio.Event()
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        """The base URL, ``http://127.0.0.1:PORT`` (no trailing slash)."""
        return f"http://127.0.0.1:{self.port}"

    def reply(self, path: str, *responders: Responder, method: str = "*") -> None:
        """Answer requests to ``path`` (a glob) with ``responders`` in order, the last one
        repeating; ``method`` limits them to one HTTP method."""
        if not responders:
            raise ValueError("give at least one responder")
        self._routes[(method.upper(), path)] = list(responders)

    async def wait_for_requests(self, count: int, timeout: float = 5.0) -> list[Recorded]:
        """Wait until at least ``count`` requests arrived (at most ``timeout`` seconds)."""
        async with asyncio.timeout(timeout):
            while len(self.requests) < count:
                self._arrived.clear()
                await self._arrived.wait()
        return self.requests

    async def pause(self, seconds: float) -> bool:
        """Sleep ``seconds`` unless the server is closing; True when it is closing."""
        try:
            await asyncio.wait_for(self._closing.wait(), seconds)
        except TimeoutError:
            return False
        return True

    # -- serving ---------------------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        headers: dict[str, str] = {}
        for name, value in request.headers.items():
            lower = name.lower()
            headers[lower] = f"{headers[lower]}, {value}" if lower in headers else value
        self.requests.append(
            Recorded(
                request.method,
                request.path,
                request.query_string,
                headers,
                await request.read(),
            )
        )
        self._arrived.set()
        responder = self._next(request.method, request.path)
        if not isinstance(responder, Reply):
            return await responder(request)
        if responder.delay and await self.pause(responder.delay):
            raise web.HTTPServiceUnavailable()
        if responder.json is not _NO_JSON:
            return web.json_response(
                responder.json, status=responder.status, headers=responder.headers, dumps=_dumps
            )
        return web.Response(body=responder.body, status=responder.status, headers=responder.headers)

    def _next(self, method: str, path: str) -> Responder:
        for (wanted, pattern), queue in self._routes.items():
            if wanted in ("*", method) and fnmatch.fnmatchcase(path, pattern):
                return queue.pop(0) if len(queue) > 1 else queue[0]
        if method == "POST" and path == "/api/customers":
            return DEFAULT_CREATED
        return Reply(404, json={"error": f"no such resource {path}"})

    async def __aenter__(self) -> FakeErp:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self._runner = runner
        address = runner.addresses[0]
        self.port = int(address[1])
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
