"""Reporting and measuring helpers shared by every benchmark.

- :func:`interleave` runs variants in turn for N rounds (baseline, eip, baseline, eip, ...)
  and keeps each variant's per-round rate, so drift on the machine hits all variants alike;
  figures reported are medians.
- :func:`result_line` and :func:`value_line` print the machine-readable lines exactly as
  ``/work/shared/BENCHMARKS.md`` defines them; :data:`RESULT_RE` and :data:`VALUE_RE` parse them.
- :func:`table` formats a plain-text table for humans.

A round that can fail for reasons outside the benchmark (a shared broker dropping its
connections) is retried once through ``interleave(..., retry=...)``: see
:mod:`benchmarks._robust`.
"""

from __future__ import annotations

import gc
import inspect
import re
import statistics
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

__all__ = [
    "RESULT_RE",
    "VALUE_RE",
    "BenchmarkFailed",
    "Measurement",
    "Retry",
    "Variant",
    "interleave",
    "result_line",
    "table",
    "value_line",
]

RESULT_RE = re.compile(
    r"^RESULT (?P<name>[a-z0-9-]+) eip=(?P<eip>\d+) baseline=(?P<baseline>\d+)"
    r" ratio=(?P<ratio>\d+\.\d\d)$"
)
VALUE_RE = re.compile(
    r"^RESULT (?P<name>[a-z0-9-]+) value=(?P<value>-?\d+(?:\.\d+)?) unit=(?P<unit>\S+)$"
)


class BenchmarkFailed(Exception):
    """The benchmark cannot go on; ``str()`` is the one line ``python -m benchmarks`` shows for
    it, without a traceback (raised, for one, by :class:`benchmarks._robust.BrokerRetry`)."""


def result_line(comparison: str, eip: float, baseline: float) -> str:
    """``RESULT <comparison> eip=<int/s> baseline=<int/s> ratio=<eip/baseline, 2 decimals>``."""
    ratio = eip / baseline if baseline > 0 else 0.0
    return f"RESULT {comparison} eip={round(eip)} baseline={round(baseline)} ratio={ratio:.2f}"


def value_line(name: str, value: float, unit: str) -> str:
    """``RESULT <name> value=<number> unit=<unit>`` (at most 3 decimals, no trailing zeros)."""
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return f"RESULT {name} value={text} unit={unit}"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain-text table; the first column is left-aligned, the others right-aligned."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def line(cells: Sequence[str]) -> str:
        parts = [
            cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i])
            for i, cell in enumerate(cells)
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(row) for row in rows)])


@dataclass(frozen=True, slots=True)
class Variant:
    """One thing to measure. ``run`` does one round of ``units`` units of work (sync or async)
    and returns the seconds it took; it times only the work itself, and should check that the
    work was done (so a benchmark cannot silently measure nothing)."""

    name: str
    run: Callable[[], float | Awaitable[float]]
    units: int


@dataclass(slots=True)
class Measurement:
    """The per-round rates of one variant (units per second)."""

    name: str
    rates: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.rates)

    @property
    def low(self) -> float:
        return min(self.rates)

    @property
    def high(self) -> float:
        return max(self.rates)

    @property
    def us_per_unit(self) -> float:
        """Microseconds per unit at the median rate."""
        return 1e6 / self.median


Retry = Callable[[Callable[[], Awaitable[float]], str], Awaitable[float]]
"""Runs one attempt of a round (``await retry(attempt, "round 3, eip")``) and decides whether
a failed attempt is run again: :class:`benchmarks._robust.BrokerRetry`."""


async def _once(variant: Variant) -> float:
    outcome = variant.run()
    if inspect.isawaitable(outcome):
        return await outcome
    return outcome


async def _round(variant: Variant, where: str, retry: Retry | None, *, collect: bool) -> float:
    async def attempt() -> float:
        if collect:
            gc.collect()
        return await _once(variant)

    if retry is None:
        return await attempt()
    return await retry(attempt, f"{where}, {variant.name}")


async def interleave(
    variants: Sequence[Variant], rounds: int, *, warmup: bool = True, retry: Retry | None = None
) -> dict[str, Measurement]:
    """Run every variant once per round, in the order given, for ``rounds`` rounds.

    A warm-up round (not recorded) runs first when ``warmup`` is true. The garbage collector is
    run before each measured run so that one variant's garbage is not collected on another's
    time; it stays enabled during the run, as collecting your own garbage is part of the cost.
    With ``retry``, every run of a variant goes through it (rounds are numbered from 1).
    """
    results = {v.name: Measurement(v.name) for v in variants}
    if warmup:
        for variant in variants:
            await _round(variant, "warm-up round", retry, collect=False)
    for number in range(1, rounds + 1):
        for variant in variants:
            seconds = await _round(variant, f"round {number}", retry, collect=True)
            results[variant.name].rates.append(variant.units / seconds)
    return results
