"""CRM -> OA nightly sync: every night at 03:00 (Asia/Shanghai), the CRM customers changed since
the last run, mapped to the OA system's fields and upserted there, with a run report.

The route ``crm-oa-nightly-sync`` fires on ``cron 0 3 * * *`` in Asia/Shanghai (the ``cron:``
component keeps 03:00 local) and starts one run, ``crm-oa-sync-run``:

1. ``poll_pages`` reads the watermark ``crm-oa-customers`` (``<data>/state/watermarks.db``)
   and fetches ``GET {{crm.url}}/api/customers?updated_since=<watermark>&limit=50`` page by
   page (a keyset cursor: ``next_cursor`` in the body, sent back as ``?cursor=``), with the
   bearer token ``$CRM_API_TOKEN``, at most 5 requests a second, 500 pages and 30 minutes a
   run; a 429 or 5xx is retried (``Retry-After`` honoured);
2. each customer, in order: skipped when this version of it (``<id>@<updated_at>``) was
   upserted before (``<data>/state/crm-oa-sync.db``, kept 90 days), else mapped to an
   :class:`OaCustomer` (:data:`to_oa`) and upserted with ``PUT {{oa.url}}/api/customers/
   <customer_code>`` (bearer ``$OA_API_TOKEN``), retried twice with backoff;
3. a customer that cannot be mapped, or that the OA still refuses, is dead-lettered to
   ``<data>/dead-letter/crm-oa-sync/<customer_code>.json`` (the envelope of
   ``routes/_support.py``, with the CRM record as fetched) and counts as delivered;
4. once every customer of the run is upserted, skipped or dead-lettered, the watermark moves
   to the newest ``updated_at`` of the run (compared as instants: ``...Z`` and ``...+08:00``
   mix safely);
5. the run report (:class:`SyncReport`: fetched, upserted, unchanged, failed, duration,
   the watermark before and after) is logged and written to
   ``<data>/reports/crm-oa-nightly-sync/<start, UTC>.json``. A run that fails (a page the
   CRM does not give) writes its report too, with ``status: failed``, and leaves the
   watermark where it was: the next run fetches the same changes again.

Decisions:

- **The schedule triggers, a direct route runs.** ``crm-oa-nightly-sync`` only fires
  ``direct:crm-oa-sync-run``; the control API's trigger on it (``eip route trigger
  crm-oa-nightly-sync``) runs the sync now, and the demo calls the run route once at start.
- **Exactly-once in effect, from at-least-once.** The watermark moves only after a whole run,
  so a crash re-fetches; ``updated_since`` is inclusive, so the newest customer of a run
  comes again in the next. The idempotent consumer keyed by id *and* ``updated_at`` turns
  both into ``unchanged``, while a customer changed again is a new key and goes through. The
  OA upsert is a PUT by key, so the one remaining window (a crash between the PUT and the
  key's confirmation) repeats an upsert, never doubles a customer.
- **A bad customer does not stop the sync.** It is dead-lettered (so it is in the report's
  ``failed`` and on disk to re-send), and the watermark moves past it; holding the watermark
  for it would re-fetch the whole night's changes every night until someone fixed it.

Demo (``EIP_DEMO`` not ``0``): eip serves a CRM (``/demo/crm/api/customers``: the 12 customers
of ``routes/samples/crm_changes/customers.json``, 5 a page) and an OA
(``/demo/oa/api/customers/{customer_code}``: writes ``<data>/demo/oa-api/<code>.json``) on
the HTTP port, at ``{{demo.crm.url}}`` and ``{{demo.oa.url}}`` (eip.toml), and a one-shot
timer runs the sync once at start. Customer 2006 has no e-mail (it is dead-lettered without a
retry); the OA answers 503 for ``CRM-002007`` (it is retried, then dead-lettered); the other
ten are upserted. ``$CRM_API_TOKEN`` / ``$OA_API_TOKEN`` default to demo values. Without the
demo, ``{{crm.url}}``, ``{{oa.url}}`` and both variables must be set, or the routes fail at
start (and ``eip check``) naming what is missing.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
from pathlib import Path
from typing import Any, Literal

import msgspec

from eip import (
    Exchange,
    PageFetchError,
    PartFailedError,
    PollReport,
    RedeliveryPolicy,
    RouteBuilder,
    body,
    body_cursor,
    cron,
    dead_letter_channel,
    exchange_property,
    max_of,
    otherwise,
    pipeline,
    watermark,
    when,
)
from eip import headers as H
from eip.components.http import http_client, http_server
from eip.dataformats import json
from eip.mapping import FieldMapper, chain, field, lower, strip, upper
from eip.processors.paging import POLL_REPORT
from eip.stores import SqliteIdempotentRepository, SqliteWatermarkStore, StoreError
from routes._support import (
    SAMPLES,
    data_dir,
    dead_letter,
    dead_letters,
    demo_enabled,
    demo_output,
    safe_file_name,
    setting,
    state,
)

__all__ = [
    "SCHEDULE",
    "TIMEZONE",
    "CrmOaNightlySync",
    "DemoCrmOaSystems",
    "OaCustomer",
    "SyncReport",
    "crm_page",
    "demo_crm_page",
    "reports_dir",
    "to_oa",
]

SCHEDULE = "0 3 * * *"
TIMEZONE = "Asia/Shanghai"
WATERMARK = "crm-oa-customers"
PAGE_SIZE = 50
RUN = "direct:crm-oa-sync-run"
SAMPLE_FILE = SAMPLES / "crm_changes" / "customers.json"
#: Property: the CRM record as fetched (the dead letter keeps it, not the OA record).
CRM_RECORD = "crm.record"
#: OA customers the demo OA answers 503 for ("locked by an approval workflow").
DEMO_LOCKED = frozenset({"CRM-002007"})
DEMO_PAGE_SIZE = 5


class OaCustomer(msgspec.Struct, frozen=True):
    """The OA system's customer record (PUT /api/customers/{customer_code})."""

    customer_code: str
    customer_name: str
    contact_email: str
    contact_phone: str
    owner_account: str
    region_code: str
    city: str
    crm_updated_at: str


