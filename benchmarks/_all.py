"""``python -m benchmarks all``: every benchmark in a child process of its own, one table.

Each benchmark runs as ``python -m benchmarks NAME [--quick]`` in its own process group with
a deadline, so one that crashes, hangs or leaks memory cannot take the others down; its
``RESULT`` lines are read from its output. The summary has one row per RESULT line with its
target from :mod:`benchmarks.targets` (pass or FAIL), one ``FAILED`` row per benchmark that
exited non-zero or ran out of time (with its last error line), and one ``missing`` row per
target of a benchmark that ran but did not print that comparison. Round retries
(:mod:`benchmarks._robust`) are listed under the table.

The exit status is 1 when a benchmark failed, else 0: a missed target is a measurement, not a
broken run.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks import BENCHMARKS
from benchmarks._report import RESULT_RE, VALUE_RE
from benchmarks._robust import NOTE_RE
from benchmarks.targets import TARGETS, Target

__all__ = [
    "Outcome",
    "Row",
    "command",
    "markdown",
    "rows",
    "run_all",
    "run_child",
    "text",
]

ROOT = Path(__file__).resolve().parent.parent
KILL_GRACE = 5.0  # seconds between SIGTERM and SIGKILL for a benchmark past its deadline


@dataclass(slots=True)
class Outcome:
    """How one benchmark's child process ended, and what it printed."""

    name: str
    returncode: int | None  # None: killed at the deadline
    seconds: float
    stdout: str
    stderr: str
    timeout: float = 0.0

    @property
    def failed(self) -> bool:
        return self.returncode != 0

    def lines(self) -> list[str]:
        return [line.strip() for line in self.stdout.splitlines()]

    def error(self) -> str:
        """The last error line: the exception of a traceback, a one-line failure, or else
        the last thing printed."""
        for stream in (self.stderr, self.stdout):
            last = next((ln.strip() for ln in reversed(stream.splitlines()) if ln.strip()), "")
            if last:
                break
        if self.returncode is None:
            return f"timed out after {self.timeout:g} s" + (f" (last: {last})" if last else "")
        return last or f"exited with status {self.returncode} and printed nothing"


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the summary."""

    benchmark: str
    result: str
    eip: str = ""
    baseline: str = ""
    figure: str = ""  # the ratio, or the value with its unit
    target: str = ""
    verdict: str = ""  # pass, FAIL, missing, FAILED (the benchmark itself), or "" (no target)
    note: str = ""


@dataclass(slots=True)
class Summary:
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def command(name: str, quick: bool) -> list[str]:
    """The command line that runs benchmark ``name`` alone."""
    return [sys.executable, "-m", "benchmarks", name, *(["--quick"] if quick else [])]


def _stop_group(process: subprocess.Popen[str]) -> tuple[str, str]:
    """SIGTERM the child's process group (it and whatever servers it started), SIGKILL after
    :data:`KILL_GRACE`; returns what it printed."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            return process.communicate(timeout=KILL_GRACE)
        except subprocess.TimeoutExpired:
            continue
    return process.communicate()


