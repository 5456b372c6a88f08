"""Run routes on eip's HTTP server until SIGTERM: the body of the benchmark server processes
(``benchmarks._http_eip_server``, ``benchmarks._soap_eip_server``)."""

from __future__ import annotations

import asyncio
import signal

from eip import Context, RouteBuilder

__all__ = ["serve_forever"]


async def _serve(builder: RouteBuilder, port: int) -> None:
    context = Context(shutdown_timeout=5)
    context.component("http").configure(host="127.0.0.1", port=port)  # type: ignore[attr-defined]
    context.add_routes(builder)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await context.start()
    await stop.wait()
    await context.stop()


def serve_forever(builder: RouteBuilder, port: int) -> None:
    """Serve ``builder``'s routes on 127.0.0.1:``port`` with uvloop, as ``eip run`` would."""
    import uvloop

    uvloop.run(_serve(builder, port))
