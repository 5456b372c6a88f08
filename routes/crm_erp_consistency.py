"""Are the CRM and the ERP consistent? A nightly check of every customer, which repairs the ERP.

``crm-erp-consistency-nightly`` fires at 04:00 (Asia/Shanghai) and runs the check,
``crm-erp-consistency`` (``direct:crm-erp-consistency``, also the control API's trigger):

1. **left, the CRM** (the truth): ``GET {{crm.url}}/api/accounts`` with the bearer token
   ``$CRM_API_TOKEN``, page after page by its ``Link: <...>; rel="next"`` headers; inactive
   accounts are left out, the others mapped to the ERP's shape (:data:`crm_to_erp`: the same
   mapping as the webhook's, ``routes/crm_webhook.py``);
2. **right, the ERP**: ``GET {{erp.url}}/api/customers?page=N&size=500`` (bearer
   ``$ERP_API_TOKEN``), the list under ``customers``, until a short page;
3. both are matched by ``customer_number``. ``source_event`` is the ERP's own bookkeeping and
   not compared; names are compared without case and runs of spaces, e-mails without case,
   every value trimmed (:data:`NORMALISE`), so ``"GRACE  HOPPER"`` is Grace Hopper;
4. the report (counts per verdict, consistency = same / all keys, the differing fields, 10
   samples a verdict) is written to ``<data>/reports/crm-erp-consistency/latest.json`` and
   kept per run as ``<start, UTC, to the microsecond>.json``; ``/metrics`` shows it as
   ``eip_reconcile_*{reconcile="crm-erp-consistency"}``;
5. **repairs**: each customer that differs or is missing in the ERP is sent, as the CRM has
   it, to ``direct:erp-customer-upsert``, which PUTs it to ``{{erp.url}}/api/customers/
   <customer_number>`` (retried twice), as the webhook route does. At most 1,000 a night: a
   check that finds everything different (a mapping broken by a CRM release) must not
   rewrite the whole ERP. A customer only in the ERP is reported, never deleted: that is for
   a person to decide.

A failed repair is counted in the report (``repairs.failed``, with the reason), not raised:
the next night finds the customer again. A CRM or ERP page that fails fails the run, naming
the source and the page.

Demo (``EIP_DEMO`` not ``0``): eip serves the CRM's account list (``/demo/crm/api/
accounts``: ``routes/samples/consistency/crm_customers.json``, 5 a page) and the ERP's
customer list (``/demo/erp/api/customers``: ``erp_customers.json`` with what the demo ERP
received since, ``<data>/demo/erp-api/``); the upserts go to the demo ERP of the webhook
example, which answers 503 for ``C-001013``. The check runs twice at start: the first finds
6 of 13 customers the same, 4 differing, 1 missing in the ERP and 2 only there, and repairs
5 (one fails); the second finds 10 the same.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

import msgspec

from eip import Exchange, RedeliveryPolicy, RouteBuilder, cron, default_error_handler
from eip import headers as H
from eip.components.http import http_client, http_server
from eip.dataformats import json
from eip.mapping import FieldMapper, chain, field, lower, strip, upper
from eip.reconcile import ReconcileReport, casefold, collapse_spaces, http_source, trim
from routes._support import SAMPLES, data_dir, demo_enabled, demo_output, setting
from routes.crm_webhook import ErpCustomer

__all__ = [
    "CHECK",
    "NORMALISE",
    "UPSERT",
    "CrmErpConsistency",
    "CrmErpConsistencyDemo",
    "DemoCrmErpLists",
    "crm_to_erp",
    "demo_erp_customers",
    "reports_dir",
]

SCHEDULE = "0 4 * * *"
TIMEZONE = "Asia/Shanghai"
CHECK = "direct:crm-erp-consistency"
UPSERT = "direct:erp-customer-upsert"
SAMPLE_DIR = SAMPLES / "consistency"
MAX_REPAIRS = 1_000
ERP_PAGE_SIZE = 500
DEMO_PAGE_SIZE = 5

#: A CRM account in the ERP's shape (what the webhook route sends the ERP, too).
crm_to_erp = FieldMapper(
    field("customer_number", source="id", convert=lambda v: f"C-{int(v):06d}"),
    field("name", convert=strip),
    field("email", convert=chain(strip, lower)),
    field("segment"),
    field("postal_code", source="address.zip"),
    field("country_code", source="address.country", convert=upper),
    field("source_event", value="reconcile:crm-erp-consistency"),
    unknown="ignore",
)

#: Spellings that are the same customer: every value trimmed, names without case or runs of
#: spaces, e-mails without case.
NORMALISE: dict[str, Any] = {
    "*": trim,
    "name": [collapse_spaces, casefold],
    "email": casefold,
}


def reports_dir(data: Path | None = None) -> Path:
    """``<data>/reports/crm-erp-consistency``: ``latest.json`` and one report per run."""
    return (data if data is not None else data_dir()) / "reports" / "crm-erp-consistency"


def report_file_name(exchange: Exchange) -> str:
    report: ReconcileReport = exchange.body
    return f"{report.started_at.astimezone(dt.UTC):%Y%m%dT%H%M%S.%fZ}.json"


def report_line(exchange: Exchange) -> str:
    r: ReconcileReport = exchange.body
    c = r.counts
    return (
        f"CRM/ERP consistency {r.consistency:.1%} of {r.keys} customers: {c['differs']} "
        f"differ, {c['only_left']} missing in the ERP, {c['only_right']} only in the ERP; "
        f"repairs sent {r.repairs.sent}, failed {r.repairs.failed}, held back {r.repairs.skipped}"
    )


def _demo_credentials() -> None:
    """The demo's stand-in tokens (the same values the other examples' demos use)."""
    if demo_enabled():
        os.environ.setdefault("CRM_API_TOKEN", "demo-crm-api-token")
        os.environ.setdefault("ERP_API_TOKEN", "demo-erp-token")


class CrmErpConsistency(RouteBuilder):
    def __init__(self, data: Path | None = None) -> None:
        super().__init__()
        self.data = data if data is not None else data_dir()

    def configure(self) -> None:
        _demo_credentials()
        reports = reports_dir(self.data)
        crm = http_client(
            f"{setting('crm.url')}/api/accounts", auth="bearer", secret_env="CRM_API_TOKEN"
        )
        erp = http_client(
            f"{setting('erp.url')}/api/customers", auth="bearer", secret_env="ERP_API_TOKEN"
        )
        (
            self.from_(cron("crm-erp-consistency", SCHEDULE, timezone=TIMEZONE))
            .route_id("crm-erp-consistency-nightly")
            .description("04:00 Asia/Shanghai: check the CRM's customers against the ERP's")
            .to(CHECK)
        )
        (
            self.from_(CHECK)
            .route_id("crm-erp-consistency")
            .description("CRM accounts vs ERP customers by number; repairs to the ERP upsert")
            .reconcile(
                left=http_source(crm, name="crm").filter(lambda r: r["active"]).map(crm_to_erp),
                right=http_source(
                    erp,
                    name="erp",
                    items="customers",
                    page_param="page",
                    size_param="size",
                    page_size=ERP_PAGE_SIZE,
                ),
                key="customer_number",
                ignore=["source_event"],
                normalise=NORMALISE,
                report=reports / "latest.json",
                repair_to=UPSERT,
                max_repairs=MAX_REPAIRS,
            )
            .log(report_line)
            .set_header(H.FILE_NAME, report_file_name)
            .marshal(json())
            .to(f"file:{reports}")
        )
        (
            self.from_(UPSERT)
            .route_id("erp-customer-upsert")
            .description("A customer as the CRM has it -> ERP REST upsert")
            .error_handler(
                default_error_handler(
                    RedeliveryPolicy(max_redeliveries=2, delay=0.2, backoff_multiplier=2)
                )
            )
            .transform(lambda ex: msgspec.convert(ex.body, ErpCustomer))
            .set_header(H.HTTP_REQUEST_PATH, lambda ex: ex.body.customer_number)
            .to(
                http_client(
                    f"{setting('erp.url')}/api/customers",
                    method="PUT",
                    timeout=5.0,
                    auth="bearer",
                    secret_env="ERP_API_TOKEN",
                )
            )
            .log(
                "ERP customer {headers[eip.reconcile.key]} repaired "
                "({headers[eip.reconcile.verdict]})"
            )
        )


# -- the demo's CRM and ERP lists ------------------------------------------------------------
def _sample(name: str) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = msgspec.json.decode((SAMPLE_DIR / name).read_bytes())
    return records


def demo_crm_accounts(exchange: Exchange) -> list[dict[str, Any]]:
    """``GET /demo/crm/api/accounts?page=N&per_page=M``: a page, and a ``Link`` to the next."""
    accounts = _sample("crm_customers.json")
    page = int(exchange.headers.get("page") or 1)
    size = int(exchange.headers.get("per_page") or DEMO_PAGE_SIZE)
    if page * size < len(accounts):
        exchange.headers["link"] = (
            f'</demo/crm/api/accounts?page={page + 1}&per_page={size}>; rel="next"'
        )
    return accounts[(page - 1) * size : page * size]


def demo_erp_customers(data: Path | None = None) -> list[dict[str, Any]]:
    """The demo ERP's customers: the sample, with every upsert it received since on top."""
    customers = {c["customer_number"]: c for c in _sample("erp_customers.json")}
    for path in sorted(demo_output("erp-api", data).glob("*.json")):
        upserted = msgspec.json.decode(path.read_bytes())
        customers[upserted["customer_number"]] = upserted
    return [customers[number] for number in sorted(customers)]


