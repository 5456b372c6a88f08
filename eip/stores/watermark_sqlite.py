"""``SqliteWatermarkStore``: watermarks in a local SQLite file (the default store).

One row per name (``name``, ``value`` as JSON text, ``version``, ``updated_at``), on the
connection, worker thread and durability settings of the other SQLite stores
(:mod:`eip.stores.sqlite`: WAL, ``synchronous=NORMAL``, so a committed advance survives a
SIGKILL). The compare-and-set is one statement: an ``INSERT ... ON CONFLICT DO NOTHING`` for
the first value, an ``UPDATE ... WHERE version = ?`` after that.
"""

from __future__ import annotations

from os import PathLike
from typing import Any

from eip.stores._common import validate_identifier
from eip.stores.base import TimeSource
from eip.stores.sqlite import Synchronous, _SqliteStore
from eip.stores.watermark import Checkpoint, decode_value, encode_value, stale

__all__ = ["SqliteWatermarkStore"]


class SqliteWatermarkStore(_SqliteStore):
    """Watermarks in table ``table`` of the SQLite file ``path`` (created with its folders)."""

    def __init__(
        self,
        path: str | PathLike[str],
        table: str = "eip_watermarks",
        clock: TimeSource | None = None,
        *,
        synchronous: Synchronous = "NORMAL",
    ) -> None:
        super().__init__(path, synchronous, clock)
        self.table = validate_identifier(table, qualified=False)
        t = self.table
        self._sql_get = f"SELECT value, version, updated_at FROM {t} WHERE name = ?"
        self._sql_insert = (
            f"INSERT INTO {t} (name, value, version, updated_at) VALUES (?, ?, 1, ?) "
            "ON CONFLICT (name) DO NOTHING"
        )
        self._sql_update = (
            f"UPDATE {t} SET value = ?, version = version + 1, updated_at = ? "
            "WHERE name = ? AND version = ?"
        )
        self._sql_set = (
            f"INSERT INTO {t} (name, value, version, updated_at) VALUES (?, ?, 1, ?) "
            "ON CONFLICT (name) DO UPDATE SET value = excluded.value, "
            f"version = {t}.version + 1, updated_at = excluded.updated_at RETURNING version"
        )

    def _schema(self) -> list[str]:
        return [
            f"CREATE TABLE IF NOT EXISTS {self.table} (name TEXT PRIMARY KEY, "
            "value TEXT NOT NULL, version INTEGER NOT NULL, updated_at REAL NOT NULL) "
            "WITHOUT ROWID"
        ]

    async def get(self, name: str) -> Checkpoint | None:
        rows = await self._run(self._fetch, self._sql_get, (name,))
        if not rows:
            return None
        value, version, updated_at = rows[0]
        return Checkpoint(
            name=name, value=decode_value(value), version=version, updated_at=updated_at
        )

    async def advance(self, name: str, value: Any, version: int) -> Checkpoint:
        text, now = encode_value(value), self._clock.time()
        if version == 0:
            changed = await self._run(self._count, self._sql_insert, (name, text, now))
        else:
            changed = await self._run(self._count, self._sql_update, (text, now, name, version))
        if changed != 1:
            raise stale(name, version)
        return Checkpoint(name=name, value=decode_value(text), version=version + 1, updated_at=now)

    async def set(self, name: str, value: Any) -> Checkpoint:
        text, now = encode_value(value), self._clock.time()
        rows = await self._run(self._fetch, self._sql_set, (name, text, now))
        return Checkpoint(name=name, value=decode_value(text), version=rows[0][0], updated_at=now)

    async def delete(self, name: str) -> None:
        await self._run(self._count, f"DELETE FROM {self.table} WHERE name = ?", (name,))

    def _fetch(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        return self._db.execute(sql, params).fetchall()

    def _count(self, sql: str, params: tuple[Any, ...]) -> int:
        return self._db.execute(sql, params).rowcount
