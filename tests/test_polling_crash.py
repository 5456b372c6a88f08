"""Crash test: a process running a poll_pages sync is SIGKILLed mid-run; the watermark has not
moved, and the next run delivers every record (none lost)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from eip.stores import SqliteWatermarkStore
from tests.paged_crm import PagedCrm, customers

ROOT = Path(__file__).resolve().parent.parent
RECORDS = 300


def start_child(url: str, db: Path, output: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.polling_child", url, str(db), str(output)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def delivered(output: Path) -> list[int]:
    if not output.exists():
        return []
    return [int(line) for line in output.read_text().splitlines() if line.strip()]


def finished(output: Path) -> bool:
    return Path(f"{output}.done").exists()


def report_of(output: Path) -> dict[str, object]:
    report: dict[str, object] = json.loads(Path(f"{output}.done").read_text())
    return report


async def wait_until(child: subprocess.Popen[bytes], done: object, what: str) -> None:
    for _ in range(3000):  # 30 s
        if done():  # type: ignore[operator]
            return
        if child.poll() is not None:
            stderr = child.stderr.read().decode() if child.stderr else ""
            raise AssertionError(f"the child exited ({child.returncode}) before {what}: {stderr}")
        await asyncio.sleep(0.01)  # the CRM serves from this loop: never block it
    raise AssertionError(f"timed out waiting for {what}")


async def stored_watermark(db: Path) -> object:
    store = SqliteWatermarkStore(db)
    await store.start()
    try:
        checkpoint = await store.get("crm")
    finally:
        await store.stop()
    return None if checkpoint is None else checkpoint.value


async def test_sigkill_mid_run_leaves_the_watermark_and_the_next_run_loses_nothing(
    tmp_path: Path,
) -> None:
    records = customers(RECORDS)
    db = tmp_path / "state" / "watermarks.db"
    async with PagedCrm(records) as crm:
        crm.delay = 0.01
        first_out = tmp_path / "first.txt"
        first = start_child(crm.url, db, first_out)
        try:
            await wait_until(first, lambda: len(delivered(first_out)) >= 40, "40 records")
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        killed_after = delivered(first_out)
        assert 40 <= len(killed_after) < RECORDS, "the kill must land mid-run"
        assert not finished(first_out)
        assert await stored_watermark(db) is None  # the crashed run did not move it

        second_out = tmp_path / "second.txt"
        second = start_child(crm.url, db, second_out)
        try:
            await wait_until(second, lambda: finished(second_out), "the second run's end")
        finally:
            second.wait(20)
        assert second.returncode == 0
        report = report_of(second_out)

    ids = [r["id"] for r in records]
    again = delivered(second_out)
    assert again == ids  # everything again, in order: the watermark was where it had been
    lost = set(ids) - set(killed_after) - set(again)
    assert lost == set()
    assert (report["fetched"], report["completed"], report["advanced"]) == (RECORDS, RECORDS, True)
    assert report["watermark_before"] == "2026-11-01T00:00:00Z"
    assert await stored_watermark(db) == records[-1]["updated_at"]
