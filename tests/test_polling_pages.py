"""poll_pages against a real paged REST server: the pagination styles, retries and Retry-After,
failures that name the page and its URL, and the bounds of a run."""

from __future__ import annotations

import email.utils
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from pytest_asyncio import fixture as async_fixture

from eip import (
    Context,
    Exchange,
    PageFetchError,
    PollReport,
    RedeliveryPolicy,
    RouteBuilder,
    RouteDefinitionError,
    body_cursor,
    dead_letter_channel,
    http_client,
    link_header,
    page_number,
    page_offset,
    pipeline,
)
from eip.processors.page_fetch import retry_after
from eip.processors.pagination import json_path, next_links, set_query
from eip.processors.paging import POLL_PAGE, POLL_REPORT
from tests.paged_crm import PagedCrm, Reply, customers


class JumpingClock:
    """Real time, except that a sleep returns at once and moves this clock on by its length:
    the tests see every wait the step asks for, and do not spend it."""

    def __init__(self) -> None:
        self.offset = 0.0
        self.sleeps: list[float] = []

    def time(self) -> float:
        return time.time() + self.offset

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.offset += max(0.0, seconds)


class Poll(RouteBuilder):
    """``direct:run`` -> poll_pages(url) -> each record into ``self.records``."""

    def __init__(self, url: Any, **options: Any) -> None:
        super().__init__()
        self.url = url
        self.options = options
        self.records: list[Any] = []
        self.pages: list[int] = []

    def got(self, exchange: Exchange) -> None:
        self.records.append(exchange.body)
        self.pages.append(exchange.properties[POLL_PAGE])

    def configure(self) -> None:
        (
            self.from_("direct:run")
            .route_id("poll")
            .poll_pages(self.url, pipeline().process(self.got), **self.options)
        )


class Setup:
    def __init__(self, crm: PagedCrm, clock: JumpingClock) -> None:
        self.crm = crm
        self.clock = clock
        self.contexts: list[Context] = []

    async def start(self, route: RouteBuilder) -> Context:
        context = Context(clock=self.clock, shutdown_timeout=5)
        context.add_routes(route)
        await context.start()
        self.contexts.append(context)
        return context

    async def run(self, route: RouteBuilder) -> Exchange:
        context = await self.start(route)
        return await context.template().request_exchange("direct:run")


@async_fixture
async def setup() -> AsyncIterator[Setup]:
    async with PagedCrm(customers(25), page_size=10) as crm:
        ready = Setup(crm, JumpingClock())
        try:
            yield ready
        finally:
            for context in ready.contexts:
                await context.stop()


def ids(records: list[Any]) -> list[int]:
    return [r["id"] for r in records]


def report_of(exchange: Exchange) -> PollReport:
    report = exchange.properties[POLL_REPORT]
    assert isinstance(report, PollReport)
    return report


# -- the three styles (and numbers) ----------------------------------------------------------
async def test_page_numbers_walk_every_page_in_order(setup: Setup) -> None:
    route = Poll(f"{setup.crm.url}/page", records="$.items", pagination=page_number(size=10))
    exchange = await setup.run(route)
    assert exchange.exception is None
    assert ids(route.records) == list(range(1, 26))
    assert route.pages == [1] * 10 + [2] * 10 + [3] * 5
    assert [q["page"] for q in setup.crm.page_requests()] == ["1", "2", "3"]
    report = exchange.body
    assert isinstance(report, PollReport)
    assert (report.pages, report.fetched, report.completed, report.stopped_by) == (3, 25, 25, "end")


async def test_offsets_move_on_by_the_records_received(setup: Setup) -> None:
    # The server caps pages at 10 although 20 were asked for: the next offset is 10, not 20.
    setup.crm.page_size = 10
    route = Poll(
        f"{setup.crm.url}/offset",
        records="$.items",
        pagination=page_offset(size=10, size_param=None),
    )
    exchange = await setup.run(route)
    assert exchange.exception is None
    assert ids(route.records) == list(range(1, 26))
    assert [q["offset"] for q in setup.crm.page_requests()] == ["0", "10", "20"]


async def test_an_empty_last_page_ends_the_run(setup: Setup) -> None:
    setup.crm.records = setup.crm.records[:20]  # exactly two full pages, then an empty one
    route = Poll(f"{setup.crm.url}/page", records="$.items", pagination=page_number(size=10))
    exchange = await setup.run(route)
    assert ids(route.records) == list(range(1, 21))
    assert report_of(exchange).pages == 3