def run_child(name: str, argv: Sequence[str], timeout: float) -> Outcome:
    """Run ``argv`` in a new session (its own process group) from the repository root, with
    ``timeout`` seconds to finish; the whole group is stopped if it runs over."""
    began = time.monotonic()
    process = subprocess.Popen(
        list(argv),
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
        code: int | None = process.returncode
    except subprocess.TimeoutExpired:
        stdout, stderr = _stop_group(process)
        code = None
    except BaseException:  # Ctrl-C: take the child's group down with us
        _stop_group(process)
        raise
    return Outcome(name, code, time.monotonic() - began, stdout, stderr, timeout)


def _figure(value: str, unit: str = "") -> str:
    number = float(value)
    shown = f"{number:,.0f}" if abs(number) >= 1000 else value
    return f"{shown} {unit}".rstrip()


def _judge(target: Target | None, figure: float) -> tuple[str, str]:
    if target is None:
        return "", ""
    return str(target), "pass" if target.met(figure) else "FAIL"


def rows(outcomes: Sequence[Outcome], *, unregistered: bool = False) -> Summary:
    """The summary rows of these outcomes, in the order they ran. With ``unregistered``, the
    targets whose benchmark is not registered at all are listed as missing too."""
    summary = Summary()
    for outcome in outcomes:
        seen: set[str] = set()
        for line in outcome.lines():
            if NOTE_RE.match(line):
                summary.notes.append(f"{outcome.name}: {line}")
            if not line.startswith("RESULT "):
                continue
            if ratio := RESULT_RE.match(line):
                name = ratio["name"]
                target, verdict = _judge(TARGETS.get(name), float(ratio["ratio"]))
                summary.rows.append(
                    Row(
                        outcome.name,
                        name,
                        f"{int(ratio['eip']):,}",
                        f"{int(ratio['baseline']):,}",
                        ratio["ratio"],
                        target,
                        verdict,
                    )
                )
            elif value := VALUE_RE.match(line):
                name = value["name"]
                target_of = TARGETS.get(name)
                judged = target_of if target_of is None or target_of.unit == value["unit"] else None
                target, verdict = _judge(judged, float(value["value"]))
                note = "" if judged is target_of else f"unit is not the target's {target_of}"
                summary.rows.append(
                    Row(
                        outcome.name,
                        name,
                        figure=_figure(value["value"], value["unit"]),
                        target=target,
                        verdict=verdict,
                        note=note,
                    )
                )
            else:
                summary.rows.append(
                    Row(outcome.name, line[7:].split(" ", 1)[0], note=f"malformed: {line}")
                )
                continue
            seen.add(name)
        if outcome.failed:
            summary.rows.append(Row(outcome.name, "FAILED", verdict="FAILED", note=outcome.error()))
        for name, goal in TARGETS.items():
            if goal.benchmark == outcome.name and name not in seen:
                summary.rows.append(Row(outcome.name, name, target=str(goal), verdict="missing"))
    if unregistered:
        for name, goal in TARGETS.items():
            if goal.benchmark not in BENCHMARKS:
                summary.rows.append(
                    Row(
                        goal.benchmark,
                        name,
                        target=str(goal),
                        verdict="missing",
                        note="no such benchmark yet",
                    )
                )
    return summary


HEADERS = ("benchmark", "result", "eip", "baseline", "ratio / value", "target", "verdict", "note")
_RIGHT = {2, 3, 4}  # numbers


def _table(summary: Summary) -> list[list[str]]:
    """Header and rows as cells; the note column only when some row has a note."""
    table = [
        [r.benchmark, r.result, r.eip, r.baseline, r.figure, r.target, r.verdict, r.note]
        for r in summary.rows
    ]
    if any(row[-1] for row in table):
        return [list(HEADERS), *table]
    return [list(HEADERS[:-1]), *(row[:-1] for row in table)]


def text(summary: Summary) -> str:
    """The summary as a plain-text table (numbers right-aligned), then the retry notes."""
    table = _table(summary)
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(widths[i]) if i in _RIGHT else c.ljust(widths[i]) for i, c in enumerate(cells)
        ).rstrip()

    out = [line(table[0]), "  ".join("-" * w for w in widths).rstrip()]
    out += [line(row) for row in table[1:]]
    return "\n".join(out + _notes(summary))


def markdown(summary: Summary) -> str:
    """The summary as a markdown table, then the retry notes."""
    header, *table = _table(summary)
    rule = ["---:" if i in _RIGHT else "---" for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    out = [line(header), line(rule), *(line(row) for row in table)]
    return "\n".join(out + _notes(summary))


def _notes(summary: Summary) -> list[str]:
    if not summary.notes:
        return []
    return ["", "rounds retried:", *(f"- {note}" for note in summary.notes)]


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.1f} (5 min: {five:.1f}) on {os.cpu_count()} cores"


def run_all(
    names: Sequence[str], *, quick: bool, timeout: float, as_markdown: bool, log_dir: Path | None
) -> int:
    """Run ``names`` one after another, print the summary table; 1 if any benchmark failed."""
    outcomes = []
    began, load_before = time.monotonic(), _load()
    for number, name in enumerate(names, 1):
        print(f"[{number}/{len(names)}] {name} ...", end="", file=sys.stderr, flush=True)
        outcome = run_child(name, command(name, quick), timeout)
        found = sum(line.startswith("RESULT ") for line in outcome.lines())
        told = f"{found} RESULT lines, {outcome.seconds:.0f} s"
        told = f"FAILED, {told}: {outcome.error()}" if outcome.failed else f"ok, {told}"
        print(f" {told}", file=sys.stderr, flush=True)
        if log_dir is not None:
            log_dir.mkdir(parents=True, exist_ok=True)
            (log_dir / f"{name}.log").write_text(outcome.stdout + outcome.stderr)
        outcomes.append(outcome)
    summary = rows(outcomes, unregistered=list(names) == list(BENCHMARKS))
    print(markdown(summary) if as_markdown else text(summary))
    times = ", ".join(f"{o.name} {o.seconds:.0f} s" for o in outcomes)
    print(
        f"\n{len(outcomes)} benchmarks{' (--quick)' if quick else ''} in "
        f"{time.monotonic() - began:.0f} s ({times}); load average {load_before} before, "
        f"{_load()} after"
    )
    return 1 if any(o.failed for o in outcomes) else 0