class SyncReport(msgspec.Struct, frozen=True, kw_only=True):
    """One run, as written to the reports folder."""

    status: Literal["ok", "failed"]
    started: str
    duration_seconds: float
    pages: int
    fetched: int
    upserted: int
    unchanged: int
    failed: int
    watermark_before: Any
    watermark_after: Any
    error: str | None = None


def customer_code(crm_id: Any) -> str:
    """The OA's key for a CRM customer: ``CRM-002001``."""
    return f"CRM-{int(crm_id):06d}"


to_oa = FieldMapper(
    field("customer_code", source="id", convert=customer_code, required=True),
    field("customer_name", source="name", convert=strip, required=True),
    field("contact_email", source="email", convert=chain(strip, lower), required=True),
    field("contact_phone", source="phone", convert=strip, default=""),
    field("owner_account", source="owner", required=True),
    field("region_code", source="region", convert=upper, required=True),
    field("city", convert=strip, default=""),
    field("crm_updated_at", source="updated_at", required=True),
    unknown="ignore",
    target=OaCustomer,
)


def reports_dir(data: Path | None = None) -> Path:
    """``<data>/reports/crm-oa-nightly-sync``: one JSON report per run."""
    return (data if data is not None else data_dir()) / "reports" / "crm-oa-nightly-sync"


def record_version(exchange: Exchange) -> str:
    """The idempotent key: the customer *and* its version."""
    record = exchange.body
    return f"{record['id']}@{record['updated_at']}"


def sync_report(exchange: Exchange) -> SyncReport:
    """The run's PollReport in the OA sync's words (on a failed run too)."""
    run: PollReport = exchange.properties[POLL_REPORT]
    return SyncReport(
        status="failed" if run.error else "ok",
        started=run.started,
        duration_seconds=run.duration,
        pages=run.pages,
        fetched=run.fetched,
        upserted=run.completed,
        unchanged=run.duplicates,
        failed=run.dead_lettered + run.failed,
        watermark_before=run.watermark_before,
        watermark_after=run.watermark_after,
        error=run.error,
    )


def report_file_name(exchange: Exchange) -> str:
    report: SyncReport = exchange.body
    started = dt.datetime.fromisoformat(report.started)
    return started.strftime("%Y%m%dT%H%M%S.%fZ") + ".json"


