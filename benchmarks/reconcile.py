"""Consistency check: eip's ``reconcile`` against two dicts compared by hand, and its peak RSS.

The data: two JSON-lines exports of ~1,000,000 customer records each (~150 B a record:
``customer_number``, name, e-mail, country, segment, revenue, date). 0.5% of each side's keys
are missing on the other side, and 1% of the keys both have differ in one field. The order
is shuffled (an export's order is no help), with a fixed seed.

- **baseline**: a hand-written script: read each file in 1 MB chunks with msgspec's
  ``decode_lines`` into a dict by key, then walk the left dict popping from the right one
  (``==`` on the dicts, the differing fields listed for the few that differ). The fair lower
  bound for a check that fits in memory: it holds all 2M records as dicts (~2 GB).
- **eip** (``reconcile-vs-handwritten``): ``from_("direct:check").reconcile(
  file_source(left), file_source(right), key="customer_number", report=...)`` in a started
  Context; one exchange sent. JSON-lines sources hand over each record's text with its key
  (decoded alone), so only the records that differ are decoded. Memory bounded: past 100,000
  records the sides go to hash partitions on disk.
- **eip, records decoded** (``reconcile-decoded-vs-handwritten``): the same with both
  sources mapped (``.map(lambda r: r)``), as when two systems' shapes are mapped to one:
  every record is decoded and packed, the general path.

Each variant runs in a **fresh child process** per round (interleaved: baseline, eip, eip
decoded, baseline...), which times only the comparison (not interpreter start-up) and reports
its peak RSS (``VmHWM``, of this process image: ``ru_maxrss`` would also count the forking
parent's size, which Linux carries over an exec), so the baseline's dicts never count against
eip, and every round starts from the same state. Rate = records read (both sides) per
second; figures are medians. ``reconcile-peak-rss`` is the highest eip child's peak over the rounds.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec

from benchmarks._report import Variant, interleave, result_line, table, value_line

__all__ = ["Expected", "handwritten", "make_files", "run"]

ROOT = Path(__file__).resolve().parent.parent


class Expected(msgspec.Struct, frozen=True):
    """The verdict counts the data was made with (both sides must find exactly these)."""

    left: int
    right: int
    same: int
    differs: int
    only_left: int
    only_right: int


def _record(n: int, changed: bool) -> dict[str, Any]:
    return {
        "customer_number": f"C-{n:07d}",
        "name": f"Customer {n}",
        "email": f"customer.{n}@example.com",
        "country_code": ("DE", "FR", "GB", "US", "CN")[n % 5],
        "segment": "b2b" if n % 3 else "b2c",
        "revenue_cents": (n % 9973) * 100 + (7 if changed else 0),
        "customer_since": f"20{10 + n % 15}-{n % 12 + 1:02d}-{n % 28 + 1:02d}",
    }


def _lines(numbers: list[int], changed: set[int]) -> Iterator[bytes]:
    encode = msgspec.json.Encoder().encode
    for n in numbers:
        yield encode(_record(n, n in changed)) + b"\n"


def make_files(records: int, folder: Path, seed: int = 13) -> tuple[Path, Path, Expected]:
    """Write ``left.jsonl`` and ``right.jsonl`` with ``records`` records each (shuffled)."""
    only_left = {n for n in range(records) if n % 200 == 7}  # the right side lacks them
    only_right = set(range(records, records + len(only_left)))  # the left side lacks them
    common = [n for n in range(records) if n not in only_left]
    changed = set(common[50::100])  # 1% of the shared keys
    left_numbers = list(range(records))
    right_numbers = [*common, *sorted(only_right)]
    rng = random.Random(seed)
    rng.shuffle(left_numbers)
    rng.shuffle(right_numbers)
    left, right = folder / "left.jsonl", folder / "right.jsonl"
    with open(left, "wb") as handle:
        handle.writelines(_lines(left_numbers, set()))
    with open(right, "wb") as handle:
        handle.writelines(_lines(right_numbers, changed))
    expected = Expected(
        left=len(left_numbers),
        right=len(right_numbers),
        same=len(common) - len(changed),
        differs=len(changed),
        only_left=len(only_left),
        only_right=len(only_right),
    )
    return left, right, expected


def _read(path: Path) -> dict[Any, dict[str, Any]]:
    decode_lines = msgspec.json.Decoder().decode_lines
    table: dict[Any, dict[str, Any]] = {}
    rest = b""
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            data = rest + chunk
            cut = data.rfind(b"\n") + 1
            data, rest = data[:cut], data[cut:]
            for record in decode_lines(data):
                table[record["customer_number"]] = record
    for record in decode_lines(rest):
        table[record["customer_number"]] = record
    return table


def handwritten(left_path: Path, right_path: Path) -> dict[str, int]:
    """The baseline: two dicts, compared."""
    left, right = _read(left_path), _read(right_path)
    counts = {"left": len(left), "right": len(right), "same": 0, "differs": 0}
    only_left = 0
    differing_fields: dict[str, int] = {}
    for key, record in left.items():
        other = right.pop(key, None)
        if other is None:
            only_left += 1
        elif record == other:
            counts["same"] += 1
        else:
            counts["differs"] += 1
            for name in record.keys() | other.keys():
                if record.get(name) != other.get(name):
                    differing_fields[name] = differing_fields.get(name, 0) + 1
    counts["only_left"] = only_left
    counts["only_right"] = len(right)
    return counts


_BASELINE_CHILD = """
import json, resource, sys, time
from pathlib import Path
from benchmarks.reconcile import handwritten

