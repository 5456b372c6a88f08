"""Reconcile metrics for ``/metrics``: the last run of each reconcile, and running totals.

A prometheus_client collector read at scrape time (nothing is updated per record). When the
context has metrics on, the ``reconcile`` step registers one collector per context into the
context's registry (``context.metrics.registry``, see :mod:`eip.runtime.metrics`); library use
can register :class:`ReconcileMetrics` into any registry.

Exposed (label ``reconcile``, the reconcile's name):

- ``eip_reconcile_runs_total``, ``eip_reconcile_runs_failed_total`` (counters);
- ``eip_reconcile_keys{verdict}``: keys per verdict in the last run (gauge);
- ``eip_reconcile_records{side}``: records read per side in the last run (gauge);
- ``eip_reconcile_consistency_ratio``: ``same / keys`` of the last run (gauge);
- ``eip_reconcile_field_differences{field}``: keys each field differs in (gauge);
- ``eip_reconcile_repairs_total{outcome}``: repairs ``sent``, ``failed``, ``skipped``
  (counters, over all runs);
- ``eip_reconcile_duration_seconds``, ``eip_reconcile_last_success_timestamp_seconds``.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from eip.reconcile.report import ReconcileReport

if TYPE_CHECKING:
    from prometheus_client.core import Metric

__all__ = ["ReconcileMetrics", "reconcile_metrics"]


class ReconcileMetrics:
    """The prometheus_client Collector of reconcile runs."""

    def __init__(self) -> None:
        self.last: dict[str, ReconcileReport] = {}
        self.runs: dict[str, int] = {}
        self.failures: dict[str, int] = {}
        self.repairs: dict[tuple[str, str], int] = {}

    def record(self, report: ReconcileReport) -> None:
        """Count a finished run and keep its report."""
        name = report.name
        self.last[name] = report
        self.runs[name] = self.runs.get(name, 0) + 1
        self.failures.setdefault(name, 0)
        for outcome in ("sent", "failed", "skipped"):
            key = (name, outcome)
            self.repairs[key] = self.repairs.get(key, 0) + getattr(report.repairs, outcome)

    def record_failure(self, name: str) -> None:
        """Count a run that raised (a source failed)."""
        self.runs[name] = self.runs.get(name, 0) + 1
        self.failures[name] = self.failures.get(name, 0) + 1

    def collect(self) -> Iterator[Metric]:
        # Imported here: a route file that declares a reconcile must not pay for
        # prometheus_client unless metrics are on.
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        label = ["reconcile"]
        runs = CounterMetricFamily("eip_reconcile_runs", "Reconcile runs", labels=label)
        failed = CounterMetricFamily(
            "eip_reconcile_runs_failed", "Reconcile runs that raised", labels=label
        )
        for name, count in sorted(self.runs.items()):
            runs.add_metric([name], count)
            failed.add_metric([name], self.failures.get(name, 0))
        keys = GaugeMetricFamily(
            "eip_reconcile_keys", "Keys per verdict, last run", labels=[*label, "verdict"]
        )
        records = GaugeMetricFamily(
            "eip_reconcile_records", "Records read per side, last run", labels=[*label, "side"]
        )
        ratio = GaugeMetricFamily(
            "eip_reconcile_consistency_ratio", "Keys the same / all keys, last run", labels=label
        )
        fields = GaugeMetricFamily(
            "eip_reconcile_field_differences",
            "Keys a field differs in, last run",
            labels=[*label, "field"],
        )
        duration = GaugeMetricFamily(
            "eip_reconcile_duration_seconds", "Duration of the last run", labels=label
        )
        success = GaugeMetricFamily(
            "eip_reconcile_last_success_timestamp_seconds",
            "When the last run finished (Unix time)",
            labels=label,
        )
        for name, report in sorted(self.last.items()):
            for verdict, count in report.counts.items():
                keys.add_metric([name, verdict], count)
            records.add_metric([name, "left"], report.left.records)
            records.add_metric([name, "right"], report.right.records)
            ratio.add_metric([name], report.consistency)
            for field, count in report.field_differences.items():
                fields.add_metric([name, field], count)
            duration.add_metric([name], report.duration_seconds)
            success.add_metric([name], report.finished_at.timestamp())
        repairs = CounterMetricFamily(
            "eip_reconcile_repairs", "Repairs by outcome", labels=[*label, "outcome"]
        )
        for (name, outcome), count in sorted(self.repairs.items()):
            repairs.add_metric([name, outcome], count)
        yield from (runs, failed, keys, records, ratio, fields, duration, success, repairs)


_BY_OWNER: weakref.WeakKeyDictionary[Any, ReconcileMetrics] = weakref.WeakKeyDictionary()


def reconcile_metrics(metrics: Any) -> ReconcileMetrics | None:
    """The collector registered in ``metrics.registry`` (a context's
    :class:`~eip.runtime.metrics.Metrics`), made and registered on first use; None when
    ``metrics`` is None (metrics off) or has no registry."""
    if metrics is None:
        return None
    registry = getattr(metrics, "registry", None)
    if registry is None:
        return None
    collector = _BY_OWNER.get(metrics)
    if collector is None:
        collector = _BY_OWNER[metrics] = ReconcileMetrics()
        registry.register(collector)
    return collector