def report_line(exchange: Exchange) -> str:
    r: SyncReport = exchange.body
    return (
        f"CRM -> OA sync {r.status}: {r.fetched} fetched, {r.upserted} upserted, "
        f"{r.unchanged} unchanged, {r.failed} failed in {r.duration_seconds:.1f}s "
        f"(watermark {r.watermark_before} -> {r.watermark_after})"
    )


def dead_letter_name(exchange: Exchange) -> str:
    """``<customer_code>.json``; a CRM id that is not a number names the file by a hash."""
    record = exchange.properties.get(CRM_RECORD) or {}
    try:
        code = customer_code(record.get("id"))
    except (TypeError, ValueError):
        code = f"CRM-{record.get('id')}"
    return safe_file_name(code, prefix="customer")


def _demo_credentials() -> None:
    """The demo's stand-in tokens (secrets stay in the environment, never in eip.toml)."""
    if demo_enabled():
        os.environ.setdefault("CRM_API_TOKEN", "demo-crm-api-token")
        os.environ.setdefault("OA_API_TOKEN", "demo-oa-api-token")


class CrmOaNightlySync(RouteBuilder):
    def __init__(self, data: Path | None = None, *, page_size: int = PAGE_SIZE) -> None:
        super().__init__()
        self.data = data if data is not None else data_dir()
        self.page_size = page_size

    def configure(self) -> None:
        _demo_credentials()
        reports = f"file:{reports_dir(self.data)}"
        self.error_handler(
            dead_letter_channel(
                "direct:crm-oa-sync-dead",
                redelivery=RedeliveryPolicy(max_redeliveries=2, delay=0.2, backoff_multiplier=2),
            )
        )
        # A run that failed (a page the CRM would not give, the watermark store down): its
        # report is written too, and the failure goes on (the watermark stays, the scheduler
        # logs it). A customer's own failure goes to the dead letter channel instead.
        (
            self.on_exception(PageFetchError, PartFailedError, StoreError)
            .redelivery(RedeliveryPolicy(max_redeliveries=0))
            .transform(sync_report)
            .set_header(H.FILE_NAME, report_file_name)
            .marshal(json())
            .to(reports)
        )
        crm = http_client(
            f"{setting('crm.url')}/api/customers"
            f"?updated_since={{watermark}}&limit={self.page_size}",
            auth="bearer",
            secret_env="CRM_API_TOKEN",
            timeout=10.0,
        )
        oa = http_client(
            f"{setting('oa.url')}/api/customers",
            method="PUT",
            auth="bearer",
            secret_env="OA_API_TOKEN",
            timeout=10.0,
        )
        seen = SqliteIdempotentRepository(state("crm-oa-sync.db", self.data), ttl=90 * 86400)
        mark = watermark(
            WATERMARK,
            max_of("updated_at"),
            store=SqliteWatermarkStore(state("watermarks.db", self.data)),
            initial="1970-01-01T00:00:00Z",
        )
        each_customer = (
            pipeline()
            .set_property(CRM_RECORD, body())
            .idempotent_consumer(record_version, seen)
            .map_fields(to_oa)
            .set_header(H.HTTP_REQUEST_PATH, body("customer_code"))
            .to(oa)
        )
        (
            # The store keeps the last fire time: a 03:00 missed while the server was down
            # runs once at start (misfire run_once), and only one instance sharing it fires.
            self.from_(
                cron(
                    "crm-oa-nightly",
                    SCHEDULE,
                    timezone=TIMEZONE,
                    store=f"sqlite:{state('schedules.db', self.data)}",
                )
            )
            .route_id("crm-oa-nightly-sync")
            .description("03:00 Asia/Shanghai: sync the CRM customers changed since the last run")
            .to(RUN)
        )
        (
            self.from_(RUN)
            .route_id("crm-oa-sync-run")
            .description("CRM changes since the watermark -> OA upsert, and a run report")
            .poll_pages(
                crm,
                each_customer,
                records="$.items",
                pagination=body_cursor("$.next_cursor"),
                watermark=mark,
                max_pages=500,
                max_duration=1800,
                rate=5,
            )
            .transform(sync_report)
            .log(report_line)
            .set_header(H.FILE_NAME, report_file_name)
            .marshal(json())
            .to(reports)
        )
        (
            self.from_("direct:crm-oa-sync-dead")
            .route_id("crm-oa-sync-dead")
            .set_body(exchange_property(CRM_RECORD))
            .transform(dead_letter)
            .set_header(H.FILE_NAME, dead_letter_name)
            .to(f"file:{dead_letters('crm-oa-sync', self.data)}")
            .log("CRM customer dead-lettered: {headers[eip.exception.message]}", level=30)
        )


