"""``poll_pages``: one run of an incremental REST sync, from the watermark to the last page.

A run is what one exchange reaching the step does (a ``cron:`` or ``timer:`` fire, a trigger
from the control API, a ``direct:`` call):

1. read the watermark from its store (or take ``initial``) and fill it into the URL's
   ``{watermark}`` (URL-encoded; ``""`` for None);
2. fetch the pages one after another (:mod:`eip.processors.page_fetch`: paced, retried,
   ``Retry-After`` honoured), following the pagination style
   (:mod:`eip.processors.pagination`), at most ``max_pages`` pages and, when set, for at most
   ``max_duration`` seconds (a bound stops the fetching of further pages, not the records
   already fetched);
3. run each record through the step's sub-pipeline as a part of the splitter
   (:class:`~eip.processors.split.Splitter`: in order, one at a time unless ``parallel``;
   the part properties ``eip.poll.page`` and ``eip.poll.watermark`` say where it came from);
4. once **every** record has completed its sub-pipeline, move the watermark on (see below);
5. continue the route with a :class:`PollReport` as the body (also in the ``eip.poll.report``
   property, where it is set on a failed run too) and log it.

**When the watermark moves.** Only at the end of a run in which no record failed unhandled
and no page failed. A record that a dead letter channel (or a ``handled`` clause) took counts
as delivered: it is where failed records go, and will be re-sent from there, not fetched
again, so it does not hold the sync back. A record whose failure was not handled, a page that
could not be fetched, or a crash (the process killed mid-run) leaves the watermark where it
was, so the next run fetches everything of this run again: at-least-once. What the route does
after the step (writing the report, say) does not hold it back either: the records are
delivered by then.

**Exactly-once in effect** comes from the idempotent consumer in the sub-pipeline, keyed by the
record *and its version* (``f"{id}@{updated_at}"``) in a persistent repository: a record that a
failed run delivered, or that an inclusive ``updated_since`` fetches again at the boundary, is
skipped as a duplicate (counted in ``duplicates``), while a record changed since is a new key
and goes through. Keep the keys (``ttl``) for longer than a run can be repeated; an upsert on
the other side (PUT by key) makes the remaining window (a crash between the upsert and the
key's confirmation) harmless.

**Two instances at once.** Advancing is a compare-and-set on the watermark's version: when
another instance moved it during this run, this run re-reads it and keeps the further of the
two (:func:`~eip.processors.watermark.max_of`) or leaves the other's value (opaque cursors:
at worst the next run fetches again).
"""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec

from eip import headers as H
from eip.clock import Clock
from eip.errors import PageFetchError, redact_uri
from eip.message import Exchange
from eip.processors.base import STOP, Step
from eip.processors.error_handler import failure_handled
from eip.processors.page_fetch import Pacing, PageFetcher
from eip.processors.pagination import FetchedPage, Pagination
from eip.processors.split import Splitter
from eip.processors.watermark import Tracker, Watermark
from eip.stores.base import ConcurrentUpdateError, StoreError
from eip.stores.watermark import Checkpoint, encode_value

__all__ = ["POLL_PAGE", "POLL_REPORT", "POLL_WATERMARK", "PagedPoll", "PollReport"]

log = logging.getLogger("eip.poll")

#: Part property: the number (1-based) of the page the record came from.
POLL_PAGE = "eip.poll.page"
#: Property: the watermark value the run queried with.
POLL_WATERMARK = "eip.poll.watermark"
#: Property: the run's :class:`PollReport` (set on failed runs too).
POLL_REPORT = "eip.poll.report"

Stop = Literal["end", "max_pages", "max_duration", "error"]
_CAS_ATTEMPTS = 5


class PollReport(msgspec.Struct, kw_only=True):
    """What one run did. ``fetched`` records came in ``pages`` pages; of those, ``completed``
    went through, ``duplicates`` were skipped by an idempotent consumer, ``dead_lettered``
    were taken by the dead letter channel (or a handled clause) and ``failed`` failed
    unhandled (records not run after a ``stop_on_exception`` stop are in none of them).
    ``stopped_by`` says why fetching ended. ``watermark_after`` is the watermark after the run
    (``advanced`` when this run moved it); ``error`` the first line of a failure."""

    route_id: str
    url: str
    started: str
    duration: float
    pages: int = 0
    fetched: int = 0
    completed: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    failed: int = 0
    stopped_by: Stop = "end"
    watermark_before: Any = None
    watermark_after: Any = None
    advanced: bool = False
    error: str | None = None


