"""CRM sales reps -> HR employee records, with region and department codes from code lists.

The CRM calls its regions and teams by name (``"East"``, ``"key accounts"``); the HR system
wants its own codes (``CN-E``, ``D-410``) and the region's cost center. Two CSV reference
tables translate them: ``<data>/reference/hr-codes/regions.csv`` (``crm_region``,
``hr_region_code``, ``cost_center``) and ``departments.csv`` (``crm_team``,
``hr_department_code``). They are :class:`~eip.mapping.CsvTable` code lists, looked up in
the field mapping with :func:`~eip.mapping.lookup`, matched without case or extra spaces,
and **reloaded when the file changes**: HR renames a code, someone saves the CSV, and the
next record maps with the new code, no restart. A version that cannot be used (a column
gone, a name twice) is refused with a warning and the last good one is kept. Replace the
files atomically (write a temporary file, rename it over the table).

``crm-hr-mapping-nightly`` fires at 02:30 (Asia/Shanghai) and runs ``direct:crm-hr-sync``:

1. ``GET {{crm.url}}/api/sales-reps`` (bearer ``$CRM_API_TOKEN``): a JSON array of
   :class:`SalesRep`;
2. each rep, one exchange at a time (``direct:crm-hr-employee``), mapped to an
   :class:`HrEmployee` (:func:`employee_mapper`) and upserted with ``PUT {{hr.url}}/api/
   employees/<employee_number>`` (bearer ``$HR_API_TOKEN``), retried twice;
3. a rep whose region or team is in no code list is **rejected**, not sent: its record goes
   to ``<data>/rejected/hr-mapping/sales-rep-<id>.json`` (the envelope of
   ``routes/_support.py``; the reason names the field, the value and the table), and is sent
   on the next run once the code list has it. A rep HR still refuses after the retries is
   dead-lettered to ``<data>/dead-letter/hr-mapping/``;
4. the run's outcome (fetched, upserted, rejected, dead-lettered) is logged.

Without the demo, the reference tables must exist when the routes load, or loading fails
naming the file. Demo (``EIP_DEMO`` not ``0``): the tables are seeded from
``routes/samples/hr_codes/`` when absent, eip serves the CRM's reps (``/demo/crm/api/
sales-reps``: ``sales_reps.json``) and an HR API (``/demo/hr/api/employees/{number}``: writes
``<data>/demo/hr-api/<number>.json``), and the sync runs once at start: seven reps are
upserted, ``Zhou Lin`` (region ``Hainan``) is rejected until ``regions.csv`` has a Hainan row.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from collections import Counter
from pathlib import Path
from typing import Literal

import msgspec

from eip import (
    Exchange,
    MappingError,
    RedeliveryPolicy,
    RouteBuilder,
    body,
    collect_bodies,
    cron,
    dead_letter_channel,
    exchange_property,
)
from eip import headers as H
from eip.components.http import http_client, http_server
from eip.dataformats import json
from eip.mapping import CsvTable, FieldMapper, chain, field, lookup, lower, strip, to_date
from routes._support import (
    SAMPLES,
    data_dir,
    dead_letter,
    dead_letters,
    demo_enabled,
    demo_output,
    rejected,
    setting,
)

__all__ = [
    "SYNC",
    "CrmHrMapping",
    "DemoCrmHrSystems",
    "HrEmployee",
    "SalesRep",
    "employee_mapper",
    "reference_dir",
]

SCHEDULE = "30 2 * * *"
TIMEZONE = "Asia/Shanghai"
SYNC = "direct:crm-hr-sync"
EMPLOYEE = "direct:crm-hr-employee"
SAMPLE_DIR = SAMPLES / "hr_codes"
TABLES = ("regions.csv", "departments.csv")
#: How often a lookup looks at the tables' files (seconds).
TABLE_CHECK_EVERY = 1.0
#: Property: the rep as the CRM sent it (a rejection keeps it, not the half-mapped record).
REP = "crm.sales_rep"


class SalesRep(msgspec.Struct, frozen=True):
    """A sales rep as the CRM lists it."""

    id: int
    first_name: str
    last_name: str
    email: str
    region: str
    team: str
    active: bool
    hired_on: str


class HrEmployee(msgspec.Struct, frozen=True):
    """The employee record the HR system takes (PUT /api/employees/{employee_number})."""

    employee_number: str
    given_name: str
    family_name: str
    work_email: str
    region_code: str
    cost_center: str
    department_code: str
    start_date: dt.date
    status: Literal["active", "inactive"]
    source_system: str


def reference_dir(data: Path | None = None) -> Path:
    """``<data>/reference/hr-codes``: the code lists (``regions.csv``, ``departments.csv``)."""
    return (data if data is not None else data_dir()) / "reference" / "hr-codes"


def _name(value: str) -> str:
    """Names match without case or extra spaces: ``"  key  Accounts"`` is Key Accounts."""
    return " ".join(value.split()).casefold()


def code_lists(folder: Path, check_every: float = TABLE_CHECK_EVERY) -> tuple[CsvTable, CsvTable]:
    """The region and department tables in ``folder``."""
    regions = CsvTable(
        folder / "regions.csv",
        key="crm_region",
        columns=("hr_region_code", "cost_center"),
        normalise=_name,
        check_every=check_every,
    )
    departments = CsvTable(
        folder / "departments.csv",
        key="crm_team",
        columns=("hr_department_code",),
        normalise=_name,
        check_every=check_every,
    )
    return regions, departments


def employee_mapper(regions: CsvTable, departments: CsvTable) -> FieldMapper[HrEmployee]:
    """A CRM sales rep as an HR employee: names trimmed, the e-mail lower-cased, the region
    and the team translated through the code lists."""
    return FieldMapper(
        field("employee_number", source="id", convert=lambda v: f"SR-{int(v):06d}"),
        field("given_name", source="first_name", convert=strip),
        field("family_name", source="last_name", convert=strip),
        field("work_email", source="email", convert=chain(strip, lower)),
        field("region_code", source="region", convert=lookup(regions, "hr_region_code")),
        field("cost_center", source="region", convert=lookup(regions, "cost_center")),
        field("department_code", source="team", convert=lookup(departments, "hr_department_code")),
        field("start_date", source="hired_on", convert=to_date()),
        field("status", source="active", convert=lambda a: "active" if a else "inactive"),
        field("source_system", value="crm"),
        unknown="ignore",
        target=HrEmployee,
    )


def rep_file_name(exchange: Exchange) -> str:
    return f"sales-rep-{exchange.properties[REP].id}.json"


def run_summary(exchange: Exchange) -> dict[str, int]:
    """What became of the run's reps. Each part's body says: ``"upserted"`` or ``"rejected"``;
    a rep that is neither was dead-lettered (the dead letter channel handled it, leaving the
    body as the failed step had it)."""
    outcomes = Counter(b for b in exchange.body if isinstance(b, str))
    fetched = len(exchange.body)
    return {
        "fetched": fetched,
        "upserted": outcomes["upserted"],
        "rejected": outcomes["rejected"],
        "dead_lettered": fetched - outcomes["upserted"] - outcomes["rejected"],
    }


def _demo_setup(folder: Path) -> None:
    """The demo's tokens and, when absent, its code lists (copied, so edits stay yours)."""
    if not demo_enabled():
        return
    os.environ.setdefault("CRM_API_TOKEN", "demo-crm-api-token")
    os.environ.setdefault("HR_API_TOKEN", "demo-hr-api-token")
    folder.mkdir(parents=True, exist_ok=True)
    for name in TABLES:
        if not (folder / name).exists():
            temp = folder / f".{name}.tmp"
            shutil.copyfile(SAMPLE_DIR / name, temp)
            temp.replace(folder / name)


