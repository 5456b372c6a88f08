"""PostgreSQL stores (asyncpg): shared, durable state for several engine instances.

Every guarantee rests on a primary key and single statements, so instances need no
coordination beyond the database: a claim is one ``INSERT ... ON CONFLICT DO UPDATE ... WHERE
<expired> RETURNING``, an update names the version it read. Table names cannot be query
parameters; they are checked against a strict identifier pattern and quoted, never taken raw.

Time: leases and ttl are computed from the repository's clock (default: this host's clock), not
the database's ``now()``, so tests can drive them with a ManualClock. Instances sharing a table
should keep their clocks in sync (NTP); a skew of a few seconds only shifts lease expiry.

Needs the ``postgres`` extra (``pip install eip[postgres]``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from importlib import import_module
from types import ModuleType
from typing import Any

from eip.stores._common import (
    check_durations,
    conflict,
    copy_group,
    default_clock,
    dump_state,
    load_state,
    validate_identifier,
)
from eip.stores.base import (
    CompletedGroup,
    OpenGroup,
    StoreError,
    TimeSource,
)

__all__ = ["PostgresAggregationRepository", "PostgresIdempotentRepository"]


def _import_asyncpg(who: str) -> ModuleType:
    try:
        return import_module("asyncpg")
    except ImportError as exc:
        raise ImportError(f"{who} needs asyncpg: install eip[postgres]") from exc


def _quote(identifier: str) -> str:
    """``schema.table`` -> ``"schema"."table"`` (validated first, so no quote can appear)."""
    return ".".join(f'"{part}"' for part in identifier.split("."))


def _count(status: str) -> int:
    """Rows affected, from a command status such as ``UPDATE 1`` or ``INSERT 0 1``."""
    return int(status.rsplit(" ", 1)[-1])


class _PostgresStore:
    """Pool ownership, schema creation and error mapping shared by both repositories."""

    def __init__(self, dsn: str | None, pool: Any, clock: TimeSource | None) -> None:
        self._asyncpg = _import_asyncpg(type(self).__name__)
        if dsn is None and pool is None:
            raise ValueError("give a dsn or a pool")
        self.dsn = dsn
        self._pool: Any = pool
        self._owns_pool = pool is None
        self._clock = default_clock(clock)
        self._lock_name = ""  # set by subclasses: serialises concurrent schema creation

    async def start(self) -> None:
        """Create the pool (unless one was given) and the tables."""
        with self._mapped():
            if self._pool is None:
                self._pool = await self._asyncpg.create_pool(self.dsn, min_size=1, max_size=10)
            async with self._pool.acquire() as conn, conn.transaction():
                # CREATE TABLE IF NOT EXISTS races with itself across sessions (duplicate
                # pg_type row); an advisory lock on the table name makes starts take turns.
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", self._lock_name)
                for statement in self._schema():
                    await conn.execute(statement)

    async def stop(self) -> None:
        """Close the pool if this repository created it."""
        if self._owns_pool and self._pool is not None:
            pool, self._pool = self._pool, None
            with self._mapped():
                await pool.close()

    @property
    def pool(self) -> Any:
        if self._pool is None:
            raise StoreError(f"{type(self).__name__} is not started")
        return self._pool

    @contextmanager
    def _mapped(self) -> Iterator[None]:
        """Map driver and socket errors to StoreError (ours pass through unchanged)."""
        pg = self._asyncpg
        try:
            yield
        except StoreError:
            raise
        except (pg.PostgresError, pg.InterfaceError, OSError, TimeoutError) as exc:
            raise StoreError(f"PostgreSQL store: {type(exc).__name__}: {exc}") from exc

    def _schema(self) -> list[str]:
        raise NotImplementedError


class PostgresIdempotentRepository(_PostgresStore):
    """Idempotent repository in a PostgreSQL table, safe across instances."""

    def __init__(
        self,
        dsn: str | None = None,
        table: str = "eip_idempotent",
        ttl: float | None = None,
        lease: float = 60.0,
        clock: TimeSource | None = None,
        pool: Any = None,
    ) -> None:
        check_durations(ttl, lease)
        super().__init__(dsn, pool, clock)
        self.table = validate_identifier(table)
        self.ttl = ttl
        self.lease = lease
        self._lock_name = self.table
        t = _quote(self.table)
        self._sql_claim = (
            f"INSERT INTO {t} AS cur (key, confirmed, expires_at) VALUES ($1, false, $2) "
            "ON CONFLICT (key) DO UPDATE SET confirmed = false, expires_at = EXCLUDED.expires_at "
            "WHERE cur.expires_at IS NOT NULL AND cur.expires_at <= $3 RETURNING key"
        )
        self._sql_confirm = (
            f"INSERT INTO {t} (key, confirmed, expires_at) VALUES ($1, true, $2) "
            "ON CONFLICT (key) DO UPDATE SET confirmed = true, expires_at = EXCLUDED.expires_at"
        )
        self._sql_contains = (
            f"SELECT 1 FROM {t} WHERE key = $1 AND (expires_at IS NULL OR expires_at > $2)"
        )
        self._sql_remove = f"DELETE FROM {t} WHERE key = $1"
        self._sql_clear = f"DELETE FROM {t}"
        self._sql_purge = f"DELETE FROM {t} WHERE expires_at <= $1"

    def _schema(self) -> list[str]:
        return [
            f"CREATE TABLE IF NOT EXISTS {_quote(self.table)} (key text PRIMARY KEY, "
            "confirmed boolean NOT NULL, expires_at double precision)"
        ]

    async def add(self, key: str) -> bool:
        now = self._clock.time()
        with self._mapped():
            return await self.pool.fetchval(self._sql_claim, key, now + self.lease, now) is not None

    async def confirm(self, key: str) -> None:
        expires = None if self.ttl is None else self._clock.time() + self.ttl
        with self._mapped():
            await self.pool.execute(self._sql_confirm, key, expires)

    async def remove(self, key: str) -> None:
        with self._mapped():
            await self.pool.execute(self._sql_remove, key)

    async def contains(self, key: str) -> bool:
        with self._mapped():
            found = await self.pool.fetchval(self._sql_contains, key, self._clock.time())
        return found is not None

    async def clear(self) -> None:
        with self._mapped():
            await self.pool.execute(self._sql_clear)

    async def purge(self) -> int:
        """Delete expired keys (a housekeeping job; expired keys are otherwise just ignored)."""
        with self._mapped():
            return _count(await self.pool.execute(self._sql_purge, self._clock.time()))


_OPEN_COLUMNS = "key, state, size, input_ids, created, updated, version"
_COMPLETED_COLUMNS = "id, key, state, size, trigger, completed, redeliveries"


class PostgresAggregationRepository(_PostgresStore):
    """Aggregation repository in three tables ``<prefix>_open``, ``_completed``, ``_closed``.

    ``name`` scopes the rows, so several aggregators can share the tables.
    """

    def __init__(
        self,
        dsn: str | None = None,
        name: str = "default",
        table_prefix: str = "eip_aggregation",
        clock: TimeSource | None = None,
        pool: Any = None,
        input_retention: float = 7 * 86400,
    ) -> None:
        super().__init__(dsn, pool, clock)
        self.name = name
        prefix = validate_identifier(table_prefix, what="table prefix")
        if len(prefix.rsplit(".", 1)[-1]) > 53:  # room for "_completed" within 63 chars
            raise ValueError(f"table prefix {table_prefix!r} is too long (max 53 characters)")
        self.table_prefix = prefix
        self._lock_name = prefix
        self._open_t = _quote(f"{prefix}_open")
        self._completed_t = _quote(f"{prefix}_completed")
        self._closed_t = _quote(f"{prefix}_closed")
        self._inputs_t = _quote(f"{prefix}_inputs")
        self.input_retention = input_retention
        self._completions = 0

    def _schema(self) -> list[str]:
        return [
            f"CREATE TABLE IF NOT EXISTS {self._open_t} (name text NOT NULL, key text NOT NULL, "
            "state bytea NOT NULL, size integer NOT NULL, input_ids text[] NOT NULL, "
            "created double precision NOT NULL, updated double precision NOT NULL, "
            "version bigint NOT NULL, PRIMARY KEY (name, key))",
            f"CREATE TABLE IF NOT EXISTS {self._completed_t} (name text NOT NULL, "
            "id text NOT NULL, key text NOT NULL, state bytea NOT NULL, size integer NOT NULL, "
            "trigger text NOT NULL, completed double precision NOT NULL, "
            "redeliveries integer NOT NULL, PRIMARY KEY (name, id))",
            f"CREATE TABLE IF NOT EXISTS {self._closed_t} (name text NOT NULL, "
            "key text NOT NULL, closed_at double precision NOT NULL, PRIMARY KEY (name, key))",
            f"CREATE TABLE IF NOT EXISTS {self._inputs_t} (name text NOT NULL, "
            "input_id text NOT NULL, completed double precision NOT NULL, "
            "PRIMARY KEY (name, input_id))",
        ]

    async def get(self, key: str) -> OpenGroup | None:
        sql = f"SELECT {_OPEN_COLUMNS} FROM {self._open_t} WHERE name = $1 AND key = $2"
        with self._mapped():
            row = await self.pool.fetchrow(sql, self.name, key)
        return None if row is None else _open_group(row)

    async def put(self, group: OpenGroup) -> OpenGroup:
        g = group
        values = (dump_state(g.state), g.size, list(g.input_ids), g.created, g.updated)
        if g.version == 0:
            sql = (
                f"INSERT INTO {self._open_t} (name, {_OPEN_COLUMNS}) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, 1) ON CONFLICT (name, key) DO NOTHING"
            )
            args: tuple[Any, ...] = (self.name, g.key, *values)
        else:
            sql = (
                f"UPDATE {self._open_t} SET state = $1, size = $2, input_ids = $3, "
                "created = $4, updated = $5, version = version + 1 "
                "WHERE name = $6 AND key = $7 AND version = $8"
            )
            args = (*values, self.name, g.key, g.version)
        with self._mapped():
            if _count(await self.pool.execute(sql, *args)) != 1:
                raise conflict(g)
        return copy_group(g, version=g.version + 1)

    async def complete(self, group: OpenGroup, completed: CompletedGroup) -> None:
        c = completed
        state = dump_state(c.state)
        with self._mapped():
            async with self.pool.acquire() as conn, conn.transaction():
                if group.version == 0:  # never stored: valid only while the key is absent
                    sql = f"SELECT 1 FROM {self._open_t} WHERE name = $1 AND key = $2"
                    removed = await conn.fetchval(sql, self.name, group.key) is None
                else:
                    sql = (
                        f"DELETE FROM {self._open_t} WHERE name = $1 AND key = $2 AND version = $3"
                    )
                    status = await conn.execute(sql, self.name, group.key, group.version)
                    removed = _count(status) == 1
                if not removed:
                    raise conflict(group)
                sql = (
                    f"INSERT INTO {self._completed_t} (name, {_COMPLETED_COLUMNS}) "
                    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
                )
                row = (c.id, c.key, state, c.size, c.trigger, c.completed, c.redeliveries)
                try:
                    await conn.execute(sql, self.name, *row)
                except self._asyncpg.UniqueViolationError as exc:
                    raise StoreError(f"completed group id {c.id!r} already exists") from exc
                if group.input_ids:
                    sql = (
                        f"INSERT INTO {self._inputs_t} (name, input_id, completed) "
                        "VALUES ($1, $2, $3) ON CONFLICT DO NOTHING"
                    )
                    await conn.executemany(
                        sql, [(self.name, i, c.completed) for i in group.input_ids]
                    )
                self._completions += 1
                if self._completions % 1000 == 0:
                    sql = f"DELETE FROM {self._inputs_t} WHERE name = $1 AND completed < $2"
                    await conn.execute(sql, self.name, self._clock.time() - self.input_retention)

    async def completed_input(self, input_id: str) -> bool:
        sql = f"SELECT 1 FROM {self._inputs_t} WHERE name = $1 AND input_id = $2"
        with self._mapped():
            return await self.pool.fetchval(sql, self.name, input_id) is not None

    async def open_groups(self) -> list[OpenGroup]:
        sql = f"SELECT {_OPEN_COLUMNS} FROM {self._open_t} WHERE name = $1 ORDER BY created, key"
        with self._mapped():
            rows = await self.pool.fetch(sql, self.name)
        return [_open_group(row) for row in rows]

    async def confirm(self, completed_id: str) -> None:
        sql = f"DELETE FROM {self._completed_t} WHERE name = $1 AND id = $2"
        with self._mapped():
            await self.pool.execute(sql, self.name, completed_id)

    async def unconfirmed(self) -> list[CompletedGroup]:
        sql = (
            f"SELECT {_COMPLETED_COLUMNS} FROM {self._completed_t} WHERE name = $1 "
            "ORDER BY completed, id"
        )
        with self._mapped():
            rows = await self.pool.fetch(sql, self.name)
        return [_completed_group(row) for row in rows]

    async def mark_redelivered(self, completed_id: str) -> int:
        sql = (
            f"UPDATE {self._completed_t} SET redeliveries = redeliveries + 1 "
            "WHERE name = $1 AND id = $2 RETURNING redeliveries"
        )
        with self._mapped():
            count = await self.pool.fetchval(sql, self.name, completed_id)
        if count is None:
            raise StoreError(f"no unconfirmed completed group {completed_id!r}")
        return int(count)

    async def close_key(self, key: str) -> None:
        sql = (
            f"INSERT INTO {self._closed_t} (name, key, closed_at) VALUES ($1, $2, $3) "
            "ON CONFLICT DO NOTHING"
        )
        with self._mapped():
            await self.pool.execute(sql, self.name, key, self._clock.time())

    async def is_closed(self, key: str) -> bool:
        sql = f"SELECT 1 FROM {self._closed_t} WHERE name = $1 AND key = $2"
        with self._mapped():
            return await self.pool.fetchval(sql, self.name, key) is not None


def _open_group(row: Any) -> OpenGroup:
    return OpenGroup(
        key=row["key"],
        state=load_state(row["state"]),
        size=row["size"],
        input_ids=list(row["input_ids"]),
        created=row["created"],
        updated=row["updated"],
        version=row["version"],
    )


def _completed_group(row: Any) -> CompletedGroup:
    return CompletedGroup(**{**dict(row), "state": load_state(row["state"])})
