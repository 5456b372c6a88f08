"""SQLite stores: persistent state in one local file, no server to run.

Durability: the database runs in WAL mode with ``synchronous=NORMAL`` by default. A committed
transaction then survives a crash of the process (even SIGKILL), which is what at-least-once
needs; after a power loss or OS crash the last few transactions may be lost (the file stays
consistent). Pass ``synchronous="FULL"`` to fsync every commit, at a cost per write.

Threading: each repository owns one connection, used only from its own single worker thread;
the async methods hand work to that thread (``run_in_executor``) so the event loop never
blocks on disk. Several processes may share the file: single-statement writes are atomic,
read-modify-write runs in ``BEGIN IMMEDIATE`` (the write lock is taken up front, so two writers
never deadlock upgrading a read lock), and a busy database is waited on (``busy_timeout``).
The file should be on a local disk: SQLite locking over network filesystems is unreliable.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from os import PathLike
from pathlib import Path
from typing import Any, Literal, TypeVar

from eip.stores._common import (
    check_durations,
    conflict,
    copy_group,
    decode_ids,
    default_clock,
    dump_state,
    encode_ids,
    load_state,
    validate_identifier,
)
from eip.stores.base import (
    CompletedGroup,
    OpenGroup,
    StoreError,
    TimeSource,
)

__all__ = ["SqliteAggregationRepository", "SqliteIdempotentRepository"]

_T = TypeVar("_T")
Synchronous = Literal["NORMAL", "FULL"]
_BUSY_TIMEOUT_MS = 5000


@contextmanager
def _immediate(conn: sqlite3.Connection) -> Iterator[None]:
    """A write transaction that takes the write lock at BEGIN (see the module docstring)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


class _SqliteStore:
    """One file, one connection, one worker thread; subclasses add the schema and queries."""

    def __init__(
        self, path: str | PathLike[str], synchronous: Synchronous, clock: TimeSource | None
    ) -> None:
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be 'NORMAL' or 'FULL', got {synchronous!r}")
        self.path = Path(path)
        self.synchronous = synchronous
        self._clock = default_clock(clock)
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None  # touched only in the worker thread

    async def start(self) -> None:
        """Open the file (creating parent directories) and create the tables."""
        if self._executor is not None:
            return
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="eip-sqlite")
        try:
            await self._run(self._open)
        except BaseException:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise

    async def stop(self) -> None:
        """Close the connection and end the worker thread."""
        if self._executor is None:
            return
        try:
            await self._run(self._close)
        finally:
            self._executor.shutdown(wait=False)
            self._executor = None

    async def _run(self, fn: Callable[..., _T], *args: Any) -> _T:
        if self._executor is None:
            raise StoreError(f"{type(self).__name__}({str(self.path)!r}) is not started")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn, *args)
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite store {str(self.path)!r}: {exc}") from exc

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        try:
            conn.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
            self._enable_wal(conn)
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
            with _immediate(conn):
                for statement in self._schema():
                    conn.execute(statement)
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    @staticmethod
    def _enable_wal(conn: sqlite3.Connection) -> None:
        # Switching to WAL needs a moment of exclusive access and may report "locked" at once
        # instead of waiting, when another process opens the file at the same time: retry.
        deadline = time.monotonic() + _BUSY_TIMEOUT_MS / 1000
        while True:
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    @property
    def _db(self) -> sqlite3.Connection:
        assert self._conn is not None, "used before start()"
        return self._conn

    def _schema(self) -> list[str]:
        raise NotImplementedError