# -- the demo's CRM and OA ------------------------------------------------------------------
def _instant(text: str) -> dt.datetime:
    parsed = dt.datetime.fromisoformat(text)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)


def _key(record: dict[str, Any]) -> tuple[dt.datetime, int]:
    return _instant(record["updated_at"]), int(record["id"])


def crm_page(rows: list[dict[str, Any]], query: dict[str, Any]) -> dict[str, Any]:
    """A page of a CRM that pages as the demo's does: the customers updated at or after
    ``updated_since``, oldest first, ``limit`` (at most 5) a page, with a keyset
    ``next_cursor`` (the last customer's ``updated_at|id``), so none is skipped when
    customers change between pages."""
    rows = sorted(rows, key=_key)
    since = query.get("updated_since")
    if since:
        rows = [r for r in rows if _instant(r["updated_at"]) >= _instant(str(since))]
    cursor = query.get("cursor")
    if cursor:
        stamp, _, ident = base64.urlsafe_b64decode(str(cursor)).decode().rpartition("|")
        after = (_instant(stamp), int(ident))
        rows = [r for r in rows if _key(r) > after]
    limit = min(int(query.get("limit") or DEMO_PAGE_SIZE), DEMO_PAGE_SIZE)
    items = rows[:limit]
    following = None
    if len(rows) > limit:
        last = items[-1]
        key = f"{last['updated_at']}|{last['id']}".encode()
        following = base64.urlsafe_b64encode(key).decode()
    return {"items": items, "next_cursor": following}


def demo_crm_page(exchange: Exchange) -> dict[str, Any]:
    """The demo CRM's answer to ``GET /api/customers`` (query parameters arrive as
    headers), from the sample customers."""
    return crm_page(msgspec.json.decode(SAMPLE_FILE.read_bytes()), exchange.headers)


class DemoCrmOaSystems(RouteBuilder):
    """The demo's CRM and OA REST APIs, served by eip itself, and a run at start
    (``EIP_DEMO=0`` leaves them out)."""

    abstract = not demo_enabled()

    def __init__(self, data: Path | None = None) -> None:
        super().__init__()
        self.data = data

    def configure(self) -> None:
        _demo_credentials()
        (
            self.from_(
                http_server(
                    "/demo/crm/api/customers",
                    methods=["GET"],
                    auth="bearer",
                    credentials_env="CRM_API_TOKEN",
                    openapi=False,
                )
            )
            .route_id("demo-crm-customers")
            .transform(demo_crm_page)
        )
        (
            self.from_(
                http_server(
                    "/demo/oa/api/customers/{customer_code}",
                    methods=["PUT"],
                    body=OaCustomer,
                    auth="bearer",
                    credentials_env="OA_API_TOKEN",
                    openapi=False,
                )
            )
            .route_id("demo-oa-customers")
            .choice(
                when(lambda ex: ex.body.customer_code in DEMO_LOCKED)
                .set_header(H.HTTP_STATUS, 503)
                .set_body(lambda ex: {"error": f"{ex.body.customer_code} is locked"})
                .stop(),
                otherwise()
                .set_header(H.FILE_NAME, lambda ex: f"{ex.body.customer_code}.json")
                .marshal(json())
                .to(f"file:{demo_output('oa-api', self.data)}")
                .set_body(lambda ex: {"oa_id": f"OA-{ex.headers['customer_code']}"}),
            )
        )
        (
            self.from_("timer:crm-oa-sync-demo?repeat_count=1&delay=1")
            .route_id("crm-oa-sync-demo")
            .to(RUN)
        )
