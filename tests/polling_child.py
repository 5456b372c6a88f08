"""A child process for the poll_pages crash test.

Run as ``python -m tests.polling_child CRM_URL DB OUTPUT``: one run of a cursor-paged sync of
``CRM_URL/cursor`` with its watermark in the SQLite file DB (``max_of("updated_at")``),
appending the id of each record to OUTPUT as its route completes it (written through at once,
so what a SIGKILL leaves in the file is what was delivered). ``OUTPUT.done`` holds the run's
report (JSON) when the run ended.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import msgspec

from eip import Context, Exchange, RouteBuilder, body_cursor, max_of, pipeline, watermark
from eip.stores import SqliteWatermarkStore

START = "2026-11-01T00:00:00Z"


class CrashSync(RouteBuilder):
    def __init__(self, url: str, db: str, output: Path) -> None:
        super().__init__()
        self.url = url
        self.db = db
        self.output = output
        self.file = open(output, "a", buffering=1)  # noqa: SIM115 - line-buffered, closed at exit
        self.finished = asyncio.Event()

    def deliver(self, exchange: Exchange) -> None:
        time.sleep(0.005)  # a little work per record, so a kill lands mid-run
        self.file.write(f"{exchange.body['id']}\n")

    def done(self, exchange: Exchange) -> None:
        Path(f"{self.output}.done").write_bytes(msgspec.json.encode(exchange.body))
        self.finished.set()

    def configure(self) -> None:
        mark = watermark(
            "crm", max_of("updated_at"), store=SqliteWatermarkStore(self.db), initial=START
        )
        (
            self.from_("timer:crash-sync?repeat_count=1")
            .route_id("crash-sync")
            .poll_pages(
                f"{self.url}/cursor?limit=10&updated_since={{watermark}}",
                pipeline().process(self.deliver),
                records="$.items",
                pagination=body_cursor("$.next_cursor"),
                watermark=mark,
            )
            .process(self.done)
        )


async def main(url: str, db: str, output: str) -> None:
    route = CrashSync(url, db, Path(output))
    context = Context(shutdown_timeout=5)
    context.add_routes(route)
    await context.start()
    try:
        await asyncio.wait_for(route.finished.wait(), 60)
    finally:
        await context.stop()
        route.file.close()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
