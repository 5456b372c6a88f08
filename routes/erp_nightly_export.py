"""ERP nightly export -> batches of CRM account records.

Every night the ERP drops a CSV export of its customer accounts (balance, credit limit, days
overdue, ...) into ``<data>/inbox/erp-account-export/``; it can have hundreds of thousands of
rows. For each export file:

1. the rows are read one at a time (``csv_rows(ErpAccountRow)``: typed and checked, a bad row
   names its line and column);
2. ``groups(500, ...)`` re-batches them into lists of 500 rows;
3. each batch is mapped to :class:`AccountStatus` records and written as
   ``<data>/outbox/crm-account-batches/<export stem>-<batch number>.json`` (1-based, 4 digits,
   from the split index, so the files sort in order);
4. after the last batch, ``<export stem>.manifest.json`` lists the batches and the row count;
5. the export moves to ``.done``; a bad row fails it: it moves to ``.error``, and
   ``<data>/rejected/erp-nightly-export/<export stem>.json`` says why (the dead-letter
   envelope of ``routes/_support.py``: the failure headers, the file's headers, its path).

Decisions:

- **Re-batch with the ``groups`` splitter, not the aggregator.** The batches are consecutive
  runs of one file: ``groups`` cuts them while streaming, with no state to store, and knows
  where the file ends, so the last partial batch (234 of 1,234 rows) goes out at once. The
  aggregator would store every row in a repository, need a completion trigger for the last
  batch, and could cut different batches on a re-run. With ``groups`` a re-run writes the same
  files under the same names (atomically replaced): re-running an export is idempotent.
- **All or nothing per export, announced by a manifest.** A nightly export is a snapshot: a
  bad row fails the export (it goes to ``.error`` with the line in the log) rather than
  publishing a snapshot with holes. The export stays whole in ``.error`` to be fixed and
  moved back, and the rejection names the line and column. Batches written before the bad row
  stay, but the manifest is written only after the last batch, so a consumer of the batches
  loads an export only once its manifest is there (the ``_SUCCESS`` convention). The
  manifest is also the truth about which batches belong to an export, should an earlier run
  have left more.
- **Streaming from the file.** The ``file:`` consumer runs with ``stream=true``: it does not
  read the export, the body is the file's path, and the splitter reads rows from disk. Memory
  stays at two batches (the one being written and the next, which the splitter reads ahead to
  know the last), whatever the size of the export. The file stays in the inbox until the
  exchange completes, so the path is valid throughout.
- Batches are written one after another (no ``parallel``): the order of the files on disk is
  the order of the export, and memory stays bounded.

``<data>`` is ``$EIP_DATA_DIR`` (default ``./data``). With ``EIP_DEMO`` not ``0``, a one-shot
timer route copies ``routes/samples/erp_export/*.csv`` into the inbox at start:
``erp_accounts_20240502.csv`` has 1,234 rows (the first 12 written by hand, the rest
generated), hence batches of 500, 500 and 234; ``erp_accounts_20240503.csv`` has a status the
interface does not know (``dormant``) on line 5 and is rejected.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Literal

import msgspec

from eip import Exchange, MappingError, RouteBuilder, body, exchange_property, header, pipeline
from eip import headers as H
from eip.dataformats import json
from eip.errors import DataFormatError
from eip.mapping import FieldMapper, chain, field, scale, strip, upper
from eip.splitters import csv_rows, groups
from routes._support import (
    SAMPLES,
    copy_samples,
    data_dir,
    dead_letter,
    demo_enabled,
    inbox,
    outbox,
    rejected,
)

__all__ = [
    "BATCH_SIZE",
    "AccountBatch",
    "AccountStatus",
    "ErpAccountRow",
    "ErpExportDemoSeed",
    "ErpNightlyExport",
    "ExportManifest",
    "to_account_status",
]

BATCH_SIZE = 500
SAMPLE_DIR = SAMPLES / "erp_export"
INBOX = "erp-account-export"
# Exchange properties: the export's stem, the rows of a batch, the manifest.
EXPORT = "erp.export"
BATCH_ROWS = "erp.batch_rows"
MANIFEST = "erp.manifest"


class ErpAccountRow(msgspec.Struct, frozen=True):
    """One row of the ERP export (columns in any order; extra columns are ignored)."""

    account_number: str
    customer_id: int
    company_name: str
    country: str
    currency: str
    balance: Decimal
    credit_limit: Decimal
    days_overdue: int
    status: Literal["active", "blocked"]
    last_payment_date: dt.date | None = None


class AccountStatus(msgspec.Struct, frozen=True):
    """The CRM's view of an ERP account (what the sales team sees on the customer)."""

    customer_number: str
    erp_account: str
    name: str
    country_code: str
    currency: str
    balance_cents: int
    credit_limit_cents: int
    days_overdue: int
    blocked: bool
    last_payment: dt.date | None