def peak_mb():
    status = open("/proc/self/status").read().split("VmHWM:")[1]
    return int(status.split()[0]) / 1024
began = time.perf_counter()
counts = handwritten(Path(sys.argv[1]), Path(sys.argv[2]))
elapsed = time.perf_counter() - began
peak = peak_mb()
print(json.dumps({"counts": counts, "seconds": elapsed, "peak_rss_mb": peak}))
"""

_EIP_CHILD = """
import asyncio, json, resource, sys, time
from pathlib import Path
from eip import Context, RouteBuilder
from eip.reconcile import file_source

def peak_mb():
    status = open("/proc/self/status").read().split("VmHWM:")[1]
    return int(status.split()[0]) / 1024

left, right, report, mode = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]

def source(path):
    found = file_source(path)
    # "decoded": a mapped source (as when two systems' shapes are mapped to one), so every
    # record is decoded and packed, not keyed from its JSON text.
    return found.map(lambda record: record) if mode == "decoded" else found

class Check(RouteBuilder):
    def configure(self):
        (self.from_("direct:check").route_id("crm-erp-check")
             .reconcile(source(left), source(right), key="customer_number", report=report))

async def main():
    context = Context()
    context.add_routes(Check())
    await context.start()
    began = time.perf_counter()
    exchange = await context.template().send("direct:check")
    elapsed = time.perf_counter() - began
    assert exchange.exception is None, exchange.exception
    found = exchange.body
    await context.stop()
    peak = peak_mb()
    counts = {"left": found.left.records, "right": found.right.records, **found.counts}
    print(json.dumps({"counts": counts, "seconds": elapsed, "peak_rss_mb": peak,
                      "spilled": found.spilled}))

asyncio.run(main())
"""


def _child(code: str, *args: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    if out.returncode != 0:
        raise RuntimeError(f"benchmark child failed ({out.returncode}):\n{out.stderr}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _check(counts: dict[str, int], expected: Expected, who: str) -> None:
    for name in ("left", "right", "same", "differs", "only_left", "only_right"):
        assert counts[name] == getattr(expected, name), (who, name, counts, expected)


class Bench:
    """Both variants on one pair of files; remembers each child's peak RSS."""

    def __init__(self, left: Path, right: Path, expected: Expected, folder: Path) -> None:
        self.left, self.right, self.expected, self.folder = left, right, expected, folder
        self.peaks: dict[str, list[float]] = {"baseline": [], "eip": []}
        self.spilled = False

    def baseline(self) -> float:
        result = _child(_BASELINE_CHILD, str(self.left), str(self.right))
        _check(result["counts"], self.expected, "baseline")
        self.peaks["baseline"].append(result["peak_rss_mb"])
        return float(result["seconds"])

    def eip(self) -> float:
        return self._eip("keyed")

    def eip_decoded(self) -> float:
        return self._eip("decoded")

    def _eip(self, mode: str) -> float:
        report = self.folder / "report.json"
        result = _child(_EIP_CHILD, str(self.left), str(self.right), str(report), mode)
        _check(result["counts"], self.expected, "eip")
        assert json.loads(report.read_bytes())["counts"]["differs"] == self.expected.differs
        self.peaks["eip"].append(result["peak_rss_mb"])
        self.spilled = bool(result["spilled"])
        return float(result["seconds"])


async def bench(records: int, rounds: int) -> tuple[dict[str, Any], list[str]]:
    """Run the comparison; returns the medians and peaks, and the RESULT lines."""
    with tempfile.TemporaryDirectory(prefix="eip-bench-reconcile-") as tmp:
        folder = Path(tmp)
        left, right, expected = make_files(records, folder)
        size = (left.stat().st_size + right.stat().st_size) / 1e6
        run = Bench(left, right, expected, folder)
        units = expected.left + expected.right
        results = await interleave(
            [
                Variant("hand-written (two dicts)", run.baseline, units),
                Variant("eip reconcile", run.eip, units),
                Variant("eip reconcile, records decoded", run.eip_decoded, units),
            ],
            rounds=rounds,
            warmup=False,
        )
    base, ours = results["hand-written (two dicts)"], results["eip reconcile"]
    decoded = results["eip reconcile, records decoded"]
    peak_eip, peak_base = max(run.peaks["eip"]), max(run.peaks["baseline"])
    rows = [
        [m.name, f"{m.median:,.0f}", f"{m.us_per_unit:.2f}", f"{peak:,.0f}"]
        for m, peak in ((base, peak_base), (ours, peak_eip), (decoded, peak_eip))
    ]
    print(
        f"reconcile: {expected.left:,} vs {expected.right:,} records ({size:.0f} MB of JSON "
        f"lines), {expected.differs:,} differ, {expected.only_left:,} only left, "
        f"{expected.only_right:,} only right; {rounds} rounds, medians, fresh child per run"
    )
    print(table(["variant", "records/s", "µs/record", "peak RSS MB"], rows))
    print(f"eip spilled to disk: {run.spilled}")
    lines = [
        result_line("reconcile-decoded-vs-handwritten", decoded.median, base.median),
        result_line("reconcile-vs-handwritten", ours.median, base.median),
        value_line("reconcile-peak-rss", round(peak_eip, 1), "MB"),
    ]
    summary = {"eip": ours.median, "baseline": base.median, "peak_rss_mb": peak_eip}
    return summary, lines


def run(quick: bool) -> None:
    import asyncio

    records = 100_000 if quick else 1_000_000
    _, lines = asyncio.run(bench(records, rounds=2 if quick else 3))
    print()
    for line in lines:
        print(line)
