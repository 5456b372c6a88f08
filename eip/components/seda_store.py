"""The SQLite file behind ``seda:name?durable=true&path=FILE``: rows written before a send
returns, deleted after the consuming exchange completes.

Decisions:

- **One table for every queue of a file** (``seda_messages``: id, queue, headers, kind, body,
  failed), read in ``id`` order, so each queue is FIFO, across restarts too. Several durable
  queues may share one file; they then share its writer.
- **One thread per file owns the connection** and does all the SQLite work. Operations queue
  up for it (``queue.SimpleQueue``); it takes every operation waiting, runs them in **one
  transaction** (one ``executemany`` per kind: inserts, deletes, failure marks) and settles
  them on the event loop with a single ``call_soon_threadsafe``. This is group commit: 50
  concurrent senders pay for a handful of commits, not 50, and one sender still gets its row
  committed before its send returns. Row ids are given out on the loop (the file is ours
  alone: the last id is read at open), so an insert needs no answer from SQLite but its
  commit, and a batch is a handful of calls into sqlite3 whatever its size (each call gives
  up and takes back the GIL, which the event loop thread holds most of the time).
- **WAL**, ``synchronous=NORMAL`` by default: a committed row survives the process being
  killed (SIGKILL, OOM); ``synchronous=full`` also survives losing power, at an fsync per
  commit.
- **One process per file.** The connection takes SQLite's exclusive lock at open and keeps
  it (``locking_mode=EXCLUSIVE``), so a second eip process on the same file fails at start
  instead of delivering the same rows twice. The kernel drops the lock when a process dies,
  so a restart after a crash opens the file at once.
- Deleting a consumed row, and marking a failed one, do not wait for the commit: a crash
  before it commits redelivers the row (at-least-once), and the consumer does not pay a commit
  per message. :meth:`SedaStore.sync` waits for everything queued so far.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import sqlite3
import threading
from collections.abc import Callable
from typing import Any, NamedTuple

from eip.errors import EndpointError

__all__ = ["SedaStore", "StoredRow"]

log = logging.getLogger("eip.seda")

#: At most this many operations share one transaction.
MAX_BATCH = 1000

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS seda_messages ("
    " id INTEGER PRIMARY KEY,"
    " queue TEXT NOT NULL,"
    " headers BLOB NOT NULL,"
    " kind INTEGER NOT NULL,"
    " body BLOB,"
    " failed TEXT)",
    "CREATE INDEX IF NOT EXISTS seda_messages_queue ON seda_messages (queue, id)",
)
_INSERT = "INSERT INTO seda_messages (id, queue, headers, kind, body) VALUES (?, ?, ?, ?, ?)"
_DELETE = "DELETE FROM seda_messages WHERE id = ?"
_FAIL = "UPDATE seda_messages SET failed = ? WHERE id = ?"
_PENDING = (
    "SELECT id, queue, headers, kind, body FROM seda_messages WHERE failed IS NULL ORDER BY id"
)
_ROWS = "SELECT id, failed FROM seda_messages WHERE queue = ? ORDER BY id"
_LAST_ID = "SELECT coalesce(max(id), 0) FROM seda_messages"
_WRITES = (_INSERT, _DELETE, _FAIL)

#: What a settled operation is told: its result (rows, for a query) or its batch's error.
Settle = Callable[[Any, BaseException | None], None]


class StoredRow(NamedTuple):
    """A row that was still in the file when it was opened: to be delivered again."""

    id: int
    queue: str
    headers: bytes
    kind: int
    body: bytes | None


class _Op(NamedTuple):
    sql: str  # one of _WRITES, _ROWS, or "" (a barrier)
    params: tuple[Any, ...]
    settle: Settle | None


class SedaStore:
    """The rows of the durable seda queues kept in one SQLite file."""

    def __init__(self, path: str, synchronous: str = "normal") -> None:
        if synchronous not in ("normal", "full"):
            raise ValueError(f"synchronous must be normal or full, got {synchronous!r}")
        self.path = path
        self.synchronous = synchronous
        self._ops: queue.SimpleQueue[_Op | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._last_id = 0

    # -- lifecycle -------------------------------------------------------------------------
    async def open(self) -> list[StoredRow]:
        """Open (or create) the file and lock it; returns the rows left from the last run,
        in order. Raises EndpointError when the file cannot be opened or is in use."""
        self._loop = asyncio.get_running_loop()
        opened: asyncio.Future[list[StoredRow]] = self._loop.create_future()
        self._thread = threading.Thread(
            target=self._serve, args=(opened,), name=f"seda-store:{self.path}", daemon=True
        )
        self._thread.start()
        return await opened

    async def close(self) -> None:
        """Commit what is queued, then close the file (and release its lock)."""
        if self._closed or self._thread is None:
            return
        self._closed = True
        self._ops.put(None)
        await asyncio.to_thread(self._thread.join)

    # -- operations ------------------------------------------------------------------------
    def insert(
        self, queue_name: str, headers: bytes, kind: int, body: bytes | None, settle: Settle
    ) -> int:
        """Queue a row for the next commit; returns its id. ``settle(None, error)`` runs on
        the loop once it is committed (error None) or its transaction failed."""
        self._last_id += 1
        self._submit(_Op(_INSERT, (self._last_id, queue_name, headers, kind, body), settle))
        return self._last_id

    def delete(self, row_id: int) -> None:
        """Queue the removal of a row whose exchange completed."""
        self._submit(_Op(_DELETE, (row_id,), None))

    def mark_failed(self, row_id: int, reason: str) -> None:
        """Keep a row whose exchange failed, out of delivery, with why."""
        self._submit(_Op(_FAIL, (reason, row_id), None))

    async def sync(self) -> None:
        """Wait until every operation queued before this call is committed."""
        await self._ask(_Op("", (), None))

    async def rows(self, queue_name: str) -> list[tuple[int, str | None]]:
        """(id, why it failed or None) of each row of a queue in the file, in order, once
        what was queued before is committed."""
        found: list[tuple[int, str | None]] = await self._ask(_Op(_ROWS, (queue_name,), None))
        return found

    async def _ask(self, op: _Op) -> Any:
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def settle(result: Any, error: BaseException | None) -> None:
            if not done.done():
                done.set_exception(error) if error is not None else done.set_result(result)

        self._submit(op._replace(settle=settle))
        return await done

    def _submit(self, op: _Op) -> None:
        if self._closed:
            raise EndpointError(f"the durable seda store {self.path} is closed")
        self._ops.put(op)

    # -- the thread that owns the connection -----------------------------------------------
    def _serve(self, opened: asyncio.Future[list[StoredRow]]) -> None:
        try:
            connection = self._connect()
            rows = [StoredRow(*row) for row in connection.execute(_PENDING)]
            self._last_id = connection.execute(_LAST_ID).fetchone()[0]
        except Exception as exc:
            self._call(_fail_future, opened, _open_error(self.path, exc))
            return
        self._call(_set_future, opened, rows)
        try:
            while self._run_batch(connection):
                pass
        finally:
            connection.close()

    def _connect(self) -> sqlite3.Connection:
        directory = os.path.dirname(self.path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        connection = sqlite3.connect(self.path, timeout=0.2, isolation_level=None)
        try:
            connection.execute("PRAGMA locking_mode=EXCLUSIVE")
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute(f"PRAGMA synchronous={self.synchronous.upper()}")
            connection.execute("BEGIN IMMEDIATE")  # takes the lock now, and keeps it
            for statement in _SCHEMA:
                connection.execute(statement)
            connection.execute("COMMIT")
        except Exception:
            connection.close()
            raise
        return connection

    def _run_batch(self, connection: sqlite3.Connection) -> bool:
        """Run every queued operation in one transaction; False once closing."""
        first = self._ops.get()
        if first is None:
            return False
        batch = [first]
        closing = False
        while len(batch) < MAX_BATCH:
            try:
                op = self._ops.get_nowait()
            except queue.Empty:
                break
            if op is None:
                closing = True
                break
            batch.append(op)
        results: list[Any] = [None] * len(batch)
        error: BaseException | None = None
        try:
            _write(connection, batch)
            for index, op in enumerate(batch):  # queries see what the batch committed
                if op.sql == _ROWS:
                    results[index] = connection.execute(op.sql, op.params).fetchall()
        except Exception as exc:
            error = EndpointError(f"the durable seda store {self.path} failed: {exc}")
            error.__cause__ = exc
            if connection.in_transaction:
                connection.execute("ROLLBACK")
        self._call(_settle_batch, batch, results, error)
        return not closing

    def _call(self, fn: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits
            loop.call_soon_threadsafe(fn, *args)


def _write(connection: sqlite3.Connection, batch: list[_Op]) -> None:
    """Every write of the batch in one transaction, one call per kind (a single write in
    autocommit: one call in all). Rows are inserted before any delete or mark: a batch never
    deletes a row it inserts, since a row is consumed only once its insert settled."""
    writes = [op for op in batch if op.sql in _WRITES]
    if len(writes) == 1:
        connection.execute(writes[0].sql, writes[0].params)
        return
    if not writes:
        return
    connection.execute("BEGIN")
    for sql in _WRITES:
        params = [op.params for op in writes if op.sql == sql]
        if params:
            connection.executemany(sql, params)
    connection.execute("COMMIT")


def _settle_batch(batch: list[_Op], results: list[Any], error: BaseException | None) -> None:
    for index, op in enumerate(batch):
        if op.settle is not None:
            op.settle(results[index] if error is None else None, error)
        elif error is not None:
            what = "delete" if op.sql == _DELETE else "failure mark"
            log.error("durable seda: %s (a %s not committed)", error, what)


def _set_future(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


def _fail_future(future: asyncio.Future[Any], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)


def _open_error(path: str, exc: Exception) -> EndpointError:
    if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
        text = (
            f"the durable seda file {path} is in use by another process "
            "(one eip process per durable seda file)"
        )
    else:
        text = f"the durable seda file {path} cannot be opened: {exc}"
    error = EndpointError(text)
    error.__cause__ = exc
    return error
