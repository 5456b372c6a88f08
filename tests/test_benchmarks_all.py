"""``python -m benchmarks all``: every benchmark in its own child process, one summary table of
their RESULT lines against the targets (``benchmarks/_all.py``, ``benchmarks/targets.py``).

The smoke run is the real command on the two cheapest benchmarks; crashes and deadlines are
tried with real child processes. Speed is never asserted.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks import BENCHMARKS
from benchmarks.__main__ import main
from benchmarks._all import ROOT, Outcome, markdown, rows, run_child, text
from benchmarks.targets import TARGETS


def _row_of(table: str, result: str) -> list[str]:
    """The cells of the plain-text table's row for RESULT ``result`` (split on 2+ spaces)."""
    for line in table.splitlines():
        cells = re.split(r"\s{2,}", line.strip())
        if len(cells) > 1 and cells[1] == result:
            return cells
    raise AssertionError(f"no row for {result} in:\n{table}")


@pytest.mark.timeout(300)
def test_all_quick_runs_the_chosen_benchmarks_and_prints_one_table(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "all",
            "--quick",
            "--only",
            "pipeline,split",
            "--log-dir",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.splitlines()[0].split() == [
        "benchmark",
        "result",
        "eip",
        "baseline",
        "ratio",
        "/",
        "value",
        "target",
        "verdict",
    ]  # no note column: no row has a note
    printed_by = {
        "pipeline-vs-handwritten": "pipeline",
        "tracing-on-vs-off": "pipeline",
        "split-aggregate-vs-handwritten": "split",
    }
    for result, benchmark in printed_by.items():
        cells = _row_of(out, result)
        assert cells[0] == benchmark
        eip, baseline, ratio, target, verdict = cells[2:7]
        assert int(eip.replace(",", "")) > 0
        assert int(baseline.replace(",", "")) > 0
        assert re.fullmatch(r"\d+\.\d\d", ratio)
        assert target == str(TARGETS[result])
        assert verdict == ("pass" if float(ratio) >= TARGETS[result].limit else "FAIL")
    peak = _row_of(out, "split-csv-peak-rss")
    assert peak[0] == "split"
    assert re.fullmatch(r"\d+(\.\d+)? MB", peak[2])
    assert peak[3] == "< 150 MB"
    assert peak[4] == ("pass" if float(peak[2].split()[0]) < 150 else "FAIL")
    assert "FAILED" not in out
    assert re.search(r"2 benchmarks \(--quick\) in \d+ s \(pipeline \d+ s, split \d+ s\)", out)
    assert "load average" in out
    assert "[1/2] pipeline ... ok" in done.stderr
    # each benchmark's whole output is kept, RESULT lines included
    assert "RESULT pipeline-vs-handwritten" in (tmp_path / "pipeline.log").read_text()
    assert "RESULT split-csv-peak-rss" in (tmp_path / "split.log").read_text()


def test_a_benchmark_that_crashes_shows_as_failed_with_its_last_error_line() -> None:
    crash = run_child(
        "rabbitmq",
        [
            sys.executable,
            "-c",
            "print('RESULT rabbitmq-vs-aio-pika eip=7327 baseline=2509 ratio=2.92', flush=True)\n"
            "raise RuntimeError('the broker went away')",
        ],
        timeout=60,
    )
    assert crash.returncode == 1
    assert crash.error() == "RuntimeError: the broker went away"
    summary = rows([crash])
    table = text(summary)
    line = _row_of(table, "rabbitmq-vs-aio-pika")
    assert line[2:] == ["7,327", "2,509", "2.92", "≥ 1", "pass"]
    failed = _row_of(table, "FAILED")
    assert failed == ["rabbitmq", "FAILED", "FAILED", "RuntimeError: the broker went away"]
    # the benchmark's targeted comparisons it never printed are listed as missing
    assert _row_of(table, "rabbitmq-vs-own-client")[-1] == "missing"
    assert _row_of(table, "rabbitmq-vs-faststream")[-2:] == ["≥ 2.5", "missing"]

    md = markdown(summary).splitlines()
    assert md[0].startswith("| benchmark | result | eip | baseline | ratio / value | target |")
    assert md[1] == "| --- | --- | ---: | ---: | ---: | --- | --- | --- |"
    assert "| rabbitmq | rabbitmq-vs-aio-pika | 7,327 | 2,509 | 2.92 | ≥ 1 | pass |  |" in md
    assert "| rabbitmq | FAILED |  |  |  |  | FAILED | RuntimeError: the broker went away |" in md


def test_a_benchmark_past_its_deadline_is_stopped_with_what_it_started() -> None:
    began = time.monotonic()
    slow = run_child(
        "split",
        [
            sys.executable,
            "-c",
            "import subprocess, time\n"
            "server = subprocess.Popen(['sleep', '300'])\n"
            "print('server', server.pid, flush=True)\n"
            "print('RESULT split-csv-peak-rss value=212.5 unit=MB', flush=True)\n"
            "time.sleep(300)",
        ],
        timeout=3,
    )
    assert time.monotonic() - began < 30
    assert slow.returncode is None
    assert slow.failed
    assert slow.error() == (
        "timed out after 3 s (last: RESULT split-csv-peak-rss value=212.5 unit=MB)"
    )
    server = int(slow.stdout.split()[1])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the grandchild went with the group
        try:
            state = Path(f"/proc/{server}/stat").read_text().split(") ")[1][0]
        except FileNotFoundError:
            break
        if state == "Z":  # killed, waiting for its new parent to reap it
            break
        time.sleep(0.1)
    else:
        os.kill(server, 9)
        raise AssertionError(f"sleep {server} outlived its benchmark's deadline")
    table = text(rows([slow]))
    assert _row_of(table, "split-csv-peak-rss")[2:] == ["212.5 MB", "< 150 MB", "FAIL"]
    assert _row_of(table, "FAILED")[-1].startswith("timed out after 3 s")


def test_results_are_judged_against_their_targets() -> None:
    lines = "\n".join(
        [
            "some human table",
            "round 2, eip: the broker closed the connection (ConnectionClosed: 320 "
            "CONNECTION_FORCED - x); retrying the round once",
            "RESULT reconcile-vs-handwritten eip=80000 baseline=160000 ratio=0.50",
            "RESULT reconcile-decoded-vs-handwritten eip=1 baseline=3 ratio=0.33",
            "RESULT reconcile-peak-rss value=111.3 unit=MB",
            "RESULT nonsense here",
        ]
    )
    outcome = Outcome("reconcile", 0, 12.0, lines, "")
    summary = rows([outcome])
    table = text(summary)
    assert _row_of(table, "reconcile-vs-handwritten")[-2:] == ["≥ 0.5", "pass"]  # at the bound
    assert _row_of(table, "reconcile-decoded-vs-handwritten")[2:] == ["1", "3", "0.33"]  # no target
    assert _row_of(table, "reconcile-peak-rss")[2:] == ["111.3 MB", "< 200 MB", "pass"]
    assert _row_of(table, "nonsense")[-1] == "malformed: RESULT nonsense here"
    assert "FAILED" not in table
    assert table.endswith(
        "rounds retried:\n- reconcile: round 2, eip: the broker closed the connection "
        "(ConnectionClosed: 320 CONNECTION_FORCED - x); retrying the round once"
    )
    # targets of benchmarks nobody registered show up when everything ran
    assert "startup-20-routes" in text(rows([outcome], unregistered=True))
    assert "startup-20-routes" not in table
    assert all(t.benchmark in BENCHMARKS or t.benchmark == "startup" for t in TARGETS.values())


def test_only_names_registered_benchmarks(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["all", "--only", "pipeline,nope"]) == 2
    assert "unknown benchmark 'nope'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["pipeline", "--markdown"])  # --markdown and --only go with 'all'
    assert main([]) == 0
    assert "all " in capsys.readouterr().out
