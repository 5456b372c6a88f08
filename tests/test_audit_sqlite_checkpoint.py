"""The SQLite audit store's WAL checkpoints: made by their own thread, not by a commit."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from eip.audit import sqlite_store
from eip.audit.record import Entry, entry
from eip.audit.sqlite_store import SqliteAuditStore


def batch(first: int, size: int) -> list[Entry]:
    return [entry("r", f"ex-{first + n}", "completed", key=f"k{n % 3}") for n in range(size)]


async def test_the_wal_is_checkpointed_off_the_commit_and_the_chain_holds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_store, "CHECKPOINT_BYTES", 64 * 1024)
    path = tmp_path / "audit.db"
    store = SqliteAuditStore(path)
    await store.start()
    try:
        (autocheckpoint,) = await store._run(
            lambda: store._db.execute("PRAGMA wal_autocheckpoint").fetchone()
        )
        assert autocheckpoint == 0  # a commit never checkpoints
        empty = path.stat().st_size
        for n in range(40):
            await store.append(batch(n * 50, 50))
        assert store._checkpoint is not None  # asked for at least once
        await asyncio.wrap_future(store._checkpoint)
        assert path.stat().st_size > empty + 64 * 1024  # the records reached the file itself
        report = await store.verify()
        assert report.ok
        assert report.records == 2000
    finally:
        await store.stop()
    assert store._checkpoint_conn is None  # closed by stop(), in its own thread
    with sqlite3.connect(path) as db:  # everything is in the file, the chain intact
        (rows,) = db.execute("SELECT count(*) FROM eip_audit_records").fetchone()
    assert rows == 2000
    again = SqliteAuditStore(path)
    await again.start()
    try:
        await again.append(batch(2000, 10))
        report = await again.verify()
        assert report.ok
        assert report.records == 2010
    finally:
        await again.stop()


async def test_a_store_that_never_fills_the_wal_asks_for_no_checkpoint(tmp_path: Path) -> None:
    store = SqliteAuditStore(tmp_path / "audit.db")
    await store.start()
    try:
        await store.append(batch(0, 10))
        assert store._checkpoint is None
    finally:
        await store.stop()
