"""Smoke test of the benchmark package: the pipeline benchmark runs, both sides deliver the same
messages and the RESULT lines follow the convention. Speed is never asserted here."""

from __future__ import annotations

from benchmarks import BENCHMARKS, load
from benchmarks._crm import make_messages
from benchmarks._report import RESULT_RE, VALUE_RE, result_line, value_line
from benchmarks.pipeline import Counts, Handwritten, bench, expected_counts


def test_report_lines_follow_the_convention() -> None:
    assert result_line("x-vs-y", 468_000.4, 752_000.0) == (
        "RESULT x-vs-y eip=468000 baseline=752000 ratio=0.62"
    )
    assert value_line("split-csv-peak-rss", 142.50, "MB") == (
        "RESULT split-csv-peak-rss value=142.5 unit=MB"
    )
    assert VALUE_RE.match(value_line("startup-20-routes", 0.4321, "s"))


async def test_pipeline_benchmark_counts_match_and_reports() -> None:
    messages = make_messages(2_000)
    expected = expected_counts(messages)
    assert expected.delivered == 1_800  # every 10th customer is inactive
    assert min(expected.eu, expected.us, expected.apac) > 0
    assert Handwritten().run(messages) == expected

    report = await bench(2_000, rounds=1)  # asserts per-output counts and spans every round

    assert report.expected == expected
    route_spans, send_spans, per_run = report.spans
    assert per_run == 2_000 + 1_800
    assert (route_spans, send_spans) == (2 * 2_000, 2 * 1_800)  # warm-up + one round
    matches = [RESULT_RE.match(line) for line in report.lines]
    assert [m["name"] for m in matches if m] == [
        "pipeline-vs-handwritten",
        "pipeline-ops-on-vs-handwritten",
        "tracing-on-vs-off",
        "tracing-1pct-vs-off",
        "audit-sqlite-vs-off",
        "encrypt-2-fields-vs-plain",
    ]
    assert all(m and int(m["eip"]) > 0 and int(m["baseline"]) > 0 for m in matches)
    assert "hand-written" in report.table()
    assert isinstance(report.expected, Counts)
    assert load("pipeline").run is not None
    assert "pipeline" in BENCHMARKS


async def test_reconcile_benchmark_finds_the_planted_differences_and_reports() -> None:
    from benchmarks.reconcile import bench

    # Both sides run in child processes and must each find exactly the verdicts planted in
    # the data (bench asserts it); the peak RSS is the eip child's.
    summary, lines = await bench(3_000, rounds=1)
    results = [RESULT_RE.match(line) for line in lines[:2]]
    peak = VALUE_RE.match(lines[2])
    assert [r["name"] for r in results if r] == [
        "reconcile-decoded-vs-handwritten",
        "reconcile-vs-handwritten",
    ]
    assert all(r and int(r["eip"]) > 0 and int(r["baseline"]) > 0 for r in results)
    assert peak is not None
    assert (peak["name"], peak["unit"]) == ("reconcile-peak-rss", "MB")
    assert float(peak["value"]) == round(summary["peak_rss_mb"], 1) > 0
    assert "reconcile" in BENCHMARKS