class CrmHrMapping(RouteBuilder):
    def __init__(self, data: Path | None = None, *, check_every: float | None = None) -> None:
        super().__init__()
        self.data = data if data is not None else data_dir()
        self.check_every = TABLE_CHECK_EVERY if check_every is None else check_every

    def configure(self) -> None:
        folder = reference_dir(self.data)
        _demo_setup(folder)
        regions, departments = code_lists(folder, self.check_every)
        to_employee = employee_mapper(regions, departments)
        (
            self.on_exception(MappingError)
            .handled()
            .redelivery(RedeliveryPolicy(max_redeliveries=0))  # a code list fixes it, not a retry
            .set_body(exchange_property(REP))
            .transform(dead_letter)
            .set_header(H.FILE_NAME, rep_file_name)
            .to(f"file:{rejected('hr-mapping', self.data)}")
            .log("sales rep rejected: {headers[eip.exception.message]}", level=30)
            .set_body("rejected")
        )
        (
            self.from_(cron("crm-hr-mapping", SCHEDULE, timezone=TIMEZONE))
            .route_id("crm-hr-mapping-nightly")
            .description("02:30 Asia/Shanghai: the CRM's sales reps -> HR employees")
            .to(SYNC)
        )
        (
            self.from_(SYNC)
            .route_id("crm-hr-sync")
            .description("CRM sales reps -> code lists -> HR employee upserts")
            .to(
                http_client(
                    f"{setting('crm.url')}/api/sales-reps",
                    method="GET",
                    auth="bearer",
                    secret_env="CRM_API_TOKEN",
                    timeout=30.0,
                )
            )
            .unmarshal(json(list[SalesRep]))
            .split(body(), EMPLOYEE, aggregate=collect_bodies)
            .transform(run_summary)
            .log(
                "CRM -> HR: {body[fetched]} sales reps, {body[upserted]} upserted, "
                "{body[rejected]} rejected, {body[dead_lettered]} dead-lettered"
            )
        )
        (
            self.from_(EMPLOYEE)
            .route_id("crm-hr-employee")
            .error_handler(
                dead_letter_channel(
                    "direct:crm-hr-dead",
                    redelivery=RedeliveryPolicy(max_redeliveries=2, delay=0.2),
                )
            )
            .set_property(REP, body())
            .map_fields(to_employee)
            .set_header(H.HTTP_REQUEST_PATH, lambda ex: ex.body.employee_number)
            .to(
                http_client(
                    f"{setting('hr.url')}/api/employees",
                    method="PUT",
                    auth="bearer",
                    secret_env="HR_API_TOKEN",
                    timeout=10.0,
                )
            )
            .set_body("upserted")
        )
        (
            self.from_("direct:crm-hr-dead")
            .route_id("crm-hr-dead")
            .set_body(exchange_property(REP))
            .transform(dead_letter)
            .set_header(H.FILE_NAME, rep_file_name)
            .to(f"file:{dead_letters('hr-mapping', self.data)}")
            .log("sales rep dead-lettered: {headers[eip.exception.message]}", level=30)
        )


