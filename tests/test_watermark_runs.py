"""The watermark of poll_pages runs: into the query, moved on only once every record of the run
completed, left alone by failures, shared through PostgreSQL by two contexts."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from pytest_asyncio import fixture as async_fixture

from eip import (
    Context,
    Exchange,
    PageFetchError,
    PartFailedError,
    PollReport,
    RouteBuilder,
    body_cursor,
    dead_letter_channel,
    last_of,
    max_of,
    page_number,
    pipeline,
    response_value,
    watermark,
)
from eip.processors.paging import POLL_REPORT, POLL_WATERMARK
from eip.processors.watermark import Advance
from eip.stores import (
    PostgresWatermarkStore,
    SqliteIdempotentRepository,
    SqliteWatermarkStore,
    StoreError,
    WatermarkStore,
)
from tests.paged_crm import PagedCrm, Reply, customers
from tests.stores.backends import PG_DSN, drop_pg_tables

START = "2026-11-01T00:00:00Z"
#: customer n is updated at 08:n+08:00 on 2026-11-01 (see tests/paged_crm.py)
LAST = "2026-11-01T08:25:00+08:00"


def stamp(n: int) -> str:
    return str(customers(1, start=n)[0]["updated_at"])


class Sync(RouteBuilder):
    """``direct:run`` -> poll_pages with a watermark -> ``handle`` per record."""

    def __init__(
        self,
        url: str,
        store: WatermarkStore,
        *,
        advance: Advance | None = None,
        handle: Callable[[Exchange], Any] | None = None,
        dead_letter: bool = False,
        idempotent: SqliteIdempotentRepository | None = None,
        advance_on_bound: bool = True,
        **options: Any,
    ) -> None:
        super().__init__()
        self.url = url
        self.mark = watermark(
            "crm-customers",
            advance or max_of("updated_at"),
            store=store,
            initial=START,
            advance_on_bound=advance_on_bound,
        )
        self.handle = handle
        self.dead_letter = dead_letter
        self.idempotent = idempotent
        self.options = {"records": "$.items", "pagination": page_number(size=10), **options}
        self.delivered: list[int] = []
        self.queried: list[Any] = []

    async def deliver(self, exchange: Exchange) -> None:
        self.queried.append(exchange.properties[POLL_WATERMARK])
        if self.handle is not None:
            result = self.handle(exchange)
            if asyncio.iscoroutine(result):
                await result
        self.delivered.append(exchange.body["id"])

    def configure(self) -> None:
        if self.dead_letter:
            self.error_handler(dead_letter_channel("mock:dead"))
        each = pipeline()
        if self.idempotent is not None:
            each = each.idempotent_consumer(
                lambda ex: f"{ex.body['id']}@{ex.body['updated_at']}", self.idempotent
            )
        (
            self.from_("direct:run")
            .route_id("sync")
            .poll_pages(self.url, each.process(self.deliver), watermark=self.mark, **self.options)
        )


class Env:
    def __init__(self, crm: PagedCrm, tmp_path: Path) -> None:
        self.crm = crm
        self.tmp_path = tmp_path
        self.contexts: list[Context] = []

    @property
    def url(self) -> str:
        return f"{self.crm.url}/page?updated_since={{watermark}}"

    def store(self) -> SqliteWatermarkStore:
        return SqliteWatermarkStore(self.tmp_path / "state" / "watermarks.db")

    async def start(self, route: RouteBuilder) -> Context:
        context = Context(shutdown_timeout=5)
        context.add_routes(route)
        await context.start()
        self.contexts.append(context)
        return context

    async def run(self, context: Context) -> Exchange:
        return await context.template().request_exchange("direct:run")


@async_fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    async with PagedCrm(customers(25), page_size=10) as crm:
        made = Env(crm, tmp_path)
        try:
            yield made
        finally:
            for context in made.contexts:
                await context.stop()


async def stored(store: WatermarkStore) -> Any:
    """The stored value (``store`` is a route's, started by its context)."""
    checkpoint = await store.get("crm-customers")
    return None if checkpoint is None else checkpoint.value


async def test_the_watermark_goes_into_the_query_and_moves_to_the_newest_record(
    env: Env,
) -> None:
    store = env.store()
    route = Sync(env.url, store)
    context = await env.start(route)
    first = await env.run(context)
    assert first.exception is None
    assert route.delivered == list(range(1, 26))
    report = first.body
    assert (report.watermark_before, report.watermark_after, report.advanced) == (
        START,
        LAST,
        True,
    )
    assert await stored(store) == LAST
    assert {q["updated_since"] for q in env.crm.page_requests()} == {START}
    assert set(route.queried) == {START}

    env.crm.requests.clear()
    route.delivered.clear()
    second = await env.run(context)
    assert route.delivered == [25]  # updated_since is inclusive: the boundary comes again
    assert env.crm.page_requests()[0]["updated_since"] == LAST
    assert (second.body.watermark_after, second.body.advanced) == (LAST, False)

    env.crm.add(*customers(5, start=26))
    route.delivered.clear()
    third = await env.run(context)
    assert route.delivered == [25, 26, 27, 28, 29, 30]
    assert third.body.watermark_after == stamp(30)
    assert await stored(store) == stamp(30)


async def test_the_watermark_moves_only_after_the_last_record_completed(env: Env) -> None:
    store = env.store()
    release = asyncio.Event()
    reached = asyncio.Event()

    async def slow_last(exchange: Exchange) -> None:
        if exchange.body["id"] == 25:
            reached.set()
            await release.wait()

    route = Sync(env.url, store, handle=slow_last)
    context = await env.start(route)
    run = asyncio.create_task(env.run(context))
    await asyncio.wait_for(reached.wait(), 5)
    assert route.delivered == list(range(1, 25))  # every page fetched, 24 records done
    assert await stored(store) is None  # ...and the watermark has not moved
    release.set()
    exchange = await run
    assert exchange.exception is None
    assert await stored(store) == LAST


async def test_an_unhandled_record_failure_leaves_the_watermark_and_the_next_run_refetches(
    env: Env,
) -> None:
    store = env.store()
    failing = {12}

    def fail_some(exchange: Exchange) -> None:
        if exchange.body["id"] in failing:
            raise ValueError(f"OA refused customer {exchange.body['id']}")

    route = Sync(env.url, store, handle=fail_some)
    context = await env.start(route)
    exchange = await env.run(context)
    assert isinstance(exchange.exception, PartFailedError)
    assert "OA refused customer 12" in str(exchange.exception)
    assert route.delivered == [n for n in range(1, 26) if n != 12]  # the others went on
    report: PollReport = exchange.properties[POLL_REPORT]
    assert (report.completed, report.failed, report.advanced) == (24, 1, False)
    assert report.watermark_after == START
    assert await stored(store) is None

    failing.clear()
    route.delivered.clear()
    again = await env.run(context)
    assert again.exception is None
    assert route.delivered == list(range(1, 26))  # all of it again: at-least-once
    assert await stored(store) == LAST


async def test_a_dead_lettered_record_counts_as_delivered(env: Env) -> None:
    store = env.store()

    def fail_seven(exchange: Exchange) -> None:
        if exchange.body["id"] == 7:
            raise ValueError("bad record 7")

    route = Sync(env.url, store, handle=fail_seven, dead_letter=True)
    context = await env.start(route)
    exchange = await env.run(context)
    assert exchange.exception is None
    report = exchange.body
    assert (report.completed, report.dead_lettered, report.failed) == (24, 1, 0)
    assert report.advanced
    assert await stored(store) == LAST
    [dead] = context.mock("dead").received
    assert dead.body["id"] == 7


async def test_a_failed_page_leaves_the_watermark(env: Env) -> None:
    store = env.store()

    def page_three_missing(request: Any) -> Reply | None:
        return Reply(404, {"error": "gone"}) if request.query.get("page") == "3" else None

    env.crm.failing = page_three_missing
    route = Sync(env.url, store)
    context = await env.start(route)
    exchange = await env.run(context)
    assert isinstance(exchange.exception, PageFetchError)
    assert exchange.exception.page == 3
    assert route.delivered == list(range(1, 21))
    assert await stored(store) is None


async def test_max_of_orders_timestamps_by_instant_not_by_text(env: Env) -> None:
    store = env.store()
    items = [
        {"id": 1, "updated_at": "2026-11-01T10:00:00+08:00"},  # 02:00Z
        {"id": 2, "updated_at": "2026-11-01T03:00:00Z"},  # the newest
        {"id": 3, "updated_at": "2026-11-01T09:30:00+08:00"},  # 01:30Z
        {"id": 4, "updated_at": None},  # no timestamp: not counted
    ]
    env.crm.fail_next(Reply(200, {"items": items}))
    route = Sync(env.url, store, pagination=None)
    context = await env.start(route)
    exchange = await env.run(context)
    assert exchange.exception is None
    assert await stored(store) == "2026-11-01T03:00:00Z"

    env.crm.fail_next(Reply(200, {"items": [{"id": 5, "updated_at": "2026-11-01T10:30:00+08:00"}]}))
    older = await env.run(context)  # 02:30Z is older than the watermark: it never goes back
    assert (older.body.advanced, older.body.watermark_after) == (False, "2026-11-01T03:00:00Z")


async def test_last_of_and_response_value(env: Env) -> None:
    pages = [
        Reply(200, {"items": [{"id": "e1"}, {"id": "e2"}], "next": "c1", "token": None}),
        Reply(200, {"items": [{"id": "e3"}], "next": None, "token": "delta-7"}),
    ]
    env.crm.fail_next(*pages)
    by_id = Sync(
        f"{env.crm.url}/cursor?after={{watermark}}",
        SqliteWatermarkStore(env.tmp_path / "ids.db"),
        advance=last_of("id"),
        pagination=body_cursor("$.next"),
    )
    exchange = await env.run(await env.start(by_id))
    assert exchange.body.watermark_after == "e3"

    env.crm.fail_next(*pages)
    by_token = Sync(
        f"{env.crm.url}/cursor?token={{watermark}}",
        SqliteWatermarkStore(env.tmp_path / "tokens.db"),
        advance=response_value("$.token"),
        pagination=body_cursor("$.next"),
    )
    exchange = await env.run(await env.start(by_token))
    assert exchange.body.watermark_after == "delta-7"
    assert env.crm.page_requests()[-2]["token"] == START


async def test_a_bounded_run_advances_to_what_it_delivered_unless_told_not_to(
    env: Env,
) -> None:
    store = env.store()
    route = Sync(env.url, store, max_pages=2)
    context = await env.start(route)
    exchange = await env.run(context)
    assert exchange.body.stopped_by == "max_pages"
    assert await stored(store) == stamp(20)

    other = SqliteWatermarkStore(env.tmp_path / "kept.db")
    kept = Sync(env.url, other, max_pages=2, advance_on_bound=False)
    exchange = await env.run(await env.start(kept))
    assert (exchange.body.stopped_by, exchange.body.advanced) == ("max_pages", False)
    assert await stored(other) is None


async def test_an_idempotent_consumer_makes_the_refetched_boundary_a_duplicate(
    env: Env,
) -> None:
    store = env.store()
    seen = SqliteIdempotentRepository(env.tmp_path / "state" / "seen.db", ttl=30 * 86400)
    route = Sync(env.url, store, idempotent=seen)
    context = await env.start(route)
    first = (await env.run(context)).body
    assert (first.fetched, first.completed, first.duplicates) == (25, 25, 0)
    second = (await env.run(context)).body
    assert (second.fetched, second.completed, second.duplicates) == (1, 0, 1)
    assert route.delivered == list(range(1, 26))  # customer 25 went through once


# -- PostgreSQL: one watermark for several instances ----------------------------------------
@async_fixture
async def pg_table() -> AsyncIterator[str]:
    table = f"eip_test_wm_{uuid.uuid4().hex[:12]}"
    try:
        yield table
    finally:
        await drop_pg_tables([table])


async def test_two_contexts_share_one_postgres_watermark(env: Env, pg_table: str) -> None:
    one = Sync(env.url, PostgresWatermarkStore(PG_DSN, table=pg_table))
    two = Sync(env.url, PostgresWatermarkStore(PG_DSN, table=pg_table))
    first, second = await env.start(one), await env.start(two)
    assert (await env.run(first)).body.watermark_after == LAST
    env.crm.add(*customers(3, start=26))
    report = (await env.run(second)).body  # the other instance: starts where the first ended
    assert report.watermark_before == LAST
    assert two.delivered == [25, 26, 27, 28]
    assert report.watermark_after == stamp(28)
    assert await stored(one.mark.store) == stamp(28)


async def test_two_contexts_running_at_once_advance_the_watermark_once(
    env: Env, pg_table: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="eip.poll")
    env.crm.delay = 0.05
    one = Sync(env.url, PostgresWatermarkStore(PG_DSN, table=pg_table))
    two = Sync(env.url, PostgresWatermarkStore(PG_DSN, table=pg_table))
    first, second = await env.start(one), await env.start(two)
    results = await asyncio.gather(env.run(first), env.run(second))
    reports = [r.body for r in results]
    assert all(r.watermark_before == START for r in reports)  # both read it before either ended
    assert sorted(r.advanced for r in reports) == [False, True]
    assert one.delivered == two.delivered == list(range(1, 26))
    checkpoint = await one.mark.store.get("crm-customers")
    assert checkpoint is not None
    assert (checkpoint.value, checkpoint.version) == (LAST, 1)
    assert any("moved to" in r.getMessage() for r in caplog.records)


async def test_a_watermark_store_that_fails_fails_the_run_before_any_page(env: Env) -> None:
    store = env.store()
    route = Sync(env.url, store)
    context = await env.start(route)
    await store.stop()  # the store is gone: its next read fails
    exchange = await env.run(context)
    assert isinstance(exchange.exception, StoreError)
    assert env.crm.requests == []
    report: PollReport = exchange.properties[POLL_REPORT]
    assert (report.stopped_by, report.fetched, report.advanced) == ("error", 0, False)
    assert report.error is not None
    assert report.error.startswith("StoreError: ")
