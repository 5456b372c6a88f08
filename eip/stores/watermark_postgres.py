"""``PostgresWatermarkStore``: watermarks in PostgreSQL, shared by every instance.

The same row shape and compare-and-set as the SQLite store, on the pool, error mapping and
schema lock of the other PostgreSQL stores (:mod:`eip.stores.postgres`). Instances of a sync
that share the table see one watermark: a run on any instance starts where the last
successful run, on whichever instance, left it.

Needs the ``postgres`` extra (``pip install eip[postgres]``).
"""

from __future__ import annotations

from typing import Any

from eip.stores._common import validate_identifier
from eip.stores.base import TimeSource
from eip.stores.postgres import _PostgresStore, _quote
from eip.stores.watermark import Checkpoint, decode_value, encode_value, stale

__all__ = ["PostgresWatermarkStore"]


class PostgresWatermarkStore(_PostgresStore):
    """Watermarks in table ``table`` (``schema.table`` allowed), from ``dsn`` or ``pool``."""

    def __init__(
        self,
        dsn: str | None = None,
        table: str = "eip_watermarks",
        clock: TimeSource | None = None,
        pool: Any = None,
    ) -> None:
        super().__init__(dsn, pool, clock)
        self.table = validate_identifier(table)
        self._lock_name = self.table
        t = _quote(self.table)
        self._sql_get = f"SELECT value, version, updated_at FROM {t} WHERE name = $1"
        self._sql_insert = (
            f"INSERT INTO {t} (name, value, version, updated_at) VALUES ($1, $2, 1, $3) "
            "ON CONFLICT (name) DO NOTHING"
        )
        self._sql_update = (
            f"UPDATE {t} SET value = $1, version = version + 1, updated_at = $2 "
            "WHERE name = $3 AND version = $4"
        )
        self._sql_set = (
            f"INSERT INTO {t} AS cur (name, value, version, updated_at) VALUES ($1, $2, 1, $3) "
            "ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value, "
            "version = cur.version + 1, updated_at = EXCLUDED.updated_at RETURNING version"
        )
        self._sql_delete = f"DELETE FROM {t} WHERE name = $1"

    def _schema(self) -> list[str]:
        return [
            f"CREATE TABLE IF NOT EXISTS {_quote(self.table)} (name text PRIMARY KEY, "
            "value text NOT NULL, version bigint NOT NULL, updated_at double precision NOT NULL)"
        ]

    async def get(self, name: str) -> Checkpoint | None:
        with self._mapped():
            row = await self.pool.fetchrow(self._sql_get, name)
        if row is None:
            return None
        return Checkpoint(
            name=name,
            value=decode_value(row["value"]),
            version=row["version"],
            updated_at=row["updated_at"],
        )

    async def advance(self, name: str, value: Any, version: int) -> Checkpoint:
        text, now = encode_value(value), self._clock.time()
        with self._mapped():
            if version == 0:
                status = await self.pool.execute(self._sql_insert, name, text, now)
            else:
                status = await self.pool.execute(self._sql_update, text, now, name, version)
        if int(status.rsplit(" ", 1)[-1]) != 1:
            raise stale(name, version)
        return Checkpoint(name=name, value=decode_value(text), version=version + 1, updated_at=now)

    async def set(self, name: str, value: Any) -> Checkpoint:
        text, now = encode_value(value), self._clock.time()
        with self._mapped():
            version = await self.pool.fetchval(self._sql_set, name, text, now)
        return Checkpoint(name=name, value=decode_value(text), version=version, updated_at=now)

    async def delete(self, name: str) -> None:
        with self._mapped():
            await self.pool.execute(self._sql_delete, name)
