"""The JSON Lines audit store: one sealed record per line, for a SIEM to ship.

Each line is the record's canonical JSON (keys sorted, no whitespace) with its ``hash``
appended as the last member, so a log shipper (Filebeat, Vector, Fluent Bit) can send it as
it is, and anyone can check a line (``del(.hash)``, canonical re-encoding, SHA-256). A batch
is written with one ``write``: it survives a crash of the process as soon as it returns;
``fsync=True`` makes it survive a power loss too, at an fsync per batch. A batch that fails
halfway is cut off again, so the file never keeps half a record.

One writer per file: the store holds an exclusive ``flock`` on it while started, and a second
writer (another process) is refused with a message that says so. Give each instance its own
file, or use the PostgreSQL store to share one chain. The chain's head is the file's last
line; a file started anew starts a new chain.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from os import PathLike
from pathlib import Path
from typing import IO, Any, TypeVar

import msgspec

from eip.audit.record import (
    GENESIS,
    AuditRecord,
    Entry,
    content_of,
    decode_record,
    line_of,
    seal,
)
from eip.audit.store import DEFAULT_CHAIN, AuditQuery, AuditStore
from eip.audit.verify import Break, ChainWalk, StoredRow, VerifyReport
from eip.stores.base import StoreError

__all__ = ["JsonLinesAuditStore"]

_T = TypeVar("_T")
_TAIL = 64 * 1024  # a record line is far shorter: the last one is in the file's last 64 KiB


class JsonLinesAuditStore(AuditStore):
    """Audit records appended to a JSON Lines file."""

    def __init__(
        self,
        path: str | PathLike[str],
        *,
        chain: str = DEFAULT_CHAIN,
        fsync: bool = False,
        create: bool = True,
    ) -> None:
        self.path = Path(path)
        self.chain = chain
        self.fsync = fsync
        self.create = create
        self._executor: ThreadPoolExecutor | None = None
        self._file: IO[bytes] | None = None
        self._head = (0, GENESIS)

    @property
    def name(self) -> str:
        return f"jsonl:{self.path}"

    async def start(self) -> None:
        if self._executor is not None:
            return
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="eip-audit-jsonl")
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
        except OSError as exc:
            raise StoreError(f"audit store {self.name}: {exc}") from exc

    def _open(self) -> None:
        if not self.create:
            if not self.path.is_file():
                raise StoreError(f"audit store {self.name}: no such file")
            return  # reading only: no lock, no head
        self.path.parent.mkdir(parents=True, exist_ok=True)
        file = open(self.path, "ab")  # noqa: SIM115 - held open while started
        try:
            fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.close()
            raise StoreError(
                f"audit store {self.name}: another writer holds the file (one writer per file: "
                "give each instance its own)"
            ) from None
        try:
            self._head = self._read_head()
        except BaseException:
            file.close()
            raise
        self._file = file

    def _read_head(self) -> tuple[int, str]:
        with open(self.path, "rb") as file:
            size = file.seek(0, os.SEEK_END)
            file.seek(max(0, size - _TAIL))
            lines = [line for line in file.read().splitlines() if line.strip()]
        if not lines:
            return 0, GENESIS
        try:
            last = decode_record(lines[-1])
        except msgspec.DecodeError as exc:
            raise StoreError(
                f"audit store {self.name}: its last line is not a record ({exc}); run "
                "'eip audit verify'"
            ) from None
        if last.chain != self.chain:
            raise StoreError(
                f"audit store {self.name} holds chain {last.chain!r}, not {self.chain!r}"
            )
        return last.seq, last.hash

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()  # closing releases the lock
            self._file = None

    def _append(self, entries: Sequence[Entry]) -> None:
        file = self._file
        if file is None:
            raise StoreError(f"audit store {self.name} is open for reading only")
        seq, prev = self._head
        sealed = seal(entries, self.chain, seq, prev)
        data = b"".join(line_of(content, digest) + b"\n" for _, content, digest in sealed)
        size = file.tell()
        try:
            file.write(data)
            file.flush()
            if self.fsync:
                os.fsync(file.fileno())
        except BaseException:
            file.truncate(size)  # never leave half a batch behind
            raise
        last, _, digest = sealed[-1]
        self._head = (last.seq, digest)

    def _lines(self) -> Iterator[tuple[int, bytes]]:
        with open(self.path, "rb") as file:
            for number, line in enumerate(file, 1):
                line = line.rstrip(b"\n")
                if line.strip():
                    yield number, line

    def _query(self, query: AuditQuery) -> list[AuditRecord]:
        found: list[AuditRecord] = []
        for _, line in self._lines():
            try:
                record = decode_record(line)
            except msgspec.DecodeError:
                continue  # verify names it; show shows what it can read
            if query.matches(record):
                found.append(record)
                if query.limit is not None and len(found) >= query.limit:
                    break
        return found

    def _verify(self) -> VerifyReport:
        walk = ChainWalk()
        for number, line in self._lines():
            where = f"line {number}"
            try:
                record = decode_record(line)
            except msgspec.DecodeError as exc:
                walk.report.broken = Break("?", None, None, f"{where} is not a record ({exc})")
                break
            content = content_of(record)
            if line_of(content, record.hash) != line:
                walk.report.broken = Break(
                    record.chain,
                    record.seq,
                    record.exchange,
                    f"{where} (chain {record.chain}, record {record.seq}) is not in canonical "
                    "form: it was edited",
                )
                break
            if not walk.add(StoredRow(where, content, record.hash)):
                break
        return walk.finish()
