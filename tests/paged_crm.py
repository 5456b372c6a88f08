"""A real paged CRM REST API for the polling tests: aiohttp on a random loopback port.

::

    async with PagedCrm(customers(25)) as crm:
        crm.fail_next(Reply(429, headers={"Retry-After": "1"}))
        ... poll_pages(f"{crm.url}/cursor?updated_since={{watermark}}", ...) ...

The same records, sorted by ``(updated_at, id)`` and filtered by ``updated_since`` (inclusive,
ISO 8601 compared as instants), in four paging styles:

- ``/page?page=N&per_page=S`` (1-based), ``/offset?offset=N&limit=S``: ``{"items": [...]}``;
- ``/cursor?cursor=C&limit=S``: ``{"items": [...], "next_cursor": C or null}``, a keyset
  cursor (the last record's key), so records added meanwhile are never skipped;
- ``/link?page=N&per_page=S``: a bare JSON array, the next page in ``Link: <...>; rel="next"``.

``fail_next`` queues canned answers that the next requests get instead (any path), and
``failing`` answers a request by a function of it; ``delay`` slows every page down. Every
request is recorded.
"""

from __future__ import annotations

import asyncio
import base64
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from types import TracebackType
from typing import Any

from aiohttp import web

__all__ = ["PagedCrm", "Reply", "customers"]

BASE = datetime(2026, 11, 1, 0, 0, tzinfo=UTC)


def customers(count: int, *, start: int = 1, minutes: int = 0) -> list[dict[str, Any]]:
    """``count`` customers, ids from ``start``, one minute apart in ``updated_at`` (from
    ``BASE`` plus ``minutes``), written in UTC+08:00 as a Shanghai CRM would."""
    shanghai = timezone(timedelta(hours=8))
    out = []
    for n in range(start, start + count):
        when = (BASE + timedelta(minutes=minutes + n)).astimezone(shanghai)
        out.append({"id": n, "name": f"Customer {n}", "updated_at": when.isoformat()})
    return out


@dataclass(frozen=True)
class Reply:
    status: int
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)


def _instant(text: str) -> datetime:
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


class PagedCrm:
    def __init__(self, records: list[dict[str, Any]], *, page_size: int = 10) -> None:
        self.records = list(records)
        self.page_size = page_size
        self.delay = 0.0
        self.requests: list[str] = []  # path?query of each request, in order
        self.failures: list[Reply] = []
        #: Called per request: a Reply to answer instead, or None (a page that keeps failing).
        self.failing: Callable[[web.Request], Reply | None] | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def fail_next(self, *replies: Reply) -> None:
        self.failures.extend(replies)

    def add(self, *records: dict[str, Any]) -> None:
        self.records.extend(records)

    def page_requests(self) -> list[dict[str, str]]:
        """The query of every request, parsed (one value per name)."""
        return [
            dict(urllib.parse.parse_qsl(r.partition("?")[2], keep_blank_values=True))
            for r in self.requests
        ]

    # -- serving ---------------------------------------------------------------------------
    def _selected(self, request: web.Request) -> list[dict[str, Any]]:
        since = request.query.get("updated_since", "")
        rows = sorted(self.records, key=lambda r: (_instant(r["updated_at"]), r["id"]))
        if since:
            floor = _instant(since)
            rows = [r for r in rows if _instant(r["updated_at"]) >= floor]
        return rows

    def _size(self, request: web.Request, name: str) -> int:
        return int(request.query.get(name, self.page_size))

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(request.path_qs)
        if self.delay:
            await asyncio.sleep(self.delay)
        reply = self.failing(request) if self.failing is not None else None
        if reply is None and self.failures:
            reply = self.failures.pop(0)
        if reply is not None:
            return web.json_response(reply.json, status=reply.status, headers=reply.headers)
        rows = self._selected(request)
        style = request.match_info["style"]
        if style == "page" or style == "link":
            size = self._size(request, "per_page")
            number = int(request.query.get("page", 1))
            items = rows[(number - 1) * size : number * size]
            if style == "page":
                return web.json_response({"items": items})
            headers = {}
            if number * size < len(rows):
                query = dict(request.query)
                query["page"] = str(number + 1)
                target = f"{request.path}?{urllib.parse.urlencode(query)}"
                headers["Link"] = f'<{target}>; rel="next", <{request.path}?page=1>; rel="first"'
            return web.json_response(items, headers=headers)
        if style == "offset":
            offset, size = int(request.query.get("offset", 0)), self._size(request, "limit")
            return web.json_response({"items": rows[offset : offset + size]})
        if style == "cursor":
            size = self._size(request, "limit")
            cursor = request.query.get("cursor")
            if cursor:
                key = base64.urlsafe_b64decode(cursor.encode()).decode()
                stamp, _, ident = key.rpartition("|")
                after = (_instant(stamp), int(ident))
                rows = [r for r in rows if (_instant(r["updated_at"]), r["id"]) > after]
            items = rows[:size]
            following = None
            if len(rows) > size:
                last = items[-1]
                key = f"{last['updated_at']}|{last['id']}"
                following = base64.urlsafe_b64encode(key.encode()).decode()
            return web.json_response({"items": items, "next_cursor": following})
        return web.json_response({"error": "no such style"}, status=404)

    async def __aenter__(self) -> PagedCrm:
        app = web.Application()
        app.router.add_get("/{style}", self._handle)
        runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