class DemoCrmErpLists(RouteBuilder):
    """The demo's CRM account list and ERP customer list, served by eip itself; the ERP's
    upserts are the webhook example's demo ERP (``EIP_DEMO=0`` leaves them out)."""

    abstract = not demo_enabled()

    def __init__(self, data: Path | None = None) -> None:
        super().__init__()
        self.data = data

    def configure(self) -> None:
        _demo_credentials()
        (
            self.from_(
                http_server(
                    "/demo/crm/api/accounts",
                    methods=["GET"],
                    auth="bearer",
                    credentials_env="CRM_API_TOKEN",
                    openapi=False,
                )
            )
            .route_id("demo-crm-accounts")
            .transform(demo_crm_accounts)
        )
        (
            self.from_(
                http_server(
                    "/demo/erp/api/customers",
                    methods=["GET"],
                    auth="bearer",
                    credentials_env="ERP_API_TOKEN",
                    openapi=False,
                )
            )
            .route_id("demo-erp-customer-list")
            .process(self.erp_page)
        )

    async def erp_page(self, exchange: Exchange) -> None:
        """``GET /demo/erp/api/customers?page=N&size=M``: ``{"customers": [...]}``."""
        import asyncio

        customers = await asyncio.to_thread(demo_erp_customers, self.data)
        page = int(exchange.headers.get("page") or 1)
        size = int(exchange.headers.get("size") or ERP_PAGE_SIZE)
        exchange.body = {"customers": customers[(page - 1) * size : page * size]}


class CrmErpConsistencyDemo(RouteBuilder):
    """Run the check twice at start: the second run shows what the first repaired."""

    abstract = not demo_enabled()

    def configure(self) -> None:
        (
            self.from_("timer:crm-erp-consistency-demo?repeat_count=2&delay=2&period=3")
            .route_id("crm-erp-consistency-demo")
            .to(CHECK)
        )
