"""The report of one reconcile run, and writing it to a JSON file.

The report is a msgspec Struct: the body of the exchange after a ``reconcile`` step, the
content of the report file, and what the metrics are read from. Samples are bounded
(``samples`` per verdict), so a report stays small whatever the sources' size.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import tempfile
from pathlib import Path
from typing import Any

import msgspec

__all__ = [
    "FieldValues",
    "ReconcileReport",
    "RepairSummary",
    "Sample",
    "SideSummary",
    "report_json",
    "write_report",
]


class FieldValues(msgspec.Struct, frozen=True):
    """A differing field's values as the sources have them (before normalisation)."""

    left: Any
    right: Any


class Sample(msgspec.Struct, frozen=True, omit_defaults=True):
    """One key of a verdict: ``fields`` for ``differs``, ``record`` for ``only_left`` and
    ``only_right``, the counts of each side for ``duplicate``."""

    key: Any
    fields: dict[str, FieldValues] | None = None
    record: dict[str, Any] | None = None
    left_count: int | None = None
    right_count: int | None = None


class SideSummary(msgspec.Struct, frozen=True):
    """One source: its description, the records read and the keys it held more than once."""

    source: str
    records: int
    duplicate_keys: int


class RepairSummary(msgspec.Struct, frozen=True):
    """Repairs: sent (delivered), failed (the send raised), skipped (past ``max_repairs``),
    and the first few failures' messages."""

    endpoint: str | None = None
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    errors: list[str] = []


class ReconcileReport(msgspec.Struct, frozen=True):
    """What one run found. ``consistency`` is ``same / keys`` (1.0 when there are no keys);
    ``counts`` has every verdict; ``field_differences`` counts, per field, the keys it
    differs in."""

    name: str
    started_at: dt.datetime
    finished_at: dt.datetime
    duration_seconds: float
    left: SideSummary
    right: SideSummary
    keys: int
    consistency: float
    counts: dict[str, int]
    field_differences: dict[str, int]
    samples: dict[str, list[Sample]]
    repairs: RepairSummary
    #: Whether the records went to disk (more than ``memory_records`` of them).
    spilled: bool

    @property
    def consistent(self) -> bool:
        """True when every key is ``same``."""
        return self.keys == self.counts.get("same", 0)


def _fallback(value: Any) -> Any:
    return str(value)  # a Decimal, a date in a sample: readable rather than a failed report


_encoder = msgspec.json.Encoder(enc_hook=_fallback)


def report_json(report: ReconcileReport) -> bytes:
    """The report as indented JSON (tuple keys become arrays)."""
    return msgspec.json.format(_encoder.encode(report), indent=2) + b"\n"


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


async def write_report(report: ReconcileReport, path: str | os.PathLike[str]) -> Path:
    """Write ``report`` as JSON to ``path``, atomically (a reader sees the old report or the
    new one, never half of one); returns the path."""
    target = Path(path)
    await asyncio.to_thread(_write, target, report_json(report))
    return target
