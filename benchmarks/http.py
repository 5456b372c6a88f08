"""HTTP consumer and producer: eip against a raw ASGI app and a raw aiohttp client.

**Consumer** (``http-consumer-vs-asgi``): POST ~330 B of CRM customer JSON, the route decodes it
into the ``Customer`` Struct, maps it with ``to_erp``, encodes the result and answers it; wrk
(50 connections, one thread, time-limited) drives each server on loopback in turn. Both servers
are uvicorn with httptools and uvloop, each in its own process:

- **eip**: ``from_("http:/bench?methods=POST").unmarshal(json(Customer)).transform(to_erp)
  .marshal(json())`` (``benchmarks/_http_eip_server.py``);
- **baseline**: a raw ASGI app doing the same work with a reused msgspec Decoder and Encoder
  (``benchmarks._http_apps:crm_app``).

**Producer** (``http-producer-vs-aiohttp``): 50 concurrent callers in this process POST the same
JSON to a raw ASGI echo server (its own process) and read the JSON reply:

- **eip**: a route ``from_("direct:call").to(url)``, each call ``route.dispatch(exchange)``;
- **baseline**: one raw ``aiohttp.ClientSession``, ``post`` and ``read`` (the fastest Python
  client measured here);
- informational: httpx's ``AsyncClient`` with its own pool, and on the httpx-aiohttp transport
  (why eip's default is its own lean path on aiohttp: :mod:`eip.components.http.calls`).

Rounds alternate the variants; figures are medians of the rounds.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

from benchmarks._crm import make_messages
from benchmarks._http_support import (
    ServerProcess,
    aiohttp_caller,
    drive_client,
    drive_wrk,
    load_driver,
    start_module_process,
    start_server_process,
)
from benchmarks._report import Measurement, result_line, table
from eip import Context, Exchange, ExchangePattern, RouteBuilder
from eip import headers as H

__all__ = ["run"]

_ROOT = Path(__file__).resolve().parent.parent
Call = Callable[[], Awaitable[None]]


def start_eip_server() -> ServerProcess:
    """``benchmarks._http_eip_server`` in its own process, once it answers."""
    return start_module_process(
        "benchmarks._http_eip_server", "/bench", make_messages(1)[0], "application/json"
    )


async def consumer(rounds: int, seconds: float) -> dict[str, Measurement]:
    body = make_messages(1)[0]
    results = {name: Measurement(name) for name in ("raw ASGI app", "eip route")}
    with start_server_process("benchmarks._http_apps:crm_app") as raw, start_eip_server() as eip:
        urls = {"raw ASGI app": f"{raw.url}/bench", "eip route": f"{eip.url}/bench"}
        for url in urls.values():  # warm-up, not recorded
            await drive_wrk(url, body, connections=50, seconds=1)
        for _ in range(rounds):
            for name, url in urls.items():
                load = await drive_wrk(url, body, connections=50, seconds=seconds)
                results[name].rates.append(load.requests_per_s)
    return results


class _Call(RouteBuilder):
    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url

    def configure(self) -> None:
        self.from_("direct:call").route_id("call").to(self.url)


async def _eip_caller(url: str, body: bytes) -> tuple[Call, Call]:
    context = Context(shutdown_timeout=5)
    context.add_routes(_Call(url))
    await context.start()
    dispatch = context.routes["call"].dispatch
    headers = {"content-type": "application/json"}

    async def call() -> None:
        exchange = Exchange(body, dict(headers), ExchangePattern.IN_OUT)
        pending = dispatch(exchange)
        if pending is not None:
            await pending
        if exchange.headers[H.HTTP_RESPONSE_STATUS] != 200:
            raise RuntimeError(f"eip call failed: {exchange.headers[H.HTTP_RESPONSE_STATUS]}")

    return call, context.stop


async def _httpx_caller(
    url: str, body: bytes, transport: httpx.AsyncBaseTransport
) -> tuple[Call, Call]:
    client = httpx.AsyncClient(transport=transport, timeout=30)
    headers = {"content-type": "application/json"}

    async def call() -> None:
        response = await client.post(url, content=body, headers=headers)
        if response.status_code != 200:
            raise RuntimeError(f"httpx call failed: {response.status_code}")

    return call, client.aclose


async def producer(rounds: int, seconds: float) -> dict[str, Measurement]:
    from httpx_aiohttp import AiohttpTransport

    body = make_messages(1)[0]
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    with start_server_process("benchmarks._http_apps:echo_app") as echo:
        url = f"{echo.url}/api/customers"
        callers = {
            "raw aiohttp": await aiohttp_caller(url, body),
            "eip producer": await _eip_caller(url, body),
            "httpx (own pool)": await _httpx_caller(
                url, body, httpx.AsyncHTTPTransport(limits=limits)
            ),
            "httpx + httpx-aiohttp": await _httpx_caller(
                url, body, AiohttpTransport(limits=limits)
            ),
        }
        results = {name: Measurement(name) for name in callers}
        try:
            for call, _ in callers.values():  # warm-up: connections open, caches filled
                await drive_client(call, concurrency=50, seconds=0.5)
            for _ in range(rounds):
                for name, (call, _) in callers.items():
                    slow = name.startswith("httpx")  # informational: shorter rounds
                    rate = await drive_client(
                        call, concurrency=50, seconds=seconds / 2 if slow else seconds
                    )
                    results[name].rates.append(rate)
        finally:
            for _, close in callers.values():
                await close()
    return results


def _rows(results: dict[str, Measurement], baseline: str) -> list[list[str]]:
    base = results[baseline].median
    return [
        [
            name,
            f"{m.median:,.0f}",
            f"{m.low:,.0f}-{m.high:,.0f}",
            f"{m.median / base:.2f}",
        ]
        for name, m in results.items()
    ]


async def main(quick: bool) -> None:
    rounds, seconds = (2, 2.0) if quick else (5, 5.0)
    driver = load_driver()
    print(driver.note)
    served = await consumer(rounds, seconds)
    called = await producer(rounds, 2.0 if quick else 4.0)
    headers = ["variant", "req/s (median)", "range", "vs baseline"]
    print(f"HTTP consumer: POST JSON -> route -> JSON reply, {driver.tool} -c50, {rounds} rounds")
    print(table(headers, _rows(served, "raw ASGI app")))
    print()
    print(f"HTTP producer: POST JSON, 50 concurrent calls, {rounds} rounds")
    print(
        table(["variant", "calls/s (median)", "range", "vs baseline"], _rows(called, "raw aiohttp"))
    )
    print()
    print(
        result_line(
            "http-consumer-vs-asgi", served["eip route"].median, served["raw ASGI app"].median
        )
    )
    print(
        result_line(
            "http-producer-vs-aiohttp", called["eip producer"].median, called["raw aiohttp"].median
        )
    )


def run(quick: bool) -> None:
    import uvloop

    uvloop.run(main(quick))