async def test_a_cursor_from_the_body_is_sent_back_with_the_other_parameters(
    setup: Setup,
) -> None:
    url = f"{setup.crm.url}/cursor?limit=7&updated_since=2026-11-01T08:05:00%2B08:00"
    route = Poll(url, records="$.items", pagination=body_cursor("$.next_cursor"))
    exchange = await setup.run(route)
    assert exchange.exception is None
    assert ids(route.records) == list(range(5, 26))  # inclusive: 08:05+08:00 is customer 5
    queries = setup.crm.page_requests()
    assert len(queries) == 3
    assert all(q["updated_since"] == "2026-11-01T08:05:00+08:00" for q in queries)
    assert all(q["limit"] == "7" for q in queries)
    assert "cursor" not in queries[0]
    assert queries[1]["cursor"]
    assert queries[2]["cursor"] != queries[1]["cursor"]


async def test_the_link_header_next_relation_is_followed(setup: Setup) -> None:
    route = Poll(f"{setup.crm.url}/link?per_page=10", pagination=link_header())
    exchange = await setup.run(route)
    assert exchange.exception is None
    assert ids(route.records) == list(range(1, 26))  # the body is the list itself ("$")
    assert setup.crm.requests == [
        "/link?per_page=10",
        "/link?per_page=10&page=2",
        "/link?per_page=10&page=3",
    ]


def test_link_headers_are_read_as_rfc_8288_says() -> None:
    headers = {
        "Link": '<https://api.x/items?page=3>; rel="next last", <https://api.x/items?page=1>;'
        ' title="first page"; rel=prev'
    }
    assert next_links(headers) == {
        "next": "https://api.x/items?page=3",
        "last": "https://api.x/items?page=3",
        "prev": "https://api.x/items?page=1",
    }
    assert next_links({"content-type": "application/json"}) == {}


def test_json_paths_and_query_parameters() -> None:
    data = {"data": {"rows": [{"id": 1}], "odd key": 5}, "next": None}
    assert json_path("$.data.rows[0].id")(data) == 1
    assert json_path("$['data']['odd key']")(data) == 5
    assert json_path("$.missing.deeper")(data) is None
    assert json_path("$")(data) is data
    with pytest.raises(ValueError, match="unsupported JSON path"):
        json_path("$.items[*]")
    url = set_query("http://h/x?since=2026-11-01T00%3A00%3A00%2B08%3A00&page=1", {"page": "2"})
    assert url == "http://h/x?since=2026-11-01T00%3A00%3A00%2B08%3A00&page=2"


# -- retries ------------------------------------------------------------------------------------
async def test_429_with_retry_after_seconds_waits_as_asked(setup: Setup) -> None:
    setup.crm.fail_next(Reply(429, {"error": "slow down"}, {"Retry-After": "7"}))
    route = Poll(f"{setup.crm.url}/page", records="$.items", pagination=page_number(size=10))
    exchange = await setup.run(route)
    assert exchange.exception is None
    assert ids(route.records) == list(range(1, 26))
    assert setup.clock.sleeps == [7.0]  # the server's 7s, not the policy's 1s
    assert [q["page"] for q in setup.crm.page_requests()] == ["1", "1", "2", "3"]


async def test_429_with_retry_after_as_an_http_date(setup: Setup) -> None:
    when = email.utils.formatdate(setup.clock.time() + 30, usegmt=True)
    setup.crm.fail_next(Reply(429, {"error": "slow down"}, {"Retry-After": when}))
    route = Poll(f"{setup.crm.url}/page", records="$.items", pagination=page_number(size=10))
    exchange = await setup.run(route)
    assert exchange.exception is None
    [wait] = setup.clock.sleeps
    assert 28.5 <= wait <= 30.0  # an HTTP-date has whole seconds
    assert len(route.records) == 25


def test_retry_after_values() -> None:
    now = 1_800_000_000.0
    assert retry_after({"Retry-After": "120"}, now) == 120.0
    date = email.utils.formatdate(now + 90, usegmt=True)
    assert retry_after({"retry-after": date}, now) == 90.0
    assert retry_after({"Retry-After": email.utils.formatdate(now - 5, usegmt=True)}, now) == 0.0
    assert retry_after({"Retry-After": "soon"}, now) is None
    assert retry_after({}, now) is None


