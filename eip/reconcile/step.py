"""The compiled ``reconcile`` step: run the check, send repairs into a route, report.

Per exchange (a timer's or cron's fire, a ``direct:`` call): run the :class:`Reconciler`,
write the report file when one is configured, update the metrics, and make the
:class:`~eip.reconcile.report.ReconcileReport` the body, so the rest of the route can log
it, store it or alert on it.

A repair is a new in-only exchange sent to the repair endpoint: its body is the record of the
side that is right (a dict), its headers :data:`~eip.reconcile.base.RECONCILE_VERDICT`,
``RECONCILE_KEY``, ``RECONCILE_FIELDS`` and ``RECONCILE_NAME``, so the repair route can
upsert, create, or (for ``only_right``) delete. It completes its own unit of work; its
failure is counted in the report, never fails the check.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from eip.endpoint import Sender
from eip.message import Exchange
from eip.reconcile.base import (
    RECONCILE_FIELDS,
    RECONCILE_KEY,
    RECONCILE_NAME,
    RECONCILE_VERDICT,
    Repair,
)
from eip.reconcile.engine import Reconciler
from eip.reconcile.metrics import ReconcileMetrics
from eip.reconcile.report import write_report

__all__ = ["reconcile_step", "repair_sender"]


def repair_sender(send: Sender, name: str, parent: Exchange) -> Callable[[Repair], Any]:
    """A repair sink sending each repair as an exchange through ``send`` (a producer)."""

    async def deliver(repair: Repair) -> None:
        exchange = Exchange(
            repair.record,
            {
                RECONCILE_VERDICT: repair.verdict,
                RECONCILE_KEY: repair.key,
                RECONCILE_FIELDS: list(repair.fields),
                RECONCILE_NAME: name,
            },
        )
        exchange.trace_context = parent.trace_context
        try:
            result = send.process(exchange)
            if result is not None and inspect.isawaitable(result):
                await result
        except Exception as exc:
            exchange.exception = exc
        done = exchange.done()
        if done is not None:
            await done
        if exchange.exception is not None:
            raise exchange.exception

    return deliver


def reconcile_step(
    reconciler: Reconciler,
    *,
    repair_to: Sender | None = None,
    repair_endpoint: str | None = None,
    report: str | Path | None = None,
    metrics: ReconcileMetrics | None = None,
) -> Callable[[Exchange], Any]:
    """The step: an ``async`` function of the exchange (a reconcile always does I/O)."""
    name = reconciler.name

    async def run(exchange: Exchange) -> None:
        sink = repair_sender(repair_to, name, exchange) if repair_to is not None else None
        try:
            result = await reconciler.run(sink, repair_endpoint=repair_endpoint)
            if report is not None:
                await write_report(result, report)
        except Exception:
            if metrics is not None:
                metrics.record_failure(name)
            raise
        if metrics is not None:
            metrics.record(result)
        exchange.body = result

    return run
