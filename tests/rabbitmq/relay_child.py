"""Child process for the SIGKILL test: relay queue A -> queue B with confirms, until SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from eip import Context, RouteBuilder


class Relay(RouteBuilder):
    def __init__(self, source: str, target: str) -> None:
        super().__init__()
        self.source, self.target = source, target

    def configure(self) -> None:
        (
            self.from_(f"rabbitmq:?queue={self.source}&prefetch=500&concurrency=200")
            .route_id("relay")
            .transform(lambda ex: ex.body + b"!")
            .to(f"rabbitmq:?routing_key={self.target}")
        )


async def main(source: str, target: str, ready: str) -> None:
    context = Context(shutdown_timeout=10)
    context.add_routes(Relay(source, target))
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await context.start()
    await asyncio.to_thread(Path(ready).touch)
    await stop.wait()
    await context.stop()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
