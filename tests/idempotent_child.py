"""A child process for the two-instance idempotent consumer test.

Run as ``python -m tests.idempotent_child KIND OPTIONS_JSON INPUT OUTPUT BARRIER``:

1. starts a context whose route claims each message id in the shared repository (``KIND`` is
   ``postgres`` or ``redis``, ``OPTIONS_JSON`` its constructor arguments, naming the test's
   private table or key prefix) and appends the id of every message it lets through to OUTPUT;
2. touches ``OUTPUT.ready`` and waits for the BARRIER file, so that both instances start
   sending at the same moment (the parent creates it once both are ready);
3. feeds every message of INPUT (NDJSON, ``{"id": ...}`` per line) into ``seda:in`` as fast as
   the queue takes them, then stops the context gracefully, so every in-flight exchange
   finishes (and confirms its claim) before the output is closed;
4. writes ``OUTPUT.done``: a JSON object with what it sent and processed, how many exchanges
   failed, and when it started and finished sending (the parent checks the runs overlapped).

The output is written only after an exchange passed the idempotent consumer (in the route's
last step), so an id in the file is an id this process really processed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from eip import Context, Exchange, RouteBuilder, body
from eip.stores import IdempotentRepository
from tests.stores.backends import build_idempotent

#: Claims processed at once per instance: enough to overlap many claims of one id in flight.
CONSUMERS = 16
QUEUE_SIZE = 1000


class FailureCounter(logging.Handler):
    """Counts the failures the consumers log (a store error would be one): each exchange that
    fails is logged once by ``eip.route.failures``, and the parent requires zero."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.count = 0
        self.first: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        if self.first is None:
            self.first = record.getMessage()


class IdempotentRoute(RouteBuilder):
    """``seda:in`` -> idempotent consumer on the shared repository -> record the id."""

    def __init__(self, repository: IdempotentRepository, output: str) -> None:
        super().__init__()
        self.repository = repository
        # Buffered: an id is written when its exchange passes, flushed by close() at the end.
        self.output: TextIO = open(output, "w")  # noqa: SIM115 - closed by close()
        self.processed = 0

    def close(self) -> None:
        self.output.close()

    def record(self, exchange: Exchange) -> None:
        self.output.write(exchange.body["id"] + "\n")
        self.processed += 1

    def configure(self) -> None:
        (
            self.from_(f"seda:in?concurrent_consumers={CONSUMERS}&size={QUEUE_SIZE}")
            .route_id("idempotent-instance")
            .idempotent_consumer(body("id"), self.repository)
            .process(self.record)
        )


# Local file operations of a few microseconds each: plain sync calls, not worth a thread.
def read_messages(path: str) -> list[dict[str, str]]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line]


def touch(path: str) -> None:
    Path(path).touch()


def exists(path: str) -> bool:
    return Path(path).exists()


def write_report(path: str, report: dict[str, Any]) -> None:
    Path(path).write_text(json.dumps(report))


async def wait_for(path: str, timeout: float) -> None:
    """Poll for ``path`` every millisecond: the barrier must release both instances at once."""
    deadline = time.monotonic() + timeout
    while not exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear within {timeout} s")
        await asyncio.sleep(0.001)


async def main(kind: str, options_json: str, input_path: str, output: str, barrier: str) -> None:
    failures = FailureCounter()
    logging.getLogger("eip").addHandler(failures)
    messages = read_messages(input_path)
    repository = build_idempotent(kind, json.loads(options_json))
    route = IdempotentRoute(repository, output)
    context = Context(shutdown_timeout=20)
    context.add_routes(route)
    await context.start()
    template = context.template()
    touch(output + ".ready")
    await wait_for(barrier, 30)
    began = time.time()
    for message in messages:
        exchange = await template.send("seda:in", message)
        if exchange.exception is not None:
            raise exchange.exception
    sent_at = time.time()
    await context.stop()  # graceful: every in-flight exchange finishes and confirms
    finished = time.time()
    route.close()
    report = {
        "sent": len(messages),
        "processed": route.processed,
        "failures": failures.count,
        "first_failure": failures.first,
        "began": began,
        "sent_at": sent_at,
        "finished": finished,
    }
    write_report(output + ".done", report)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:6]))
