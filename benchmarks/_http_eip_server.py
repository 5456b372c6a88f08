"""The eip side of the HTTP consumer benchmark, run as its own process:
``python -m benchmarks._http_eip_server PORT``.

One route on eip's HTTP server (uvicorn, httptools, uvloop), doing the work the raw ASGI
baseline (``benchmarks._http_apps.crm_raw_app``) does by hand::

    from_("http:/bench?methods=POST").unmarshal(json(Customer)).transform(to_erp).marshal(json())
"""

from __future__ import annotations

import asyncio
import signal
import sys

from benchmarks._crm import Customer, to_erp
from eip import Context, RouteBuilder
from eip.dataformats import json

__all__ = ["BenchRoute", "main"]


class BenchRoute(RouteBuilder):
    def configure(self) -> None:
        (
            self.from_("http:/bench?methods=POST")
            .route_id("bench")
            .unmarshal(json(Customer))
            .transform(lambda ex: to_erp(ex.body))
            .marshal(json())
        )


async def serve(port: int) -> None:
    context = Context(shutdown_timeout=5)
    context.component("http").configure(host="127.0.0.1", port=port)  # type: ignore[attr-defined]
    context.add_routes(BenchRoute())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await context.start()
    await stop.wait()
    await context.stop()


def main() -> None:
    import uvloop

    uvloop.run(serve(int(sys.argv[1])))


if __name__ == "__main__":
    main()