async def test_5xx_is_retried_with_backoff_then_fails_naming_the_url_and_the_page(
    setup: Setup,
) -> None:
    # Page 1 comes through; page 2 fails five times (the attempt and four retries).
    def page_two_down(request: Any) -> Reply | None:
        return Reply(503, {"error": "db down"}) if request.query.get("page") == "2" else None

    setup.crm.failing = page_two_down
    route = Poll(
        f"{setup.crm.url}/page?token=s3cret",
        records="$.items",
        pagination=page_number(size=10),
        retry=RedeliveryPolicy(max_redeliveries=4, delay=0.5, backoff_multiplier=2),
    )
    exchange = await setup.run(route)
    error = exchange.exception
    assert isinstance(error, PageFetchError)
    assert error.page == 2
    assert error.attempts == 5
    assert error.status == 503
    assert str(error).startswith(f"page 2 ({setup.crm.url}/page?token=")
    assert "page=2" in error.url
    assert "s3cret" not in str(error)  # a secret-looking query value is redacted
    assert "failed after 5 attempts: HttpOperationFailed: HTTP 503 from GET" in str(error)
    assert setup.clock.sleeps == [0.5, 1.0, 2.0, 4.0]
    assert [q["page"] for q in setup.crm.page_requests()] == ["1"] + ["2"] * 5
    assert ids(route.records) == list(range(1, 11))  # page 1's records were delivered
    report = report_of(exchange)
    assert (report.pages, report.fetched, report.stopped_by) == (1, 10, "error")
    assert report.error is not None
    assert report.error.startswith("PageFetchError: page 2")


async def test_other_4xx_answers_fail_at_once(setup: Setup) -> None:
    setup.crm.fail_next(Reply(404, {"error": "no such list"}))
    route = Poll(f"{setup.crm.url}/page", records="$.items", pagination=page_number(size=10))
    exchange = await setup.run(route)
    error = exchange.exception
    assert isinstance(error, PageFetchError)
    assert (error.page, error.attempts, error.status) == (1, 1, 404)
    assert setup.clock.sleeps == []
    assert route.records == []


async def test_a_retry_after_beyond_the_limit_fails_the_page(setup: Setup) -> None:
    setup.crm.fail_next(Reply(429, None, {"Retry-After": "3600"}))
    route = Poll(f"{setup.crm.url}/page", records="$.items", max_retry_after=60)
    exchange = await setup.run(route)
    error = exchange.exception
    assert isinstance(error, PageFetchError)
    assert "retry after 3600s, more than max_retry_after=60s" in str(error)
    assert setup.clock.sleeps == []


async def test_a_connection_refused_is_retried_and_named(setup: Setup) -> None:
    port = setup.crm.port
    route = Poll(
        f"http://127.0.0.1:{port}/page",
        records="$.items",
        retry=RedeliveryPolicy(max_redeliveries=2, delay=0.1),
    )
    context = await setup.start(route)
    await setup.crm.__aexit__(None, None, None)  # nobody listens on the port any more
    exchange = await context.template().request_exchange("direct:run")
    error = exchange.exception
    assert isinstance(error, PageFetchError)
    assert (error.page, error.attempts, error.status) == (1, 3, None)
    assert f"http://127.0.0.1:{port}/page" in str(error)
    assert setup.clock.sleeps == [0.1, 0.1]


async def test_a_page_that_is_not_json_or_has_no_list_fails_without_retry(
    setup: Setup,
) -> None:
    route = Poll(f"{setup.crm.url}/page", records="$.rows", pagination=page_number(size=10))
    exchange = await setup.run(route)
    error = exchange.exception
    assert isinstance(error, PageFetchError)
    assert "expected a list of records at $.rows, found nothing" in str(error)
    assert setup.clock.sleeps == []


# -- bounds and pacing ----------------------------------------------------------------------
async def test_max_pages_bounds_a_run(setup: Setup, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="eip.poll")
    route = Poll(
        f"{setup.crm.url}/page", records="$.items", pagination=page_number(size=10), max_pages=2
    )
    exchange = await setup.run(route)
    assert exchange.exception is None
    assert ids(route.records) == list(range(1, 21))
    report = exchange.body
    assert (report.pages, report.fetched, report.stopped_by) == (2, 20, "max_pages")
    assert len(setup.crm.requests) == 2
    assert any("stopped by max_pages" in r.getMessage() for r in caplog.records)


async def test_max_duration_stops_fetching_more_pages(setup: Setup) -> None:
    setup.crm.delay = 0.2
    route = Poll(
        f"{setup.crm.url}/page?per_page=5",
        records="$.items",
        pagination=page_number(size=5),
        max_duration=0.5,
    )
    exchange = await setup.run(route)
    assert exchange.exception is None
    report = exchange.body
    assert report.stopped_by == "max_duration"
    assert 1 <= report.pages < 5  # ~0.2s a page, no new page after 0.5s
    assert report.fetched == report.pages * 5 == len(route.records)


