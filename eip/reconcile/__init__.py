"""Consistency checks: compare the records of two systems by key, report, and repair.

In a route (``from eip.reconcile import http_source, trim, casefold``)::

    (self.from_(cron("crm-erp-check", schedule="0 4 * * *"))
         .reconcile(
             left=http_source(crm_customers).filter(is_active).map(to_erp_shape),
             right=http_source(erp_customers, items="data"),
             key="customer_number",
             ignore=["source_event"],
             normalise={"*": trim, "email": casefold},
             report="data/reports/crm-erp.json",
             repair_to="direct:erp-customer-upsert",
         )
         .log("CRM/ERP consistency {body.consistency:.2%}"))

Each key gets a verdict: ``same``, ``differs`` (with the fields), ``only_left``,
``only_right`` or ``duplicate`` (:mod:`eip.reconcile.base`). The run's
:class:`ReconcileReport` (counts, consistency = same / keys, bounded samples, repairs) becomes
the body, is written to ``report`` as JSON, and feeds ``/metrics``
(:mod:`eip.reconcile.metrics`). Repairs for the verdicts in ``repair`` (default ``differs``
and ``only_left``: the left side is the truth) go to ``repair_to`` as exchanges.

Memory is bounded: past ``memory_records`` records the sides go to hash partitions on disk
(:mod:`eip.reconcile.spool` says why that and not a sorted merge or SQLite). Outside a route,
``await reconcile(left, right, key=...)`` runs one check.
"""

from eip.reconcile.base import (
    DIFFERS,
    DUPLICATE,
    ONLY_LEFT,
    ONLY_RIGHT,
    RECONCILE_FIELDS,
    RECONCILE_KEY,
    RECONCILE_NAME,
    RECONCILE_VERDICT,
    SAME,
    VERDICTS,
    ReconcileError,
    Repair,
    Verdict,
)
from eip.reconcile.engine import KeySpec, Reconciler, RepairSink, reconcile
from eip.reconcile.file_sources import file_source
from eip.reconcile.http_sources import http_source
from eip.reconcile.metrics import ReconcileMetrics, reconcile_metrics
from eip.reconcile.normalise import (
    Normaliser,
    casefold,
    collapse_spaces,
    compose,
    date,
    empty_as_none,
    number,
    trim,
)
from eip.reconcile.report import (
    FieldValues,
    ReconcileReport,
    RepairSummary,
    Sample,
    SideSummary,
    report_json,
    write_report,
)
from eip.reconcile.sources import Source, callable_source

__all__ = [
    "DIFFERS",
    "DUPLICATE",
    "ONLY_LEFT",
    "ONLY_RIGHT",
    "RECONCILE_FIELDS",
    "RECONCILE_KEY",
    "RECONCILE_NAME",
    "RECONCILE_VERDICT",
    "SAME",
    "VERDICTS",
    "FieldValues",
    "KeySpec",
    "Normaliser",
    "ReconcileError",
    "ReconcileMetrics",
    "ReconcileReport",
    "Reconciler",
    "Repair",
    "RepairSink",
    "RepairSummary",
    "Sample",
    "SideSummary",
    "Source",
    "Verdict",
    "callable_source",
    "casefold",
    "collapse_spaces",
    "compose",
    "date",
    "empty_as_none",
    "file_source",
    "http_source",
    "number",
    "reconcile",
    "reconcile_metrics",
    "report_json",
    "trim",
    "write_report",
]
