"""Fixtures of the HTTP tests: a context whose HTTP server listens on a random loopback port,
and a real HTTP client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
from pytest_asyncio import fixture as async_fixture

from eip import Context, RouteBuilder


class Served:
    """A started context with routes, and a client for its HTTP server."""

    def __init__(self, context: Context, client: httpx.AsyncClient) -> None:
        self.context = context
        self.client = client

    @property
    def url(self) -> str:
        return str(self.context.component("http").server.base_url)  # type: ignore[attr-defined]


ServeFactory = Callable[..., Any]


@async_fixture
async def serve() -> AsyncIterator[ServeFactory]:
    """``served = await serve(builder, **server_settings)``: start routes on a random port."""
    contexts: list[Context] = []
    clients: list[httpx.AsyncClient] = []

    async def start(*builders: RouteBuilder, **settings: Any) -> Served:
        context = Context(shutdown_timeout=5)
        context.component("http").configure(  # type: ignore[attr-defined]
            **{"port": 0, "host": "127.0.0.1", **settings}
        )
        context.add_routes(*builders)
        await context.start()
        contexts.append(context)
        client = httpx.AsyncClient(timeout=10)
        clients.append(client)
        return Served(context, client)

    try:
        yield start
    finally:
        for client in clients:
            await client.aclose()
        for context in contexts:
            await context.stop()
