"""A child process for the aggregator crash test: file inbox -> aggregate -> output file.

Run as ``python -m tests.aggregator_child INBOX DB OUTPUT``; it runs until SIGTERM (or SIGKILL).
Each input file holds ``{"id": ..., "group": ...}``; groups complete at 5 members, and each
completed group is appended to OUTPUT as one JSON line (flushed and fsynced) with its
completed-group id, so the parent can tell a redelivered group from a second group.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

from eip import Context, Exchange, RouteBuilder, body
from eip import headers as H
from eip.dataformats import json as json_format
from eip.stores import SqliteAggregationRepository


def collect_ids(old: Exchange | None, new: Exchange) -> Exchange:
    if old is None:
        return Exchange([new.body["id"]])
    old.body.append(new.body["id"])
    return old


class CrashRoute(RouteBuilder):
    def __init__(self, inbox: str, db: str, output: str) -> None:
        super().__init__()
        self.inbox, self.db, self.output = inbox, db, output

    def configure(self) -> None:
        output = self.output

        def write(exchange: Exchange) -> None:
            line = {
                "group": exchange.properties[H.AGGREGATED_ID],
                "key": exchange.properties[H.AGGREGATED_KEY],
                "ids": exchange.body,
                "redelivered": exchange.properties[H.AGGREGATED_REDELIVERED],
            }
            with open(output, "a") as handle:
                handle.write(json.dumps(line) + "\n")
                handle.flush()
                os.fsync(handle.fileno())

        (
            self.from_(f"file:{self.inbox}?include=*.json&poll=0.01&max_per_poll=50")
            .route_id("crash-aggregate")
            .unmarshal(json_format())
            .set_header(H.MESSAGE_ID, body("id"))
            .aggregate(
                body("group"),
                collect_ids,
                completion_size=5,
                repository=SqliteAggregationRepository(self.db),
                recovery_interval=0.2,
            )
            .process(write)
        )


async def main(inbox: str, db: str, output: str) -> None:
    context = Context(shutdown_timeout=5)
    context.add_routes(CrashRoute(inbox, db, output))
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await context.start()
    await asyncio.to_thread(Path(output + ".ready").touch)
    await stop.wait()
    await context.stop()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