async def test_a_retry_that_would_pass_the_time_bound_fails_now(setup: Setup) -> None:
    setup.crm.fail_next(Reply(503, None, {"Retry-After": "120"}))
    route = Poll(f"{setup.crm.url}/page", records="$.items", max_duration=60)
    exchange = await setup.run(route)
    error = exchange.exception
    assert isinstance(error, PageFetchError)
    assert "would pass the run's time bound" in str(error)


async def test_rate_spaces_the_requests(setup: Setup) -> None:
    route = Poll(
        f"{setup.crm.url}/page", records="$.items", pagination=page_number(size=10), rate=0.5
    )
    exchange = await setup.run(route)
    assert exchange.exception is None
    assert len(setup.clock.sleeps) == 2  # before pages 2 and 3: 2s after the one before
    assert all(1.0 < wait <= 2.0 for wait in setup.clock.sleeps)


async def test_records_may_be_picked_by_a_function(setup: Setup) -> None:
    route = Poll(
        f"{setup.crm.url}/page",
        records=lambda page: [r for r in page["items"] if r["id"] % 2],
        pagination=page_number(),  # no size: the first empty page ends the run
    )
    exchange = await setup.run(route)
    assert exchange.exception is None
    assert ids(route.records) == list(range(1, 26, 2))
    assert exchange.body.pages == 4


# -- records ----------------------------------------------------------------------------------
class Customer(msgspec.Struct, frozen=True):
    id: int
    name: str
    updated_at: str


async def test_records_are_converted_to_a_type_and_a_bad_one_fails_in_its_part(
    setup: Setup,
) -> None:
    setup.crm.records[3] = {**setup.crm.records[3], "name": 42}

    class Typed(RouteBuilder):
        def __init__(self) -> None:
            super().__init__()
            self.records: list[Customer] = []

        def configure(self) -> None:
            self.error_handler(dead_letter_channel("mock:dead"))
            (
                self.from_("direct:run")
                .route_id("typed")
                .poll_pages(
                    f"{setup.crm.url}/page",
                    pipeline().process(lambda ex: self.records.append(ex.body)),
                    records="$.items",
                    pagination=page_number(size=10),
                    type=Customer,
                )
            )

    route = Typed()
    context = await setup.start(route)
    exchange = await context.template().request_exchange("direct:run")
    assert exchange.exception is None
    assert len(route.records) == 24
    assert all(isinstance(r, Customer) for r in route.records)
    report = exchange.body
    assert (report.fetched, report.completed, report.dead_lettered) == (25, 24, 1)
    [dead] = context.mock("dead").received
    assert dead.body == setup.crm.records[3]
    assert "$.name" in dead.headers["eip.exception.message"]


async def test_pages_off_the_first_host_are_not_followed(setup: Setup) -> None:
    async with PagedCrm(customers(3)) as other:
        setup.crm.fail_next(Reply(200, [{"id": 1}], {"Link": f'<{other.url}/link>; rel="next"'}))
        route = Poll(f"{setup.crm.url}/link", pagination=link_header())
        exchange = await setup.run(route)
        error = exchange.exception
        assert isinstance(error, PageFetchError)
        assert error.page == 2
        assert "another host" in str(error)
        assert other.requests == []


async def test_a_cursor_that_does_not_move_is_a_loop(setup: Setup) -> None:
    setup.crm.fail_next(
        Reply(200, {"items": [{"id": 1}], "next_cursor": "abc"}),
        Reply(200, {"items": [{"id": 2}], "next_cursor": "abc"}),
    )
    route = Poll(
        f"{setup.crm.url}/cursor", records="$.items", pagination=body_cursor("$.next_cursor")
    )
    exchange = await setup.run(route)
    error = exchange.exception
    assert isinstance(error, PageFetchError)
    assert error.page == 3
    assert "loop" in str(error)
    assert ids(route.records) == [1, 2]


async def test_definition_errors_name_the_problem(setup: Setup) -> None:
    context = Context(shutdown_timeout=5)
    context.add_routes(Poll(f"{setup.crm.url}/page?since={{watermark}}"))
    with pytest.raises(RouteDefinitionError, match="has no watermark="):
        await context.start()
    context = Context(shutdown_timeout=5)
    context.add_routes(Poll(http_client(f"{setup.crm.url}/page"), max_pages=0))
    with pytest.raises(RouteDefinitionError, match="max_pages must be >= 1"):
        await context.start()
