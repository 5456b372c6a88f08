"""CRM customer export -> ERP customer file.

The CRM drops a CSV export of its customers into ``<data>/inbox/crm-customer-export/``. For
each file:

1. the CSV is read (a file that is not valid CSV fails and moves to ``.error``);
2. rows missing a required field, or with values that do not convert, are rejected with
   their line and reason; a customer id seen before in the same file is skipped;
3. the remaining rows are mapped to ERP customer records and written as one JSON file,
   ``<data>/outbox/erp-customers/erp-customers-<export stem>.json`` (atomically, so the ERP
   never reads half a file);
4. rejected rows go to ``<data>/rejected/customer-import/rejected-<export stem>.csv`` with
   their line and reason;
5. the export moves to ``.done`` only after both files are written (at-least-once).

``<data>`` is ``$EIP_DATA_DIR`` (default ``./data``). With ``EIP_DEMO`` not ``0``, a one-shot
timer route copies ``routes/samples/crm_customers.csv`` into the inbox at start; three of its
rows are rejected (a missing e-mail, a revenue and a date that do not convert).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from eip import Exchange, RouteBuilder, body, exchange_property, header
from eip import headers as H
from eip.dataformats import csv, json
from eip.errors import MappingError
from eip.mapping import FieldMapper, chain, drop, field, lower, scale, strip, to_date, upper
from routes._support import SAMPLES, copy_samples, data_dir, demo_enabled, inbox, outbox, rejected
from routes.crm_models import ErpCustomer, ImportBatch, RejectedRow

REQUIRED = ("customer_id", "email", "last_name", "segment")
SAMPLE = SAMPLES / "crm_customers.csv"
INBOX = "crm-customer-export"

to_erp_customer = FieldMapper(
    field("customer_number", source="customer_id", convert=lambda v: f"C-{int(v):06d}"),
    field("contact.first_name", source="first_name", convert=strip, default=""),
    field("contact.last_name", source="last_name", convert=strip),
    field("contact.email", source="email", convert=chain(strip, lower)),
    field("country_code", source="country", convert=chain(strip, upper), default="DE"),
    field("annual_revenue_cents", source="revenue_eur", convert=scale(100, to=int), default=0),
    field("tier", source="segment", convert=chain(strip, lower)),
    field("customer_since", source="created", convert=to_date()),
    field("source_system", value="crm"),
    drop("internal_notes"),
    target=ErpCustomer,
)


def clean(exchange: Exchange) -> ImportBatch:
    """Validate, de-duplicate and map the rows of one export file."""
    batch = ImportBatch(accepted=[], rejected=[])
    seen: set[str] = set()
    for line, row in enumerate(exchange.body, start=2):  # line 1 is the header
        row = {key: (value or "").strip() or None for key, value in row.items()}
        customer_id = row.get("customer_id") or ""
        missing = [name for name in REQUIRED if not row.get(name)]
        if missing:
            reason = f"missing required field(s): {', '.join(missing)}"
            batch.rejected.append(RejectedRow(line, customer_id, reason))
            continue
        if customer_id in seen:
            batch.duplicates += 1
            continue
        try:
            batch.accepted.append(to_erp_customer(row))
        except MappingError as exc:
            batch.rejected.append(RejectedRow(line, customer_id, str(exc)))
            continue
        seen.add(customer_id)
    return batch


def output_name(prefix: str, suffix: str) -> Any:
    """Name an output after the export file. Read from a property, not the file-name header:
    the sub-routes share the exchange (direct:), and each one sets that header."""

    def name(exchange: Exchange) -> str:
        source = Path(exchange.properties.get("source_file") or exchange.id)
        return f"{prefix}{source.stem}.{suffix}"

    return name


def seed_demo_file(exchange: Exchange) -> None:
    if demo_enabled():
        copy_samples([SAMPLE], inbox(INBOX))


class CrmCustomerImport(RouteBuilder):
    def __init__(self, data: Path | None = None) -> None:
        super().__init__()
        self.data = data if data is not None else data_dir()

    def configure(self) -> None:
        (
            self.from_(f"file:{inbox(INBOX, self.data)}?include=*.csv&poll=1")
            .route_id("crm-customer-import")
            .description("CRM customer CSV export -> ERP customer JSON, rejected rows to a CSV")
            .set_property("source_file", header(H.FILE_NAME))
            .unmarshal(csv())
            .transform(clean)
            .set_property("batch", body())
            .to("direct:erp-customer-file", "direct:crm-rejected-rows")
            .log(
                lambda ex: (
                    f"imported {ex.properties['source_file']}: "
                    f"{len(ex.properties['batch'].accepted)} accepted, "
                    f"{len(ex.properties['batch'].rejected)} rejected, "
                    f"{ex.properties['batch'].duplicates} duplicate(s) skipped"
                )
            )
        )
        (
            self.from_("direct:erp-customer-file")
            .route_id("erp-customer-file")
            .transform(exchange_property("batch").map(lambda batch: batch.accepted))
            .filter(body().map(bool))
            .marshal(json())
            .set_header(H.FILE_NAME, output_name("erp-customers-", "json"))
            .to(f"file:{outbox('erp-customers', self.data)}")
        )
        (
            self.from_("direct:crm-rejected-rows")
            .route_id("crm-rejected-rows")
            .transform(exchange_property("batch").map(lambda batch: batch.rejected))
            .filter(body().map(bool))
            .marshal(csv(RejectedRow))
            .set_header(H.FILE_NAME, output_name("rejected-", "csv"))
            .to(f"file:{rejected('customer-import', self.data)}")
        )


class DemoSeed(RouteBuilder):
    """Copies the sample export into the inbox once at start (set EIP_DEMO=0 to turn off)."""

    def configure(self) -> None:
        (
            self.from_("timer:crm-demo-seed?repeat_count=1")
            .route_id("crm-demo-seed")
            .process(seed_demo_file)
        )
