"""The SQLite audit store: one local file, one chain per table.

Each record is a row: ``seq`` (its number in the chain, the primary key), ``key`` (the
business key, indexed where it is set), ``record`` (the sealed canonical JSON, the authority)
and ``hash``; ``verify`` checks that ``key`` still says what the record says. Every bound
column costs on each insert, so the other fields are read from ``record`` when searched
(``json_extract``; a search by key uses the index first). Plain SQL reads it::

    SELECT json_extract(record, '$.time'), json_extract(record, '$.outcome')
    FROM eip_audit WHERE key = '4711'

``<table>_head`` keeps the chain's last number and hash, so records deleted at the end are
caught too.

A batch is one ``BEGIN IMMEDIATE`` transaction that reads the head, seals the batch after it
and writes it: several processes on one host can share the file, their appends take turns on
SQLite's write lock and the chain stays one line. Durability as for the other SQLite stores:
WAL with ``synchronous=NORMAL`` survives a crash of the process (even SIGKILL); ``FULL``
survives a power loss too, at an fsync per batch. The connection lives in one worker thread.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from os import PathLike
from pathlib import Path
from typing import Any, Literal, TypeVar

from eip.audit.record import GENESIS, AuditRecord, Entry, decode_record, seal
from eip.audit.store import DEFAULT_CHAIN, DEFAULT_TABLE, AuditQuery, AuditStore
from eip.audit.verify import ChainWalk, StoredRow, VerifyReport
from eip.stores._common import validate_identifier
from eip.stores.base import StoreError

__all__ = ["SqliteAuditStore"]

_T = TypeVar("_T")
_BUSY_TIMEOUT_MS = 5000
#: The columns kept beside the sealed record.
_COLUMNS = ("key",)


class SqliteAuditStore(AuditStore):
    """Audit records in a SQLite table; ``create=False`` opens an existing one only (the
    command line reads stores, it does not make them)."""

    def __init__(
        self,
        path: str | PathLike[str],
        *,
        table: str = DEFAULT_TABLE,
        chain: str = DEFAULT_CHAIN,
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
        create: bool = True,
    ) -> None:
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be 'NORMAL' or 'FULL', got {synchronous!r}")
        self.path = Path(path)
        self.table = validate_identifier(table, qualified=False)
        self.chain = chain
        self.synchronous = synchronous
        self.create = create
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None  # used in the worker thread only
        t = self.table
        self._sql_head = f"SELECT chain, seq, hash FROM {t}_head"
        self._sql_insert = f"INSERT INTO {t} (seq, key, record, hash) VALUES (?, ?, ?, ?)"
        self._sql_set_head = (
            f"INSERT INTO {t}_head (chain, seq, hash) VALUES (?, ?, ?) "
            "ON CONFLICT (chain) DO UPDATE SET seq = excluded.seq, hash = excluded.hash"
        )

    @property
    def name(self) -> str:
        suffix = "" if self.table == DEFAULT_TABLE else f" (table {self.table})"
        return f"sqlite:{self.path}{suffix}"

    async def start(self) -> None:
        if self._executor is not None:
            return
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="eip-audit-sqlite")
        try:
            await self._run(self._open)
        except BaseException:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise

    async def stop(self) -> None:
        if self._executor is None:
            return
        try:
            await self._run(self._close)
        finally:
            self._executor.shutdown(wait=False)
            self._executor = None

    async def append(self, entries: Sequence[Entry]) -> None:
        await self._run(self._append, entries)

    async def query(self, query: AuditQuery) -> list[AuditRecord]:
        return await self._run(self._query, query)

    async def verify(self) -> VerifyReport:
        return await self._run(self._verify)

    # -- in the worker thread --------------------------------------------------------------
    async def _run(self, fn: Callable[..., _T], *args: Any) -> _T:
        if self._executor is None:
            raise StoreError(f"audit store {self.name} is not started")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn, *args)
        except sqlite3.Error as exc:
            raise StoreError(f"audit store {self.name}: {exc}") from exc

    def _open(self) -> None:
        if not self.create and not self.path.is_file():
            raise StoreError(f"audit store {self.name}: no such file")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        try:
            conn.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
            if self.create:
                self._create(conn)
            else:
                self._check_exists(conn)
            self._check_chain(conn)
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def _create(self, conn: sqlite3.Connection) -> None:
        t = self.table
        with _immediate(conn):
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {t} (seq INTEGER PRIMARY KEY, key TEXT, "
                "record TEXT NOT NULL, hash TEXT NOT NULL)"
            )
            conn.execute(
                f"CREATE INDEX IF NOT EXISTS {t}_by_key ON {t} (key) WHERE key IS NOT NULL"
            )
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {t}_head (chain TEXT PRIMARY KEY, "
                "seq INTEGER NOT NULL, hash TEXT NOT NULL)"
            )

    def _check_exists(self, conn: sqlite3.Connection) -> None:
        sql = "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN (?, ?)"
        (found,) = conn.execute(sql, (self.table, f"{self.table}_head")).fetchone()
        if found != 2:
            raise StoreError(f"audit store {self.name}: no audit table {self.table!r} in it")

    def _check_chain(self, conn: sqlite3.Connection) -> None:
        """One chain per table: a table that another chain writes to is refused."""
        chains = [row[0] for row in conn.execute(self._sql_head)]
        others = [c for c in chains if c != self.chain]
        if others and self.create:
            raise StoreError(
                f"audit store {self.name} holds chain {others[0]!r}, not {self.chain!r}: a "
                "SQLite table holds one chain (give this chain its own table)"
            )

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    @property
    def _db(self) -> sqlite3.Connection:
        assert self._conn is not None, "used before start()"
        return self._conn

    def _append(self, entries: Sequence[Entry]) -> None:
        db = self._db
        with _immediate(db):
            head = db.execute(self._sql_head).fetchone()
            seq, prev = (head[1], head[2]) if head is not None else (0, GENESIS)
            sealed = seal(entries, self.chain, seq, prev)
            try:
                db.executemany(
                    self._sql_insert,
                    [(c.seq, c.key, data.decode(), digest) for c, data, digest in sealed],
                )
            except sqlite3.IntegrityError as exc:
                raise StoreError(
                    f"audit store {self.name}: record {seq + 1} exists beyond the chain head "
                    f"({exc}); the head was edited: run 'eip audit verify'"
                ) from exc
            last, _, digest = sealed[-1]
            db.execute(self._sql_set_head, (self.chain, last.seq, digest))

    def _query(self, query: AuditQuery) -> list[AuditRecord]:
        where, params = _where(query)
        sql = f"SELECT record, hash FROM {self.table}{where} ORDER BY seq"
        if query.limit is not None:
            sql += f" LIMIT {int(query.limit)}"
        found = []
        for content, digest in self._db.execute(sql, params).fetchall():
            record = decode_record(content)
            record.hash = digest
            found.append(record)
        return found

    def _verify(self) -> VerifyReport:
        walk = ChainWalk()
        sql = f"SELECT seq, {', '.join(_COLUMNS)}, record, hash FROM {self.table} ORDER BY seq"
        walk.add_all(_rows(self._db.execute(sql)))
        heads = {chain: (seq, digest) for chain, seq, digest in self._db.execute(self._sql_head)}
        return walk.finish(heads)


def _rows(cursor: sqlite3.Cursor) -> Iterator[StoredRow]:
    for seq, *columns, content, digest in cursor:
        data = content.encode() if isinstance(content, str) else bytes(content)
        yield StoredRow(f"row {seq}", data, digest, seq, dict(zip(_COLUMNS, columns, strict=True)))


def _where(query: AuditQuery) -> tuple[str, list[Any]]:
    terms: list[str] = []
    params: list[Any] = []
    for column, value, op in (
        ("key", query.key, "="),
        ("json_extract(record, '$.route')", query.route, "="),
        ("json_extract(record, '$.outcome')", query.outcome, "="),
        ("json_extract(record, '$.time')", query.since, ">="),
        ("json_extract(record, '$.time')", query.until, "<"),
    ):
        if value is not None:
            terms.append(f"{column} {op} ?")
            params.append(value)
    return (" WHERE " + " AND ".join(terms) if terms else ""), params


class _immediate:
    """A write transaction that takes SQLite's write lock at BEGIN."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: object, exc: object, tb: object) -> None:
        self.conn.execute("ROLLBACK" if kind is not None else "COMMIT")