class SqliteIdempotentRepository(_SqliteStore):
    """Idempotent repository in a SQLite table.

    A claim is one upsert that succeeds only if the key is absent or expired, so it is atomic
    across tasks and processes (SQLite serialises writers on the file).
    """

    def __init__(
        self,
        path: str | PathLike[str],
        table: str = "eip_idempotent",
        ttl: float | None = None,
        lease: float = 60.0,
        clock: TimeSource | None = None,
        *,
        synchronous: Synchronous = "NORMAL",
    ) -> None:
        check_durations(ttl, lease)
        super().__init__(path, synchronous, clock)
        self.table = validate_identifier(table, qualified=False)
        self.ttl = ttl
        self.lease = lease
        t = self.table
        self._sql_claim = (
            f"INSERT INTO {t} (key, confirmed, expires_at) VALUES (?, 0, ?) "
            "ON CONFLICT (key) DO UPDATE SET confirmed = 0, expires_at = excluded.expires_at "
            f"WHERE {t}.expires_at IS NOT NULL AND {t}.expires_at <= ?"
        )
        self._sql_confirm = (
            f"INSERT INTO {t} (key, confirmed, expires_at) VALUES (?, 1, ?) "
            "ON CONFLICT (key) DO UPDATE SET confirmed = 1, expires_at = excluded.expires_at"
        )
        self._sql_contains = (
            f"SELECT 1 FROM {t} WHERE key = ? AND (expires_at IS NULL OR expires_at > ?)"
        )

    def _schema(self) -> list[str]:
        return [
            f"CREATE TABLE IF NOT EXISTS {self.table} (key TEXT PRIMARY KEY, "
            "confirmed INTEGER NOT NULL, expires_at REAL) WITHOUT ROWID"
        ]

    async def add(self, key: str) -> bool:
        now = self._clock.time()
        return await self._run(self._add, key, now)

    def _add(self, key: str, now: float) -> bool:
        return self._db.execute(self._sql_claim, (key, now + self.lease, now)).rowcount == 1

    async def confirm(self, key: str) -> None:
        expires = None if self.ttl is None else self._clock.time() + self.ttl
        await self._run(self._execute, self._sql_confirm, (key, expires))

    async def remove(self, key: str) -> None:
        await self._run(self._execute, f"DELETE FROM {self.table} WHERE key = ?", (key,))

    async def contains(self, key: str) -> bool:
        return await self._run(self._exists, self._sql_contains, (key, self._clock.time()))

    async def clear(self) -> None:
        await self._run(self._execute, f"DELETE FROM {self.table}", ())

    async def purge(self) -> int:
        """Delete expired keys (a housekeeping job; expired keys are otherwise just ignored)."""
        sql = f"DELETE FROM {self.table} WHERE expires_at <= ?"
        return await self._run(self._execute, sql, (self._clock.time(),))

    def _execute(self, sql: str, params: tuple[Any, ...]) -> int:
        return self._db.execute(sql, params).rowcount

    def _exists(self, sql: str, params: tuple[Any, ...]) -> bool:
        return self._db.execute(sql, params).fetchone() is not None


_OPEN_COLUMNS = "key, state, size, input_ids, created, updated, version"
_COMPLETED_COLUMNS = "id, key, state, size, trigger, completed, redeliveries"