class AccountBatch(msgspec.Struct, frozen=True):
    """One batch file."""

    export: str
    batch: int
    rows: int
    accounts: list[AccountStatus]


class ExportManifest(msgspec.Struct):
    """Written after the last batch: the export is complete and consists of ``files``."""

    export: str
    batches: int = 0
    rows: int = 0
    files: list[str] = msgspec.field(default_factory=list)


to_account_status = FieldMapper(
    field("customer_number", source="customer_id", convert=lambda v: f"C-{v:06d}"),
    field("erp_account", source="account_number", convert=strip),
    field("name", source="company_name", convert=strip),
    field("country_code", source="country", convert=chain(strip, upper)),
    field("currency", convert=chain(strip, upper)),
    field("balance_cents", source="balance", convert=scale(100, to=int)),
    field("credit_limit_cents", source="credit_limit", convert=scale(100, to=int)),
    field("days_overdue"),
    field("blocked", source="status", convert=lambda status: status == "blocked"),
    field("last_payment", source="last_payment_date"),
    target=AccountStatus,
)


def to_batch(exchange: Exchange) -> AccountBatch:
    rows: list[ErpAccountRow] = exchange.body
    number = exchange.properties[H.SPLIT_INDEX] + 1
    accounts = [to_account_status(row) for row in rows]
    return AccountBatch(exchange.properties[EXPORT], number, len(accounts), accounts)


def batch_file_name(exchange: Exchange) -> str:
    batch: AccountBatch = exchange.body
    return f"{batch.export}-{batch.batch:04d}.json"


def add_to_manifest(so_far: Exchange | None, batch: Exchange) -> Exchange:
    """Split aggregation strategy: count the batches written into an :class:`ExportManifest`."""
    if so_far is None:
        so_far = Exchange(ExportManifest(batch.properties[EXPORT]), {})
    manifest: ExportManifest = so_far.body
    manifest.batches += 1
    manifest.rows += batch.properties[BATCH_ROWS]
    manifest.files.append(batch.headers[H.FILE_NAME])
    return so_far


def manifest_of(exchange: Exchange) -> ExportManifest:
    """The split's result; an export with a header and no rows has no batches."""
    if isinstance(exchange.body, ExportManifest):
        return exchange.body
    return ExportManifest(exchange.properties[EXPORT])


def summary(exchange: Exchange) -> str:
    manifest: ExportManifest = exchange.properties[MANIFEST]
    return f"erp export {manifest.export}: {manifest.rows} row(s) in {manifest.batches} batch(es)"


class ErpNightlyExport(RouteBuilder):
    def __init__(self, data: Path | None = None, batch_size: int = BATCH_SIZE) -> None:
        super().__init__()
        self.data = data if data is not None else data_dir()
        self.batch_size = batch_size

    def configure(self) -> None:
        batches = f"file:{outbox('crm-account-batches', self.data)}"
        # A row that does not read or map rejects the export (not handled: it goes to .error).
        (
            self.on_exception(DataFormatError, MappingError)
            .transform(dead_letter)
            .set_header(H.FILE_NAME, exchange_property(EXPORT).map("{}.json".format))
            .to(f"file:{rejected('erp-nightly-export', self.data)}")
        )
        batches_of_rows = groups(self.batch_size, csv_rows(ErpAccountRow))
        each_batch = (
            pipeline()
            .transform(to_batch)
            .set_property(BATCH_ROWS, body("rows"))
            .set_header(H.FILE_NAME, batch_file_name)
            .marshal(json())
            .to(batches)
        )
        (
            self.from_(f"file:{inbox(INBOX, self.data)}?include=*.csv&poll=1&stream=true")
            .route_id("erp-nightly-export")
            .description(
                f"ERP nightly CSV export -> JSON batches of {self.batch_size} accounts + a manifest"
            )
            .set_property(EXPORT, header(H.FILE_NAME).map(lambda name: Path(name).stem))
            .split(
                batches_of_rows,
                each_batch,
                aggregate=add_to_manifest,
                stop_on_exception=True,
            )
            .transform(manifest_of)
            .set_property(MANIFEST, body())
            .set_header(H.FILE_NAME, body("export").map("{}.manifest.json".format))
            .marshal(json())
            .to(batches)
            .log(summary)
        )


def seed_demo_export(exchange: Exchange) -> None:
    if demo_enabled():
        copy_samples(sorted(SAMPLE_DIR.glob("*.csv")), inbox(INBOX))


class ErpExportDemoSeed(RouteBuilder):
    """Copies the sample exports into the inbox once at start (EIP_DEMO=0 turns it off)."""

    def configure(self) -> None:
        (
            self.from_("timer:erp-export-demo-seed?repeat_count=1")
            .route_id("erp-export-demo-seed")
            .process(seed_demo_export)
        )
