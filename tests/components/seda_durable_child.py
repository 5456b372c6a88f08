"""A child process for the durable seda crash test: it queues messages on a durable seda queue
and consumes them slowly, so the parent can SIGKILL it mid-stream.

Run as ``python -m tests.components.seda_durable_child DB OUTPUT COUNT``. With COUNT > 0 it
first sends COUNT messages (``{"n": i}``) and, once every send has returned (each row is
committed), creates ``OUTPUT.queued``. The consuming route (4 workers, ~4 ms a message) appends
one JSON line per message to OUTPUT (``n`` and whether it was redelivered) before its exchange
completes. ``OUTPUT.ready`` appears once the context has started. It runs until SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

from eip import Context, Exchange, RouteBuilder
from eip.components.seda_durable import REDELIVERED

WORKERS = 4


class CrashRoutes(RouteBuilder):
    def __init__(self, db: str, output: str) -> None:
        super().__init__()
        self.uri = f"seda:work?durable=true&path={db}&size=100000&concurrent_consumers={WORKERS}"
        self.output = output

    def configure(self) -> None:
        handle = open(self.output, "a")  # noqa: SIM115  # held for the life of the process

        async def slow_write(exchange: Exchange) -> None:
            await asyncio.sleep(0.004)
            line = {"n": exchange.body["n"], "redelivered": bool(exchange.headers.get(REDELIVERED))}
            handle.write(json.dumps(line) + "\n")
            handle.flush()  # in the kernel now: a SIGKILL does not lose it

        self.from_(self.uri).route_id("work").process(slow_write)


def mark(path: str) -> None:
    """Tell the parent how far this process got (a file it polls for)."""
    Path(path).touch()


async def main(db: str, output: str, count: int) -> None:
    routes = CrashRoutes(db, output)
    context = Context(shutdown_timeout=10.0)
    context.add_routes(routes)
    await context.start()
    mark(output + ".ready")
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    template = context.template()
    for n in range(count):
        sent = await template.send(routes.uri, {"n": n})
        if sent.exception is not None:
            raise sent.exception
    if count:
        mark(output + ".queued")
    await stop.wait()
    await context.stop()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
