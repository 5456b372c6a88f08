"""The SQLite audit store: one local file, one chain per table, a row per batch.

A row per record costs a B-tree insert per record, which measured as the largest part of
the audit's cost; so each batch the writer commits is one row of ``<table>``: ``last`` (the
number of its last record, the primary key), ``first``, ``time`` (when it was sealed: every
record of the batch has that time) and ``records``, a JSON array of the sealed records, each
its canonical JSON with ``hash`` appended last (as a JSON Lines line). Around it:

- ``<table>_keys`` (``key``, ``seq``): the records that have a business key, so that
  ``eip audit show --key K`` goes straight to them (only keyed records cost a row here);
- ``<table>_head``: the chain's last number and hash, so records deleted at the end are
  caught too;
- the view ``<table>_records``: one row per record (``seq``, ``time``, ``route``, ``key``,
  ``outcome``, ``exchange``, ``principal``, ``record``) for plain SQL::

      SELECT time, outcome, record FROM eip_audit_records WHERE key = '4711'

A batch is one ``BEGIN IMMEDIATE`` transaction that reads the head, seals the batch after it
and writes it: several processes on one host can share the file, their appends take turns on
SQLite's write lock and the chain stays one line. Durability as for the other SQLite stores:
WAL with ``synchronous=NORMAL`` survives a crash of the process (even SIGKILL); ``FULL``
survives a power loss too, at an fsync per batch. The connection lives in one worker thread.
``verify`` walks the rows in order (:mod:`eip.audit.sqlite_verify`).

The WAL is checkpointed into the file by a second thread with its own connection (a
``PASSIVE`` checkpoint after every :data:`CHECKPOINT_BYTES` written), not by the commit that
happens to fill it (SQLite's autocheckpoint, turned off on the writer's connection): a
checkpoint copies megabytes and syncs the file, and the exchanges whose records were in that
commit waited for it, though their records were durable before it began.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from os import PathLike
from pathlib import Path
from typing import Any, Literal, TypeVar

import msgspec

from eip.audit.record import GENESIS, AuditRecord, Entry, seal_array
from eip.audit.store import DEFAULT_CHAIN, DEFAULT_TABLE, AuditQuery, AuditStore
from eip.audit.verify import VerifyReport
from eip.stores._common import validate_identifier
from eip.stores.base import StoreError

__all__ = ["SqliteAuditStore"]

_T = TypeVar("_T")
_BUSY_TIMEOUT_MS = 5000
_VIEW_COLUMNS = ("seq", "time", "route", "key", "outcome", "exchange", "principal")
#: Bytes of records written between two checkpoints (SQLite's own default is 1000 pages).
CHECKPOINT_BYTES = 16 * 1024 * 1024

log = logging.getLogger("eip.audit")
_batch = msgspec.json.Decoder(list[AuditRecord])


class SqliteAuditStore(AuditStore):
    """Audit records in a SQLite file; ``create=False`` opens an existing one only (the
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
        self._checkpointer: ThreadPoolExecutor | None = None
        self._checkpoint_conn: sqlite3.Connection | None = None  # in the checkpointer only
        self._checkpoint: Future[None] | None = None  # the one asked for last
        self._unchecked = 0  # bytes written since then (the worker thread's)
        t = self.table
        self._sql_head = f"SELECT chain, seq, hash FROM {t}_head"
        self._sql_insert = f"INSERT INTO {t} (last, first, time, records) VALUES (?, ?, ?, ?)"
        self._sql_key = f"INSERT INTO {t}_keys (key, seq) VALUES (?, ?)"
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
        self._checkpointer = ThreadPoolExecutor(1, thread_name_prefix="eip-audit-checkpoint")
        try:
            await self._run(self._open)
        except BaseException:
            self._executor.shutdown(wait=False)
            self._checkpointer.shutdown(wait=False)
            self._executor = self._checkpointer = None
            raise

    async def stop(self) -> None:
        if self._executor is None:
            return
        checkpointer = self._checkpointer
        try:
            await self._run(self._close)
        finally:
            self._executor.shutdown(wait=False)
            self._executor = None
            if checkpointer is not None:  # a checkpoint under way ends first, then its connection
                await asyncio.get_running_loop().run_in_executor(
                    checkpointer, self._close_checkpointer
                )
                checkpointer.shutdown(wait=False)
                self._checkpointer = None

    async def append(self, entries: Sequence[Entry]) -> None:
        await self._run(self._append, entries)

    async def query(self, query: AuditQuery) -> list[AuditRecord]:
        return await self._run(self._query, query)

    async def verify(self) -> VerifyReport:
        from eip.audit.sqlite_verify import verify_tables

        return await self._run(verify_tables, self._db, self.table)

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
            conn.execute("PRAGMA page_size=16384")  # a new file only: batches are big rows
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
            conn.execute("PRAGMA wal_autocheckpoint=0")  # the checkpointer's job (see above)
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
        fields = ", ".join(f"json_extract(r.value, '$.{name}') AS {name}" for name in _VIEW_COLUMNS)
        with _immediate(conn):
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {t} (last INTEGER PRIMARY KEY, "
                "first INTEGER NOT NULL, time TEXT NOT NULL, records TEXT NOT NULL)"
            )
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {t}_keys (key TEXT NOT NULL, seq INTEGER NOT NULL, "
                "PRIMARY KEY (key, seq)) WITHOUT ROWID"
            )
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {t}_head (chain TEXT PRIMARY KEY, "
                "seq INTEGER NOT NULL, hash TEXT NOT NULL)"
            )
            conn.execute(
                f"CREATE VIEW IF NOT EXISTS {t}_records AS SELECT {fields}, r.value AS record "
                f"FROM {t} AS b, json_each(b.records) AS r"
            )

    def _check_exists(self, conn: sqlite3.Connection) -> None:
        names = (self.table, f"{self.table}_keys", f"{self.table}_head")
        sql = "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN (?, ?, ?)"
        (found,) = conn.execute(sql, names).fetchone()
        if found != len(names):
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
            records, digest = seal_array(entries, self.chain, seq, prev)
            first, last = entries[0], entries[-1]
            try:
                db.execute(self._sql_insert, (last.seq, first.seq, first.time, records.decode()))
            except sqlite3.IntegrityError as exc:
                raise StoreError(
                    f"audit store {self.name}: record {last.seq} exists beyond the chain head "
                    f"({exc}); the head was edited: run 'eip audit verify'"
                ) from exc
            keyed = [(c.key, c.seq) for c in entries if c.key is not None]
            if keyed:
                db.executemany(self._sql_key, keyed)
            db.execute(self._sql_set_head, (self.chain, last.seq, digest))
        self._unchecked += len(records)
        if self._unchecked >= CHECKPOINT_BYTES:
            self._ask_checkpoint()

    def _ask_checkpoint(self) -> None:
        """Have the checkpointer copy the WAL into the file, unless it still is at it."""
        if self._checkpointer is None or not (self._checkpoint is None or self._checkpoint.done()):
            return
        self._unchecked = 0
        self._checkpoint = self._checkpointer.submit(self._run_checkpoint)

    # -- in the checkpointer thread ---------------------------------------------------------
    def _run_checkpoint(self) -> None:
        try:
            conn = self._checkpoint_conn
            if conn is None:
                conn = sqlite3.connect(self.path, timeout=0, isolation_level=None)
                self._checkpoint_conn = conn
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")  # waits for no reader or writer
        except sqlite3.Error as exc:  # the records are safe in the WAL; the next one retries
            log.warning("audit store %s: WAL checkpoint failed: %s", self.name, exc)

    def _close_checkpointer(self) -> None:
        if self._checkpoint_conn is not None:
            self._checkpoint_conn.close()
            self._checkpoint_conn = None

    def _query(self, query: AuditQuery) -> list[AuditRecord]:
        found: list[AuditRecord] = []
        for records in self._batches(query):
            for record in _batch.decode(records):
                if query.matches(record):
                    found.append(record)
                    if query.limit is not None and len(found) >= query.limit:
                        return found
        return found

    def _batches(self, query: AuditQuery) -> Iterator[str]:
        """The batches that may hold matching records, in order: by the key index when the
        query names a key, else every batch in the time range."""
        t, db = self.table, self._db
        since, until = query.since or "", query.until or "\uffff"
        if query.key is None:
            sql = f"SELECT records FROM {t} WHERE time >= ? AND time < ? ORDER BY last"
            for (records,) in db.execute(sql, (since, until)):
                yield records
            return
        sql = f"SELECT seq FROM {t}_keys WHERE key = ? ORDER BY seq"
        batch = f"SELECT last, records FROM {t} WHERE last >= ? AND time >= ? AND time < ? "
        batch += "ORDER BY last LIMIT 1"
        covered = 0
        for (seq,) in db.execute(sql, (query.key,)).fetchall():
            if seq <= covered:
                continue  # in the batch just read
            row = db.execute(batch, (seq, since, until)).fetchone()
            if row is None:
                return
            covered = row[0]
            yield row[1]


class _immediate:
    """A write transaction that takes SQLite's write lock at BEGIN."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: object, exc: object, tb: object) -> None:
        self.conn.execute("ROLLBACK" if kind is not None else "COMMIT")
