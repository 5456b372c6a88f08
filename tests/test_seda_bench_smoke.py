"""Smoke test of ``benchmarks seda``: every variant runs, each run's own checks pass (all
consumed, durable files empty) and the RESULT lines follow the convention. Speed is never
asserted."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import BENCHMARKS, load
from benchmarks._report import RESULT_RE
from benchmarks.seda import SENDERS, bench, run


def db_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.glob("*.db"))


async def test_every_variant_runs_and_checks_its_work(tmp_path: Path) -> None:
    report = await bench(300, 1, tmp_path)
    assert list(report.results) == [
        "memory",
        "durable",
        "durable full",
        "memory, 50 senders",
        "durable, 50 senders",
    ]
    assert all(len(m.rates) == 1 and m.median > 0 for m in report.results.values())
    assert db_files(tmp_path) == ["full.db", "normal.db"]


def test_the_run_prints_three_result_lines(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import benchmarks.seda as module

    real = module.bench
    monkeypatch.setattr(module, "bench", lambda count, rounds, directory: real(200, 1, directory))
    run(quick=True)
    out = capsys.readouterr().out
    matches = [RESULT_RE.match(line) for line in out.splitlines() if line.startswith("RESULT")]
    assert [m["name"] for m in matches if m] == [
        "seda-durable-vs-memory",
        "seda-durable-full-vs-memory",
        f"seda-durable-{SENDERS}-senders-vs-memory",
    ]
    assert all(m and int(m["eip"]) > 0 and int(m["baseline"]) > 0 for m in matches)
    assert "durable, 50 senders" in out
    assert load("seda").run is run
    assert "seda" in BENCHMARKS
