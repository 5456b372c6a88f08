"""Group commit: many exchanges' records share one write, and each exchange waits for it.

:meth:`AuditWriter.append` adds an entry to the batch being filled and returns the batch's
:class:`Commit`, a future that every exchange of the batch awaits before it completes, so the
record is durable before the unit of work runs (an ack, a reply, a file moved). One writer
task takes the whole batch as soon as it gets the loop, hands it to the store (one
transaction) and resolves the commit; entries that arrive meanwhile fill the next batch. Under
load a batch holds whatever arrived during the previous write, so the cost of a commit (an
fsync with ``FULL``) is shared by all of them; when idle, a lone exchange waits for one write
of its own. Nothing is made per exchange but the entry itself.

A batch the store could not write fails its commit: every exchange in it fails with the
:class:`~eip.stores.base.StoreError` (and its source redelivers it), so no exchange completes
without its record. The writer is a route :class:`~eip.runtime.route.Service`, shared by every
route of a context that writes to the same store; the context starts it before the routes'
consumers and stops it after they drained, writing what is left first.
"""

from __future__ import annotations

import asyncio
import logging

from eip.audit.record import Entry
from eip.audit.store import AuditStore
from eip.errors import LifecycleError

__all__ = ["AuditWriter", "Commit"]

log = logging.getLogger("eip.audit")


class Commit(asyncio.Future[None]):
    """One batch's commit, awaited by each exchange in the batch.

    It cannot be cancelled: a task that awaits it and is cancelled (an HTTP caller that went
    away, a shutdown that ran out of time) would otherwise cancel the commit for every other
    exchange of the batch. Such a task gets its CancelledError once the commit is done."""

    def cancel(self, msg: object = None) -> bool:
        return False


class AuditWriter:
    """Batches entries for one store and commits them off the hot path."""

    def __init__(self, store: AuditStore, max_batch: int = 5000) -> None:
        self.store = store
        self.max_batch = max_batch
        self.batches = 0  # written, for tests and benchmarks
        self.records = 0
        self._batch: list[Entry] = []
        self._commit: Commit | None = None
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._open = False

    def append(self, entry: Entry) -> Commit:
        """Queue ``entry``; the commit resolves once it is durable (or fails with the store's
        error)."""
        commit = self._commit
        if commit is None:
            if not self._open:
                return self._refuse(entry)
            commit = self._commit = Commit(loop=self._loop)
            assert self._wake is not None
            self._wake.set()
        self._batch.append(entry)
        return commit

    async def start(self) -> None:
        """Open the store and start the writer task."""
        if self._open:
            return
        await self.store.start()
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._open = True
        self._task = asyncio.create_task(self._run(), name=f"eip-audit {self.store.name}")

    async def stop(self) -> None:
        """Write what is queued, end the task, close the store."""
        if not self._open:
            return
        self._open = False
        assert self._wake is not None
        assert self._task is not None
        self._wake.set()
        try:
            await self._task
        finally:
            self._task = None
            await self.store.stop()

    async def _run(self) -> None:
        wake = self._wake
        assert wake is not None
        while True:
            await wake.wait()
            wake.clear()
            while self._batch:
                await self._write_batch()
            if not self._open:
                return

    async def _write_batch(self) -> None:
        batch, commit = self._batch, self._commit
        self._batch, self._commit = [], None
        assert commit is not None
        try:
            # Chunks bound one transaction's size; the batch's exchanges wait for them all
            # (records of chunks written before a failure stay: the audit is at-least-once).
            for first in range(0, len(batch), self.max_batch):
                await self.store.append(batch[first : first + self.max_batch])
        except Exception as exc:
            log.error(
                "audit store %s: %d record(s) not written, their exchanges fail: %s",
                self.store.name,
                len(batch),
                exc,
            )
            commit.set_exception(exc)
            return
        self.batches += 1
        self.records += len(batch)
        commit.set_result(None)

    def _refuse(self, entry: Entry) -> Commit:
        commit = Commit(loop=asyncio.get_running_loop())
        commit.set_exception(
            LifecycleError(
                f"audit store {self.store.name} is not started: no record of exchange "
                f"{entry.exchange} of route {entry.route} (the exchange fails)"
            )
        )
        return commit

    def __repr__(self) -> str:
        return f"AuditWriter({self.store!r})"
