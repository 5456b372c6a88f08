"""The ``reconcile`` step (DSL, model and compile): a consistency check as a route step.

A step rather than a processor because the check needs the route: its sources GET through
the route's ``http:`` producers (placeholders, auth and timeouts resolved at start, failing
there when missing), its repairs go to an endpoint the route starts and stops, and ``eip
routes`` shows it. Fed by a ``cron:`` or ``timer:`` (or a ``direct:`` to run it on demand),
it replaces the body with the :class:`~eip.reconcile.report.ReconcileReport`. The check
itself is :mod:`eip.reconcile`, imported only when a route compiles one, so ``import eip``
does not pay for it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from eip.dsl.base import StepsBase
from eip.dsl.compiler import CompileContext, register_step
from eip.dsl.model import EndpointRef, StepDef, endpoint_text
from eip.processors.base import Step

if TYPE_CHECKING:
    from eip.reconcile.engine import KeySpec
    from eip.reconcile.normalise import NormaliserSpec

__all__ = ["ReconcileDef", "ReconcileSteps"]


@dataclass(slots=True)
class ReconcileDef(StepDef):
    left: Any
    right: Any
    key: KeySpec
    repair_to: EndpointRef | None = None
    report: str | Path | None = None
    options: dict[str, Any] = field(default_factory=dict)
    kind = "reconcile"

    def describe(self) -> str:
        sides = " vs ".join(_name(side) for side in (self.left, self.right))
        key = self.key if isinstance(self.key, str | tuple | list) else "<function>"
        repair = f", repair_to={endpoint_text(self.repair_to)}" if self.repair_to else ""
        return f"reconcile({sides}, key={key!r}{repair})"


def _name(side: Any) -> str:
    return str(getattr(side, "name", None) or type(side).__name__)


class ReconcileSteps(StepsBase):
    """The ``reconcile`` DSL method (mixed into every step builder)."""

    def reconcile(
        self,
        left: Any,
        right: Any,
        *,
        key: KeySpec,
        name: str | None = None,
        fields: Sequence[str] | None = None,
        ignore: Collection[str] = (),
        normalise: Mapping[str, NormaliserSpec] | None = None,
        report: str | Path | None = None,
        repair_to: EndpointRef | None = None,
        repair: Collection[str] = ("differs", "only_left"),
        max_repairs: int | None = None,
        repair_concurrency: int = 1,
        samples: int = 10,
        memory_records: int = 100_000,
        spill_dir: str | Path | None = None,
    ) -> Self:
        """Compare ``left`` and ``right`` (sources: :func:`~eip.reconcile.http_source`,
        :func:`~eip.reconcile.file_source`, :func:`~eip.reconcile.callable_source`) by
        ``key``; the body becomes the report, also written to ``report`` (JSON) and exposed as
        metrics. With ``repair_to``, the ``repair`` verdicts' records are sent there (at most
        ``max_repairs``). See :mod:`eip.reconcile`."""
        options = {
            "name": name,
            "fields": fields,
            "ignore": ignore,
            "normalise": normalise,
            "repair": repair,
            "max_repairs": max_repairs,
            "repair_concurrency": repair_concurrency,
            "samples": samples,
            "memory_records": memory_records,
            "spill_dir": spill_dir,
        }
        return self._add(ReconcileDef(left, right, key, repair_to, report, options))


@register_step(ReconcileDef)
def _compile_reconcile(step: ReconcileDef, cc: CompileContext) -> Step:
    from eip.reconcile.engine import Reconciler
    from eip.reconcile.metrics import reconcile_metrics
    from eip.reconcile.sources import as_source
    from eip.reconcile.step import reconcile_step

    options = dict(step.options)
    options["name"] = options["name"] or cc.route_id

    def resolve(ref: EndpointRef) -> Any:
        return cc.context.producer_for(ref, route_id=cc.route_id, step=cc.where)

    reconciler = Reconciler(
        as_source(step.left, "left"), as_source(step.right, "right"), key=step.key, **options
    ).bind(resolve)
    repair_to = resolve(step.repair_to) if step.repair_to is not None else None
    return reconcile_step(
        reconciler,
        repair_to=repair_to,
        repair_endpoint=endpoint_text(step.repair_to) if step.repair_to is not None else None,
        report=step.report,
        metrics=reconcile_metrics(cc.context.metrics),
    )