class SqliteAggregationRepository(_SqliteStore):
    """Aggregation repository in three SQLite tables (open, completed, closed keys).

    ``name`` scopes the rows, so several aggregators can share one file and tables.
    """

    def __init__(
        self,
        path: str | PathLike[str],
        name: str = "default",
        clock: TimeSource | None = None,
        *,
        table_prefix: str = "eip_aggregation",
        synchronous: Synchronous = "NORMAL",
        input_retention: float = 7 * 86400,
    ) -> None:
        super().__init__(path, synchronous, clock)
        self.name = name
        prefix = validate_identifier(table_prefix, what="table prefix", qualified=False)
        self._open_t = f"{prefix}_open"
        self._completed_t = f"{prefix}_completed"
        self._closed_t = f"{prefix}_closed"
        self._inputs_t = f"{prefix}_inputs"
        self.input_retention = input_retention
        self._completions = 0

    def _schema(self) -> list[str]:
        return [
            f"CREATE TABLE IF NOT EXISTS {self._open_t} (name TEXT NOT NULL, key TEXT NOT NULL, "
            "state BLOB NOT NULL, size INTEGER NOT NULL, input_ids TEXT NOT NULL, "
            "created REAL NOT NULL, updated REAL NOT NULL, version INTEGER NOT NULL, "
            "PRIMARY KEY (name, key)) WITHOUT ROWID",
            f"CREATE TABLE IF NOT EXISTS {self._completed_t} (name TEXT NOT NULL, "
            "id TEXT NOT NULL, key TEXT NOT NULL, state BLOB NOT NULL, size INTEGER NOT NULL, "
            "trigger TEXT NOT NULL, completed REAL NOT NULL, redeliveries INTEGER NOT NULL, "
            "PRIMARY KEY (name, id)) WITHOUT ROWID",
            f"CREATE TABLE IF NOT EXISTS {self._closed_t} (name TEXT NOT NULL, "
            "key TEXT NOT NULL, closed_at REAL NOT NULL, PRIMARY KEY (name, key)) WITHOUT ROWID",
            f"CREATE TABLE IF NOT EXISTS {self._inputs_t} (name TEXT NOT NULL, "
            "input_id TEXT NOT NULL, completed REAL NOT NULL, PRIMARY KEY (name, input_id)) "
            "WITHOUT ROWID",
        ]

    async def get(self, key: str) -> OpenGroup | None:
        sql = f"SELECT {_OPEN_COLUMNS} FROM {self._open_t} WHERE name = ? AND key = ?"
        rows = await self._run(self._fetch, sql, (self.name, key))
        return _open_group(rows[0]) if rows else None

    async def put(self, group: OpenGroup) -> OpenGroup:
        # Serialize here, not in the worker: the snapshot is the state as it was at the call.
        return await self._run(self._put, group, dump_state(group.state))

    def _put(self, g: OpenGroup, state: bytes) -> OpenGroup:
        values = (state, g.size, encode_ids(g.input_ids).decode(), g.created, g.updated)
        if g.version == 0:
            sql = (
                f"INSERT INTO {self._open_t} (name, {_OPEN_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, 1) ON CONFLICT (name, key) DO NOTHING"
            )
            changed = self._db.execute(sql, (self.name, g.key, *values)).rowcount
        else:
            sql = (
                f"UPDATE {self._open_t} SET state = ?, size = ?, input_ids = ?, created = ?, "
                "updated = ?, version = version + 1 WHERE name = ? AND key = ? AND version = ?"
            )
            changed = self._db.execute(sql, (*values, self.name, g.key, g.version)).rowcount
        if changed != 1:
            raise conflict(g)
        return copy_group(g, version=g.version + 1)

    async def complete(self, group: OpenGroup, completed: CompletedGroup) -> None:
        await self._run(self._complete, group, completed, dump_state(completed.state))

    def _complete(self, g: OpenGroup, c: CompletedGroup, state: bytes) -> None:
        db = self._db
        with _immediate(db):
            if g.version == 0:  # never stored: completing is valid only if still absent
                sql = f"SELECT 1 FROM {self._open_t} WHERE name = ? AND key = ?"
                removed = db.execute(sql, (self.name, g.key)).fetchone() is None
            else:
                sql = f"DELETE FROM {self._open_t} WHERE name = ? AND key = ? AND version = ?"
                removed = db.execute(sql, (self.name, g.key, g.version)).rowcount == 1
            if not removed:
                raise conflict(g)
            sql = f"INSERT INTO {self._completed_t} VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            row = (self.name, c.id, c.key, state, c.size, c.trigger, c.completed)
            try:
                db.execute(sql, (*row, c.redeliveries))
            except sqlite3.IntegrityError as exc:
                raise StoreError(f"completed group id {c.id!r} already exists") from exc
            if g.input_ids:
                sql = f"INSERT OR IGNORE INTO {self._inputs_t} VALUES (?, ?, ?)"
                db.executemany(sql, [(self.name, i, c.completed) for i in g.input_ids])
            self._completions += 1
            if self._completions % 1000 == 0:
                sql = f"DELETE FROM {self._inputs_t} WHERE name = ? AND completed < ?"
                db.execute(sql, (self.name, self._clock.time() - self.input_retention))

    async def completed_input(self, input_id: str) -> bool:
        sql = f"SELECT 1 FROM {self._inputs_t} WHERE name = ? AND input_id = ?"
        return bool(await self._run(self._fetch, sql, (self.name, input_id)))

    async def open_groups(self) -> list[OpenGroup]:
        sql = f"SELECT {_OPEN_COLUMNS} FROM {self._open_t} WHERE name = ? ORDER BY created, key"
        return [_open_group(row) for row in await self._run(self._fetch, sql, (self.name,))]

    async def confirm(self, completed_id: str) -> None:
        sql = f"DELETE FROM {self._completed_t} WHERE name = ? AND id = ?"
        await self._run(self._fetch, sql, (self.name, completed_id))

    async def unconfirmed(self) -> list[CompletedGroup]:
        sql = (
            f"SELECT {_COMPLETED_COLUMNS} FROM {self._completed_t} WHERE name = ? "
            "ORDER BY completed, id"
        )
        rows = await self._run(self._fetch, sql, (self.name,))
        return [_completed_group(row) for row in rows]

    async def mark_redelivered(self, completed_id: str) -> int:
        sql = (
            f"UPDATE {self._completed_t} SET redeliveries = redeliveries + 1 "
            "WHERE name = ? AND id = ? RETURNING redeliveries"
        )
        rows = await self._run(self._fetch, sql, (self.name, completed_id))
        if not rows:
            raise StoreError(f"no unconfirmed completed group {completed_id!r}")
        return int(rows[0][0])

    async def close_key(self, key: str) -> None:
        sql = f"INSERT INTO {self._closed_t} VALUES (?, ?, ?) ON CONFLICT DO NOTHING"
        await self._run(self._fetch, sql, (self.name, key, self._clock.time()))

    async def is_closed(self, key: str) -> bool:
        sql = f"SELECT 1 FROM {self._closed_t} WHERE name = ? AND key = ?"
        return bool(await self._run(self._fetch, sql, (self.name, key)))

    def _fetch(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        # fetchall, not fetchone: an unfinished statement would keep its transaction open.
        return self._db.execute(sql, params).fetchall()


def _open_group(row: Any) -> OpenGroup:
    fields = dict(zip(_OPEN_COLUMNS.split(", "), row, strict=True))
    return OpenGroup(
        **{**fields, "state": load_state(row[1]), "input_ids": decode_ids(fields["input_ids"])}
    )


def _completed_group(row: Any) -> CompletedGroup:
    fields = dict(zip(_COMPLETED_COLUMNS.split(", "), row, strict=True))
    return CompletedGroup(**{**fields, "state": load_state(row[2])})