class _Run:
    """The bookkeeping of one run."""

    __slots__ = (
        "completed",
        "dead_lettered",
        "duplicates",
        "failed",
        "fetched",
        "origin",
        "pacing",
        "page_error",
        "pages",
        "started",
        "stopped_by",
        "urls",
    )

    def __init__(self, started: float, deadline: float | None) -> None:
        self.started = started
        self.pacing = Pacing(deadline)
        self.pages = 0
        self.fetched = 0
        self.completed = 0
        self.duplicates = 0
        self.dead_lettered = 0
        self.failed = 0
        self.stopped_by: Stop = "end"
        self.page_error: PageFetchError | None = None
        self.urls: set[str] = set()
        self.origin: tuple[str, str | None, int | None] | None = None


class PagedPoll:
    """The compiled ``poll_pages`` step."""

    def __init__(
        self,
        *,
        route_id: str,
        url: str,
        shown: str,
        fetcher: PageFetcher,
        pagination: Pagination,
        watermark: Watermark | None,
        parts: Step,
        clock: Clock,
        max_pages: int,
        max_duration: float | None,
        parallel: bool = False,
        max_parallel: int = 10,
        stop_on_exception: bool = False,
    ) -> None:
        self.route_id = route_id
        self.url = url
        self.shown = shown
        self.fetcher = fetcher
        self.pagination = pagination
        self.watermark = watermark
        self.parts = parts
        self.clock = clock
        self.max_pages = max_pages
        self.max_duration = max_duration
        self.parallel = parallel
        self.max_parallel = max_parallel
        self.stop_on_exception = stop_on_exception

    async def __call__(self, exchange: Exchange) -> None:
        started = self.clock.time()
        deadline = None if self.max_duration is None else started + self.max_duration
        run = _Run(started, deadline)
        mark = self.watermark
        try:
            checkpoint = await mark.store.get(mark.name) if mark is not None else None
        except Exception as exc:  # no watermark, no run: reported like any failed run
            self._fail_early(exchange, run, exc)
            raise
        before = checkpoint.value if checkpoint is not None else getattr(mark, "initial", None)
        exchange.properties[POLL_WATERMARK] = before
        tracker = mark.advance.tracker() if mark is not None else None
        source = self._records(
            self.pagination.first(fill(self.url, before)), run, exchange, tracker
        )
        splitter = Splitter(
            lambda _: source,
            self._counted(run),
            parallel=self.parallel,
            max_parallel=self.max_parallel,
            stop_on_exception=self.stop_on_exception,
        )
        failure: Exception | None = None
        try:
            await splitter(exchange)
        except Exception as exc:
            failure = exc
        if failure is None and run.page_error is not None:
            failure = run.page_error
        after, advanced = before, False
        may_advance = run.stopped_by == "end" or (mark is not None and mark.advance_on_bound)
        if failure is None and tracker is not None and mark is not None and may_advance:
            try:
                after, advanced = await self._advance(mark, checkpoint, before, tracker)
            except Exception as exc:
                failure = exc
        report = self._report(run, before, after, advanced, failure or run.page_error)
        exchange.properties[POLL_REPORT] = report
        self._log(report, failure is not None)
        if failure is not None:
            raise failure
        exchange.body = report

    def _fail_early(self, exchange: Exchange, run: _Run, error: Exception) -> None:
        initial = getattr(self.watermark, "initial", None)
        report = self._report(run, initial, initial, False, error)
        exchange.properties[POLL_REPORT] = report
        self._log(report, True)

    async def _records(
        self, url: str | None, run: _Run, trigger: Exchange, tracker: Tracker | None
    ) -> AsyncIterator[tuple[Any, int]]:
        """The run's records, page by page, each with its page number."""
        while url is not None:
            if run.pages >= self.max_pages:
                run.stopped_by = "max_pages"
                return
            deadline = run.pacing.deadline
            if run.pages and deadline is not None and self.clock.time() >= deadline:
                run.stopped_by = "max_duration"
                return
            number = run.pages + 1
            try:
                self._check(url, number, run)
                data, headers, records = await self.fetcher.fetch(url, number, run.pacing, trigger)
                page = FetchedPage(number, url, data, headers, records, run.fetched)
                following = self.pagination.next(page)
            except PageFetchError as exc:
                run.page_error, run.stopped_by = exc, "error"
                return
            except Exception as exc:  # a pagination that could not read the page
                error = PageFetchError(number, url, f"{type(exc).__name__}: {exc}")
                error.__cause__ = exc
                run.page_error, run.stopped_by = error, "error"
                return
            run.pages = number
            run.fetched += len(records)
            if tracker is not None:
                tracker.page(data)
            for record in records:
                if tracker is not None:
                    tracker.record(record)
                yield record, number
            url = following
        run.stopped_by = "end"

    def _check(self, url: str, number: int, run: _Run) -> None:
        """Every page on the first page's origin (credentials go nowhere else), none twice."""
        parts = urllib.parse.urlsplit(url)
        origin = (parts.scheme, parts.hostname, parts.port)
        if run.origin is None:
            run.origin = origin
        elif origin != run.origin:
            raise PageFetchError(
                number, url, "the next page is on another host than the first; not followed"
            )
        if url in run.urls:
            raise PageFetchError(
                number, url, "the pagination leads back to a page fetched before (a loop)"
            )
        run.urls.add(url)

    def _counted(self, run: _Run) -> Step:
        parts = self.parts

        async def part(exchange: Exchange) -> None:
            exchange.body, exchange.properties[POLL_PAGE] = exchange.body
            try:
                result = parts(exchange)
                if result is not None and result is not STOP:
                    await result
            except Exception:
                run.failed += 1
                raise
            if failure_handled(exchange):
                run.dead_lettered += 1
            elif exchange.properties.get(H.DUPLICATE):
                run.duplicates += 1
            else:
                run.completed += 1

        return part

    async def _advance(
        self, mark: Watermark, checkpoint: Checkpoint | None, before: Any, tracker: Tracker
    ) -> tuple[Any, bool]:
        value = tracker.result(before)
        if value is None:
            return before, False
        version = checkpoint.version if checkpoint is not None else 0
        for _ in range(_CAS_ATTEMPTS):
            try:
                stored = await mark.store.advance(mark.name, value, version)
            except ConcurrentUpdateError:
                current = await mark.store.get(mark.name)
                theirs = current.value if current is not None else None
                merged = mark.advance.merge(theirs, value)
                if merged is None:
                    log.warning(
                        "poll %s: watermark %r was moved to %r by another run meanwhile; "
                        "keeping that (this run reached %r)",
                        self.route_id,
                        mark.name,
                        theirs,
                        value,
                    )
                    return theirs, False
                value, version = merged, current.version if current is not None else 0
                continue
            return stored.value, True
        raise StoreError(f"watermark {mark.name!r} kept changing under this run; not advanced")

    def _report(
        self, run: _Run, before: Any, after: Any, advanced: bool, failure: Exception | None
    ) -> PollReport:
        return PollReport(
            route_id=self.route_id,
            url=self.shown,
            started=datetime.fromtimestamp(run.started, UTC).isoformat(),
            duration=round(self.clock.time() - run.started, 3),
            pages=run.pages,
            fetched=run.fetched,
            completed=run.completed,
            duplicates=run.duplicates,
            dead_lettered=run.dead_lettered,
            failed=run.failed,
            stopped_by="error" if failure is not None else run.stopped_by,
            watermark_before=before,
            watermark_after=after,
            advanced=advanced,
            error=None if failure is None else redact_uri(_first_line(failure)),
        )

    def _log(self, report: PollReport, failed: bool) -> None:
        level = logging.WARNING if failed or report.stopped_by != "end" else logging.INFO
        log.log(
            level,
            "poll %s: %d page(s), %d record(s): %d completed, %d duplicate(s), %d "
            "dead-lettered, %d failed, in %.1fs; stopped by %s; watermark %r -> %r%s",
            report.route_id,
            report.pages,
            report.fetched,
            report.completed,
            report.duplicates,
            report.dead_lettered,
            report.failed,
            report.duration,
            report.stopped_by,
            report.watermark_before,
            report.watermark_after,
            f"; {report.error}" if report.error else "",
        )


def fill(template: str, value: Any) -> str:
    """The URL with ``{watermark}`` replaced by ``value``, URL-encoded."""
    if "{watermark}" not in template:
        return template
    text = "" if value is None else value if isinstance(value, str) else encode_value(value)
    return template.replace("{watermark}", urllib.parse.quote(text, safe=""))


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    line = text.splitlines()[0] if text else ""
    return f"{type(error).__name__}: {line}" if line else type(error).__name__
