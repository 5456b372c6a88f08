"""The watermark stores' contract, run against memory, SQLite and PostgreSQL (real ones)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pytest_asyncio import fixture as async_fixture

from eip.clock import ManualClock
from eip.stores import (
    ConcurrentUpdateError,
    MemoryWatermarkStore,
    PostgresWatermarkStore,
    SqliteWatermarkStore,
    StoreError,
    WatermarkStore,
)
from tests.stores.backends import PG_DSN, drop_pg_tables

KINDS = ["memory", "sqlite", "postgres"]


class Stores:
    """Started stores of one kind on one private table, all on one manual clock."""

    def __init__(self, kind: str, tmp_path: Path) -> None:
        self.kind = kind
        self.clock = ManualClock()
        self.table = f"eip_test_wm_{uuid.uuid4().hex[:12]}"
        self.path = tmp_path / "state" / "watermarks.db"
        self.started: list[WatermarkStore] = []
        self._memory: MemoryWatermarkStore | None = None

    async def new(self) -> WatermarkStore:
        """Another store object on the same table (memory: the same store)."""
        store: WatermarkStore
        if self.kind == "memory":
            self._memory = self._memory or MemoryWatermarkStore(clock=self.clock)
            store = self._memory
        elif self.kind == "sqlite":
            store = SqliteWatermarkStore(self.path, table=self.table, clock=self.clock)
        else:
            store = PostgresWatermarkStore(PG_DSN, table=self.table, clock=self.clock)
        await store.start()
        self.started.append(store)
        return store

    async def cleanup(self) -> None:
        for store in self.started:
            await store.stop()
        if self.kind == "postgres":
            await drop_pg_tables([self.table])


@async_fixture(params=KINDS)
async def stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Stores]:
    made = Stores(request.param, tmp_path)
    try:
        yield made
    finally:
        await made.cleanup()


async def test_a_first_value_then_compare_and_set(stores: Stores) -> None:
    store = await stores.new()
    assert await store.get("crm") is None
    first = await store.advance("crm", "2026-11-01T03:00:00+08:00", 0)
    assert (first.value, first.version, first.updated_at) == (
        "2026-11-01T03:00:00+08:00",
        1,
        stores.clock.time(),
    )
    await stores.clock.advance(60)
    second = await store.advance("crm", "2026-11-02T03:00:00+08:00", 1)
    assert (second.version, second.updated_at) == (2, stores.clock.time())
    assert await store.get("crm") == second
    with pytest.raises(ConcurrentUpdateError, match="'crm' was moved by another writer"):
        await store.advance("crm", "2026-11-03T00:00:00Z", 1)  # stale version
    with pytest.raises(ConcurrentUpdateError, match="none stored yet"):
        await store.advance("crm", "x", 0)
    assert (await store.get("crm")) == second


async def test_names_are_independent_and_values_keep_their_json_type(stores: Stores) -> None:
    store = await stores.new()
    await store.advance("seq", 41, 0)
    await store.advance("token", {"delta": "abc", "n": 2}, 0)
    await store.advance("when", datetime(2026, 11, 2, 3, 0, tzinfo=UTC), 0)
    assert (await store.get("seq")).value == 41  # type: ignore[union-attr]
    assert (await store.get("token")).value == {"delta": "abc", "n": 2}  # type: ignore[union-attr]
    assert (await store.get("when")).value == "2026-11-02T03:00:00Z"  # type: ignore[union-attr]


async def test_set_overrides_and_delete_forgets(stores: Stores) -> None:
    store = await stores.new()
    await store.advance("crm", "b", 0)
    forced = await store.set("crm", "a")  # an operator replays from "a"
    assert (forced.value, forced.version) == ("a", 2)
    assert (await store.set("new", 1)).version == 1
    await store.delete("crm")
    assert await store.get("crm") is None
    assert (await store.advance("crm", "c", 0)).version == 1


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_two_store_objects_on_one_table_see_one_watermark(kind: str, tmp_path: Path) -> None:
    stores = Stores(kind, tmp_path)
    try:
        await _shared(stores)
    finally:
        await stores.cleanup()


async def _shared(stores: Stores) -> None:
    one, two = await stores.new(), await stores.new()
    await one.advance("crm", "v1", 0)
    seen = await two.get("crm")
    assert seen is not None
    assert seen.value == "v1"
    await two.advance("crm", "v2", seen.version)
    with pytest.raises(ConcurrentUpdateError):
        await one.advance("crm", "v2-from-one", 1)
    assert (await one.get("crm")).value == "v2"  # type: ignore[union-attr]


async def test_a_value_that_is_not_json_is_a_store_error(stores: Stores) -> None:
    store = await stores.new()
    with pytest.raises(StoreError, match="cannot be stored as JSON"):
        await store.advance("crm", object(), 0)
    assert await store.get("crm") is None
