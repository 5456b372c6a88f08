"""Crash test: a process that queued N messages on a durable seda queue is SIGKILLed while it
consumes them; a restarted one consumes the rest.

Nothing may be lost: right after the kill, every message is either consumed or still in the
file. A message consumed but not yet deleted when the process died is delivered again (and
marked ``seda.redelivered``): the duplicates must be exactly those, so no more than were in
flight at the kill.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import msgspec

ROOT = Path(__file__).resolve().parents[2]
COUNT = 2000


def start_child(db: Path, output: Path, count: int) -> subprocess.Popen[bytes]:
    ready = Path(f"{output}.ready")
    ready.unlink(missing_ok=True)
    command = [sys.executable, "-m", "tests.components.seda_durable_child"]
    child = subprocess.Popen(
        [*command, str(db), str(output), str(count)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    wait_until(lambda: ready.exists() or child.poll() is not None, 20, "the child to start")
    assert child.poll() is None, child.stderr.read().decode() if child.stderr else ""
    return child


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def consumed(output: Path) -> list[dict[str, object]]:
    if not output.exists():
        return []
    return [json.loads(line) for line in output.read_text().splitlines() if line.strip()]


def left_in_file(db: Path) -> list[int]:
    """The ``n`` of every row still in the file (the child is dead: its lock is gone)."""
    with sqlite3.connect(db) as connection:
        rows = connection.execute(
            "SELECT body FROM seda_messages WHERE queue = 'work' AND failed IS NULL ORDER BY id"
        ).fetchall()
    connection.close()
    return [msgspec.msgpack.decode(body)["n"] for (body,) in rows]


def test_sigkill_mid_stream_loses_nothing_and_redelivers_only_what_was_in_flight(
    tmp_path: Path,
) -> None:
    db, output = tmp_path / "seda.db", tmp_path / "consumed.jsonl"
    first = start_child(db, output, COUNT)
    try:
        queued = Path(f"{output}.queued")
        wait_until(lambda: queued.exists() or first.poll() is not None, 60, "every send")
        assert first.poll() is None, first.stderr.read().decode() if first.stderr else ""
        wait_until(lambda: len(consumed(output)) >= 200, 60, "the first consumed messages")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)

    before = [int(str(line["n"])) for line in consumed(output)]
    assert 200 <= len(before) < COUNT, "the kill must come mid-stream"
    left = left_in_file(db)
    assert set(before) | set(left) == set(range(COUNT)), "a message was lost by the crash"
    in_flight_done = set(before) & set(left)  # consumed, but its row was not deleted yet
    assert left == sorted(left)  # what is left is still in order

    second = start_child(db, output, 0)
    try:
        wait_until(lambda: len({line["n"] for line in consumed(output)}) == COUNT, 60, "the rest")
        time.sleep(0.2)  # a late duplicate, if there were one, would land now
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(20) == 0, second.stderr.read().decode() if second.stderr else ""

    lines = consumed(output)
    counts = Counter(int(str(line["n"])) for line in lines)
    assert set(counts) == set(range(COUNT))  # 0 lost
    duplicates = sorted(n for n, seen in counts.items() if seen > 1)
    assert all(counts[n] == 2 for n in duplicates)
    assert set(duplicates) == in_flight_done  # exactly the rows in flight at the kill
    after = lines[len(before) :]
    assert all(line["redelivered"] for line in after)  # recovered rows say so
    assert left_in_file(db) == []  # the graceful stop left nothing behind
    print(
        f"\ndurable seda crash test: {COUNT} queued, {len(before)} consumed before SIGKILL, "
        f"{len(left)} left in the file, {len(duplicates)} redelivered duplicate(s), 0 lost"
    )
