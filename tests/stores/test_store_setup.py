"""Construction, start/stop, error mapping and packaging of the stores."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import eip.stores
from eip.stores import (
    PostgresAggregationRepository,
    PostgresIdempotentRepository,
    RedisIdempotentRepository,
    SqliteAggregationRepository,
    SqliteIdempotentRepository,
    StoreError,
)
from tests.stores.backends import PG_DSN, IdempotentBackend

BAD_NAMES = ["x; DROP TABLE users", 'a"b', "1abc", "", "a.b.c", "a-b", "x" * 64]


def test_public_names_are_sorted_and_importable() -> None:
    assert eip.stores.__all__ == sorted(eip.stores.__all__)
    for name in eip.stores.__all__:
        assert getattr(eip.stores, name) is not None
    with pytest.raises(AttributeError):
        _ = eip.stores.NoSuchStore


def test_importing_stores_needs_no_extras() -> None:
    code = "import sys, eip.stores; print('asyncpg' in sys.modules, 'redis' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_missing_extras_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "asyncpg", None)
    monkeypatch.setitem(sys.modules, "redis.asyncio", None)
    with pytest.raises(ImportError, match=r"eip\[postgres\]"):
        PostgresIdempotentRepository(PG_DSN)
    with pytest.raises(ImportError, match=r"eip\[redis\]"):
        RedisIdempotentRepository()


@pytest.mark.parametrize("name", BAD_NAMES)
def test_unsafe_table_names_are_rejected(name: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="invalid"):
        PostgresIdempotentRepository(PG_DSN, table=name)
    with pytest.raises(ValueError, match="invalid"):
        PostgresAggregationRepository(PG_DSN, table_prefix=name)
    with pytest.raises(ValueError, match="invalid"):
        SqliteIdempotentRepository(tmp_path / "x.db", table=name)
    with pytest.raises(ValueError, match="invalid"):
        SqliteAggregationRepository(tmp_path / "x.db", table_prefix=name)


def test_long_table_prefix_is_rejected() -> None:
    with pytest.raises(ValueError, match="too long"):
        PostgresAggregationRepository(PG_DSN, table_prefix="p" * 54)


async def test_unreachable_servers_raise_store_error() -> None:
    pg = PostgresIdempotentRepository("postgresql://postgres@127.0.0.1:1/test")
    with pytest.raises(StoreError) as info:
        await pg.start()
    assert info.value.__cause__ is not None
    redis = RedisIdempotentRepository("redis://127.0.0.1:1/0")
    with pytest.raises(StoreError):
        await redis.start()
    await redis.stop()


async def test_use_before_start_raises_store_error(tmp_path: Path) -> None:
    for repo in (
        SqliteIdempotentRepository(tmp_path / "x.db"),
        PostgresIdempotentRepository(PG_DSN),
        RedisIdempotentRepository(),
    ):
        with pytest.raises(StoreError, match="not started"):
            await repo.add("a")


async def test_sqlite_creates_directories_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "state.db"
    repo = SqliteAggregationRepository(path, synchronous="FULL")
    await repo.start()
    await repo.start()  # idempotent
    await repo.stop()
    await repo.stop()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    with pytest.raises(ValueError, match="synchronous"):
        SqliteIdempotentRepository(path, synchronous="OFF")  # type: ignore[arg-type]


async def test_purge_removes_expired_keys(idem: IdempotentBackend) -> None:
    repo = await idem.make(lease=idem.unit, ttl=4 * idem.unit)
    await repo.add("claimed")
    await repo.confirm("confirmed")
    # Redis expires keys itself: there is never anything left to purge.
    expected = 0 if idem.kind == "redis" else 1
    await idem.advance(2 * idem.unit)
    assert await repo.purge() == expected  # type: ignore[attr-defined]
    await repo.confirm("kept")
    await idem.advance(2.5 * idem.unit)
    assert await repo.purge() == expected  # type: ignore[attr-defined]
    assert await repo.contains("kept")
    assert not await repo.contains("confirmed")