# -- the demo's CRM and HR -------------------------------------------------------------------
def demo_sales_reps(exchange: Exchange) -> bytes:
    return (SAMPLE_DIR / "sales_reps.json").read_bytes()


class DemoCrmHrSystems(RouteBuilder):
    """The demo's CRM sales-rep list and HR API, served by eip itself, and a sync at start
    (``EIP_DEMO=0`` leaves them out)."""

    abstract = not demo_enabled()

    def __init__(self, data: Path | None = None) -> None:
        super().__init__()
        self.data = data

    def configure(self) -> None:
        _demo_setup(reference_dir(self.data))
        (
            self.from_(
                http_server(
                    "/demo/crm/api/sales-reps",
                    methods=["GET"],
                    auth="bearer",
                    credentials_env="CRM_API_TOKEN",
                    openapi=False,
                )
            )
            .route_id("demo-crm-sales-reps")
            .transform(demo_sales_reps)
        )
        (
            self.from_(
                http_server(
                    "/demo/hr/api/employees/{employee_number}",
                    methods=["PUT"],
                    body=HrEmployee,
                    auth="bearer",
                    credentials_env="HR_API_TOKEN",
                    openapi=False,
                )
            )
            .route_id("demo-hr-employees")
            .set_header(H.FILE_NAME, lambda ex: f"{ex.body.employee_number}.json")
            .marshal(json())
            .to(f"file:{demo_output('hr-api', self.data)}")
            .set_body(lambda ex: {"employee_id": ex.headers["employee_number"]})
        )
        (
            self.from_("timer:crm-hr-mapping-demo?repeat_count=1&delay=1")
            .route_id("crm-hr-mapping-demo")
            .to(SYNC)
        )
