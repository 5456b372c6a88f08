"""The CRM -> OA nightly sync example (routes/crm_oa_nightly_sync.py), end to end: the demo as
``eip run routes/`` runs it, and the routes against a real CRM and OA (aiohttp) on the cron's
03:00 Asia/Shanghai, a failed run, and the run after it."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiohttp import web
from pytest_asyncio import fixture as async_fixture

from eip import Context
from eip import headers as H
from eip.config import load_config
from eip.runtime.operations import trigger_route
from eip.stores import SqliteWatermarkStore
from eip.testing import ManualClock
from routes.crm_oa_nightly_sync import (
    SAMPLE_FILE,
    CrmOaNightlySync,
    DemoCrmOaSystems,
    OaCustomer,
    SyncReport,
    crm_page,
    reports_dir,
)
from tests.crm_support import assert_failure, read_letter

ROOT = Path(__file__).resolve().parent.parent
NEWEST = "2026-11-22T23:50:00+08:00"  # customer 2012, the newest sample
SAMPLES: list[dict[str, Any]] = msgspec.json.decode(SAMPLE_FILE.read_bytes())


def reports(data: Path) -> list[SyncReport]:
    folder = reports_dir(data)
    if not folder.exists():
        return []
    # Not the file producer's ".<name>.<random>.tmp" of a report being written: counted, it
    # made "two reports" out of the first one and a half-written second.
    written = [p for p in sorted(folder.iterdir()) if not p.name.startswith(".")]
    return [msgspec.json.decode(p.read_bytes(), type=SyncReport) for p in written]


async def wait_for_reports(data: Path, count: int, clock: ManualClock | None = None) -> None:
    """Wait until ``count`` reports are written; with a manual clock, move it on a second at
    a time meanwhile (the run's pacing and retries wait on it)."""
    for _ in range(2000):
        if len(await asyncio.to_thread(reports, data)) >= count:
            return
        if clock is not None:
            await clock.advance(1)
        await asyncio.sleep(0.01)
    raise AssertionError(f"{count} report(s) were not written")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_the_demo_upserts_ten_dead_letters_two_and_writes_the_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = _free_port()
    monkeypatch.setenv("EIP_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("EIP_HTTP_PORT", str(port))
    for name in ("EIP_DEMO", "CRM_API_TOKEN", "OA_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    context = Context(shutdown_timeout=5)
    context.use_config(load_config(ROOT / "eip.toml"))  # {{demo.crm.url}}, as eip run reads it
    context.component("http").configure(host="127.0.0.1", port=port)  # type: ignore[attr-defined]
    context.add_routes(CrmOaNightlySync(), DemoCrmOaSystems())
    async with context:
        await wait_for_reports(tmp_path, 1)  # the demo's run at start
        [first] = reports(tmp_path)
        trigger_route(context, "crm-oa-nightly-sync")  # what `eip route trigger` does
        await wait_for_reports(tmp_path, 2)
        second = reports(tmp_path)[1]

    assert (first.status, first.pages, first.fetched) == ("ok", 3, 12)  # 5 + 5 + 2
    assert (first.upserted, first.unchanged, first.failed) == (10, 0, 2)
    assert (first.watermark_before, first.watermark_after) == ("1970-01-01T00:00:00Z", NEWEST)
    upserted = sorted(p.name for p in (tmp_path / "demo" / "oa-api").iterdir())
    expected = [f"CRM-{n:06d}.json" for n in range(2001, 2013) if n not in (2006, 2007)]
    assert upserted == expected
    oa = msgspec.json.decode((tmp_path / "demo" / "oa-api" / "CRM-002001.json").read_bytes())
    assert oa == {
        "customer_code": "CRM-002001",
        "customer_name": "上海华东贸易有限公司",
        "contact_email": "li.na@huadong-trade.cn",
        "contact_phone": "+86 21 6123 4567",
        "owner_account": "sales.li",
        "region_code": "EAST",
        "city": "Shanghai",
        "crm_updated_at": "2026-11-22T09:05:00+08:00",
    }
    dead = tmp_path / "dead-letter" / "crm-oa-sync"
    assert sorted(p.name for p in dead.iterdir()) == ["CRM-002006.json", "CRM-002007.json"]
    no_email = read_letter(dead / "CRM-002006.json")
    assert_failure(no_email, "MappingError", "crm-oa-sync-run", "email")
    assert no_email.body == SAMPLES[5]  # the CRM record as fetched
    locked = read_letter(dead / "CRM-002007.json")
    assert_failure(locked, "HttpOperationFailed", "crm-oa-sync-run", "HTTP 503")
    assert locked.failure[H.REDELIVERY_COUNT] == 2
    assert b"demo-oa-api-token" not in (dead / "CRM-002007.json").read_bytes()

    # The next run starts at the newest customer: it comes again (updated_since is
    # inclusive) and the idempotent consumer knows this version of it.
    assert second.watermark_before == NEWEST
    assert (second.fetched, second.upserted, second.unchanged, second.failed) == (1, 0, 1, 0)
    assert second.watermark_after == NEWEST


# -- against a real CRM and OA ----------------------------------------------------------------
class Systems:
    """A CRM (paging as the demo's does, from ``records``) and an OA that records each PUT."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = [dict(r) for r in SAMPLES if r["id"] != 2006]
        self.crm_queries: list[dict[str, str]] = []
        self.crm_auth: set[str] = set()
        self.oa: dict[str, dict[str, Any]] = {}
        self.oa_auth: set[str] = set()
        self.puts = 0
        self.crm_down_at_cursor = False
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def crm(self, request: web.Request) -> web.Response:
        self.crm_auth.add(request.headers.get("Authorization", ""))
        query = dict(request.query)
        self.crm_queries.append(query)
        if self.crm_down_at_cursor and "cursor" in query:
            return web.json_response({"error": "db down"}, status=500)
        return web.json_response(crm_page(self.records, query))

    async def oa_put(self, request: web.Request) -> web.Response:
        self.oa_auth.add(request.headers.get("Authorization", ""))
        self.puts += 1
        record = msgspec.json.decode(await request.read())
        self.oa[request.match_info["code"]] = record
        return web.json_response({"oa_id": "OA-" + request.match_info["code"]})

    async def __aenter__(self) -> Systems:
        app = web.Application()
        app.router.add_get("/crm/api/customers", self.crm)
        app.router.add_put("/oa/api/customers/{code}", self.oa_put)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


#: 02:59:30 in Shanghai, 30 seconds before the nightly fire.
BEFORE_THREE = dt.datetime(2026, 11, 22, 18, 59, 30, tzinfo=dt.UTC).timestamp()
#: Noon in Shanghai: the schedule stays out of the way of triggered runs.
NOON = dt.datetime(2026, 11, 22, 4, 0, tzinfo=dt.UTC).timestamp()


class Running:
    def __init__(self, systems: Systems, context: Context, clock: ManualClock, data: Path):
        self.systems, self.context, self.clock, self.data = systems, context, clock, data

    async def watermark(self) -> Any:
        store = SqliteWatermarkStore(self.data / "state" / "watermarks.db")
        await store.start()
        try:
            checkpoint = await store.get("crm-oa-customers")
        finally:
            await store.stop()
        return None if checkpoint is None else checkpoint.value


@contextlib.asynccontextmanager
async def routes_at(
    start: float, data: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Running]:
    """The routes against a real CRM and OA, on a manual clock that starts at ``start``."""
    async with Systems() as systems:
        monkeypatch.setenv("EIP_DEMO", "0")
        monkeypatch.setenv("EIP_CRM__URL", f"{systems.url}/crm")
        monkeypatch.setenv("EIP_OA__URL", f"{systems.url}/oa")
        monkeypatch.setenv("CRM_API_TOKEN", "crm-token-1")
        monkeypatch.setenv("OA_API_TOKEN", "oa-token-1")
        clock = ManualClock(start=start)
        context = Context(clock=clock, shutdown_timeout=5)
        context.add_routes(CrmOaNightlySync(data, page_size=4))
        await context.start()
        try:
            yield Running(systems, context, clock, data)
        finally:
            await context.stop()


@async_fixture
async def running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Running]:
    async with routes_at(BEFORE_THREE, tmp_path, monkeypatch) as ready:
        yield ready


@async_fixture
async def running_at_noon(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Running]:
    """Far from 03:00: the schedule stays out of the way of triggered runs."""
    async with routes_at(NOON, tmp_path, monkeypatch) as ready:
        yield ready


async def test_the_cron_runs_the_sync_at_three_in_shanghai_and_the_next_night_only_changes(
    running: Running,
) -> None:
    systems, clock = running.systems, running.clock
    await clock.advance(20)
    assert systems.crm_queries == []  # 02:59:50: not yet
    await wait_for_reports(running.data, 1, clock)
    [first] = reports(running.data)
    assert first.started == "2026-11-22T19:00:00+00:00"  # 03:00 Asia/Shanghai
    assert (first.status, first.fetched, first.upserted, first.failed) == ("ok", 11, 11, 0)
    assert first.pages == 3  # the demo CRM pages at most 5: 4 asked, 4 + 4 + 3
    assert systems.crm_queries[0] == {"updated_since": "1970-01-01T00:00:00Z", "limit": "4"}
    assert all(q["limit"] == "4" and "cursor" in q for q in systems.crm_queries[1:])
    assert systems.crm_auth == {"Bearer crm-token-1"}
    assert systems.oa_auth == {"Bearer oa-token-1"}
    assert OaCustomer(**systems.oa["CRM-002004"]).contact_email == "sales@westlake-tea.cn"
    assert await running.watermark() == NEWEST

    # During the day: 2003 changes, 2013 is new.
    changed = {
        **systems.records[2],
        "name": "深圳南山科技有限公司",
        "updated_at": "2026-11-23T10:00:00+08:00",
    }
    systems.records[2] = changed
    systems.records.append(
        {
            **SAMPLES[0],
            "id": 2013,
            "name": "Xiamen Island Coffee",
            "updated_at": "2026-11-23T11:00:00+08:00",
        }
    )
    puts_before, queries_before = systems.puts, len(systems.crm_queries)
    await clock.advance(86_400 - 60)  # the next night, 03:00 again
    await wait_for_reports(running.data, 2, clock)
    runs = reports(running.data)
    assert [r.started for r in runs] == [  # one run a night, at 03:00 in Shanghai
        "2026-11-22T19:00:00+00:00",
        "2026-11-23T19:00:00+00:00",
    ]
    second = runs[1]
    assert systems.crm_queries[queries_before]["updated_since"] == NEWEST
    assert (second.fetched, second.upserted, second.unchanged) == (3, 2, 1)  # 2012 again
    assert systems.puts - puts_before == 2
    assert systems.oa["CRM-002003"]["customer_name"] == "深圳南山科技有限公司"
    assert "CRM-002013" in systems.oa
    assert await running.watermark() == "2026-11-23T11:00:00+08:00"


async def test_a_failed_run_is_reported_keeps_the_watermark_and_the_next_run_catches_up(
    running_at_noon: Running,
) -> None:
    running = running_at_noon
    systems, clock = running.systems, running.clock
    systems.crm_down_at_cursor = True  # page 1 comes, page 2 answers 500 every time
    trigger_route(running.context, "crm-oa-nightly-sync")
    await wait_for_reports(running.data, 1, clock)
    [failed] = reports(running.data)
    assert failed.status == "failed"
    assert failed.error is not None
    assert failed.error.startswith(f"PageFetchError: page 2 ({systems.url}/crm/api/customers?")
    assert "after 5 attempts" in failed.error
    assert (failed.fetched, failed.upserted) == (4, 4)
    assert failed.watermark_after == failed.watermark_before == "1970-01-01T00:00:00Z"
    assert await running.watermark() is None
    assert len(systems.oa) == 4

    systems.crm_down_at_cursor = False
    trigger_route(running.context, "crm-oa-nightly-sync")
    await wait_for_reports(running.data, 2, clock)
    second = reports(running.data)[1]
    assert second.status == "ok"
    assert (second.fetched, second.upserted, second.unchanged) == (11, 7, 4)  # page 1 again
    assert len(systems.oa) == 11
    assert systems.puts == 11  # every customer upserted once over both runs
    assert await running.watermark() == NEWEST


def test_the_schedule_is_three_at_night_in_shanghai() -> None:
    [cron_route, run, dead] = CrmOaNightlySync(Path("unused")).build()
    assert cron_route.route_id == "crm-oa-nightly-sync"
    assert cron_route.source_uri.startswith("cron:crm-oa-nightly?")
    assert "schedule=0+3+*+*+*" in cron_route.source_uri.replace("%20", "+")
    assert "timezone=Asia/Shanghai" in cron_route.source_uri.replace("%2F", "/")
    assert (run.route_id, dead.route_id) == ("crm-oa-sync-run", "crm-oa-sync-dead")
