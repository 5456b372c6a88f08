"""Crash test: an aggregating process is SIGKILLed mid-stream; a fresh one finishes the job.

Every input must appear in exactly one completed group. A completed group may be delivered
twice (the crash hit between its output and its confirmation), but no input may be lost or
land in two different groups.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INPUTS = 1000
GROUPS = 200


def start_child(inbox: Path, db: Path, output: Path) -> subprocess.Popen[bytes]:
    ready = Path(str(output) + ".ready")
    ready.unlink(missing_ok=True)
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.aggregator_child", str(inbox), str(db), str(output)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 20
    while not ready.exists():
        assert child.poll() is None, child.stderr.read().decode() if child.stderr else ""
        assert time.monotonic() < deadline, "child did not start"
        time.sleep(0.02)
    return child


def read_output(output: Path) -> list[dict[str, object]]:
    if not output.exists():
        return []
    return [json.loads(line) for line in output.read_text().splitlines() if line.strip()]


def wait_until(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_sigkill_mid_stream_loses_nothing(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    db = tmp_path / "aggregation.db"
    output = tmp_path / "groups.jsonl"
    for n in range(INPUTS):
        (inbox / f"in-{n:05d}.json").write_text(
            json.dumps({"id": f"m{n}", "group": f"g{n % GROUPS}"})
        )

    first = start_child(inbox, db, output)
    try:
        # Groups complete only in the last fifth of the stream; kill once some have.
        wait_until(lambda: len(read_output(output)) >= 20, 60, "the first completed groups")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    killed_at = len(read_output(output))
    assert killed_at < GROUPS, "the crash must happen mid-stream"

    second = start_child(inbox, db, output)
    try:

        def finished() -> bool:
            remaining = list(inbox.glob("*.json"))
            groups = {line["group"] for line in read_output(output)}
            return not remaining and len({str(g) for g in groups}) >= GROUPS

        wait_until(finished, 90, "the second process to finish")
        time.sleep(0.5)  # let a last redelivery, if any, land
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(20) == 0

    lines = read_output(output)
    groups_of: dict[str, set[str]] = defaultdict(set)
    members: dict[str, set[str]] = defaultdict(set)
    for line in lines:
        group = str(line["group"])
        for input_id in line["ids"]:  # type: ignore[attr-defined]
            groups_of[input_id].add(group)
            members[group].add(input_id)
    assert len(groups_of) == INPUTS, f"lost inputs: {INPUTS - len(groups_of)}"
    in_two_groups = {i: g for i, g in groups_of.items() if len(g) != 1}
    detail = [(i, [sorted(members[g]) for g in gs]) for i, gs in list(in_two_groups.items())[:3]]
    assert not in_two_groups, f"inputs in more than one group: {detail}"
    assert len(members) == GROUPS
    assert all(len(ids) == 5 for ids in members.values())
    duplicates = len(lines) - len(members)
    print(
        f"\ncrash test: killed after {killed_at} groups; {len(lines)} group deliveries, "
        f"{duplicates} redelivered duplicate(s), 0 lost"
    )
