"""The reconcile run: read both sources into spools, judge partition by partition, repair.

1. **Intake**: both sources are read at once (two tasks: two APIs answer in parallel). Each
   batch is keyed and packed into ``(key, blob)`` pairs (:mod:`eip.reconcile.spool`). While
   both sides together hold at most ``memory_records`` pairs they stay in memory; past that,
   both go to hash partitions on disk, in a private temporary folder removed after the run.
2. **Judge**: per partition, both sides become two dicts and every key gets its verdict
   (:mod:`eip.reconcile.judge`). An in-memory run is one partition.
3. **Repair**: after each partition its repairs are sent (``repair(Repair)``, sync or async),
   at most ``repair_concurrency`` at a time, up to ``max_repairs`` in all. A failed repair is
   counted and reported, not raised: the next run finds the key again.

The event loop is never held for long: sources are read in batches with awaits between them,
and the judge yields after each partition (about 1/64th of the records).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec

from eip.reconcile.base import (
    DIFFERS,
    ONLY_LEFT,
    REPAIRABLE,
    SAME,
    VERDICTS,
    ReconcileError,
    Repair,
)
from eip.reconcile.judge import RecordComparer, Tally, judge, unpack_json, unpack_msgpack
from eip.reconcile.normalise import NormaliserSpec
from eip.reconcile.report import ReconcileReport, RepairSummary, Sample, SideSummary
from eip.reconcile.sources import Source, as_source
from eip.reconcile.spool import Spool, make_folder, resplit, take_partition

__all__ = ["KeySpec", "Reconciler", "RepairSink", "reconcile"]

#: A field name, several (a composite key: a tuple), or a function of the record.
KeySpec = str | Sequence[str] | Callable[[Any], Any]
RepairSink = Callable[[Repair], Awaitable[None] | None]

_pack = msgspec.msgpack.Encoder().encode
_MAX_DEPTH = 4  # re-splits of an oversized partition (beyond: one key is that big)
_ERRORS_KEPT = 5


class Reconciler:
    """A configured comparison of two sources; :meth:`run` it as often as needed.

    ``key`` names the field (or fields) both sides are matched by, or is a function of the
    record. ``fields`` limits the comparison to those fields, ``ignore`` leaves some out
    (timestamps, internal ids), ``normalise`` maps a field (or ``"*"``) to normalisers
    (:mod:`eip.reconcile.normalise`). ``repair`` lists the verdicts repairs are sent for.
    """

    def __init__(
        self,
        left: Source | Any,
        right: Source | Any,
        *,
        key: KeySpec,
        name: str = "reconcile",
        fields: Sequence[str] | None = None,
        ignore: Collection[str] = (),
        normalise: Mapping[str, NormaliserSpec] | None = None,
        repair: Collection[str] = (DIFFERS, ONLY_LEFT),
        max_repairs: int | None = None,
        repair_concurrency: int = 1,
        samples: int = 10,
        memory_records: int = 100_000,
        partitions: int = 64,
        spill_dir: str | Path | None = None,
    ) -> None:
        self.left = as_source(left, "left")
        self.right = as_source(right, "right")
        self.keys = _key_function(key)
        self.key = key
        self.name = name
        self.comparer = RecordComparer(fields, ignore, normalise)
        if isinstance(repair, str):
            repair = (repair,)
        unknown = set(repair) - REPAIRABLE
        if unknown:
            valid = ", ".join(sorted(REPAIRABLE))
            raise ValueError(f"repair: cannot repair {sorted(unknown)} (repairable: {valid})")
        self.repair = tuple(v for v in VERDICTS if v in repair)
        _check(max_repairs is None or max_repairs >= 0, "max_repairs must be >= 0 or None")
        _check(repair_concurrency >= 1, "repair_concurrency must be >= 1")
        _check(samples >= 0, "samples must be >= 0")
        _check(memory_records >= 1, "memory_records must be >= 1")
        _check(2 <= partitions <= 1024, "partitions must be between 2 and 1024")
        self.max_repairs = max_repairs
        self.repair_concurrency = repair_concurrency
        self.samples = samples
        self.memory_records = memory_records
        self.partitions = partitions
        self.spill_dir = spill_dir

    def bind(self, resolve: Callable[[Any], Any]) -> Reconciler:
        """A copy whose sources use the route's producers (see :meth:`Source.bind`)."""
        bound = Reconciler.__new__(Reconciler)
        bound.__dict__.update(self.__dict__)
        bound.left = self.left.bind(resolve)
        bound.right = self.right.bind(resolve)
        return bound

    async def run(
        self, repair: RepairSink | None = None, *, repair_endpoint: str | None = None
    ) -> ReconcileReport:
        """Compare the sources once; send repairs to ``repair`` when given."""
        return await _Run(self, repair, repair_endpoint).execute()


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _field(record: Any, name: str) -> Any:
    if isinstance(record, Mapping):
        return record[name]
    try:
        return getattr(record, name)
    except AttributeError:
        raise KeyError(name) from None


def _key_function(key: KeySpec) -> Callable[[list[Any]], list[Any]]:
    """The keys of a batch of records (fast for dicts and a field name)."""
    if isinstance(key, str):
        if not key:
            raise ValueError("key: give a field name")

        def by_field(records: list[Any]) -> list[Any]:
            try:
                return [r[key] for r in records]
            except (KeyError, TypeError, IndexError):
                return [_field(r, key) for r in records]

        return by_field
    if isinstance(key, Sequence):
        names = tuple(key)
        if not names or not all(isinstance(n, str) and n for n in names):
            raise ValueError(f"key: give field names, got {key!r}")
        return lambda records: [tuple(_field(r, n) for n in names) for r in records]
    if callable(key):
        return lambda records: [key(r) for r in records]
    raise TypeError(f"key must be a field name, a list of them or a function, got {key!r}")


def _as_dict(record: Any) -> Any:
    if isinstance(record, Mapping) and not isinstance(record, dict):
        return dict(record)  # a database row, a MappingProxy
    return record


class _Side:
    def __init__(self, label: str, source: Source, spool: Spool) -> None:
        self.label = label
        self.source = source
        self.spool = spool
        #: How this side's blobs decode: msgpack (packed here) or JSON (a source's own text).
        self.unpack: Callable[[bytes], Any] = unpack_msgpack

    def where(self, index: int | None = None) -> str:
        at = f", record {index}" if index is not None else ""
        return f"{self.label} source '{self.source.name}'{at}"


class _Run:
    """One run's state."""

    def __init__(self, config: Reconciler, sink: RepairSink | None, endpoint: str | None) -> None:
        self.config = config
        self.sink = sink
        self.endpoint = endpoint
        parts = config.partitions
        self.left = _Side("left", config.left, Spool("left", parts))
        self.right = _Side("right", config.right, Spool("right", parts))
        self.tally = Tally(config.samples, config.repair if sink is not None else ())
        self.folder: Path | None = None
        self.sent = self.failed = self.skipped = 0
        self.attempted = 0  # repairs let through (sent, failed or still in flight)
        self.errors: list[str] = []
        self.pending: set[asyncio.Task[None]] = set()

    async def execute(self) -> ReconcileReport:
        started = dt.datetime.now(dt.UTC)
        began = time.perf_counter()
        try:
            await self._intake()
            await self._judge()
            await self._drain()
        finally:
            for task in self.pending:
                task.cancel()
            self.left.spool.discard()  # no-ops after a run that finished
            self.right.spool.discard()
            if self.folder is not None:
                await asyncio.to_thread(shutil.rmtree, self.folder, True)
        return self._report(started, time.perf_counter() - began)

    # -- intake ------------------------------------------------------------------------------
    async def _intake(self) -> None:
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._read(self.left))
                group.create_task(self._read(self.right))
        except BaseExceptionGroup as failed:
            first = failed.exceptions[0]
            while isinstance(first, BaseExceptionGroup):
                first = first.exceptions[0]
            raise first from None
        self.left.spool.finish()
        self.right.spool.finish()

    async def _read(self, side: _Side) -> None:
        key = self.config.key
        keyed = side.source.keyed_batches(key) if isinstance(key, str) else None
        if keyed is not None:
            await self._read_keyed(side, keyed)
            return
        seen = 0
        async for batch in side.source.batches():
            keys, blobs = self._pack(side, batch, seen)
            seen += len(batch)
            side.spool.add(keys, blobs)
            self._budget()
            await asyncio.sleep(0)  # the other side, and the rest of the server, get a turn

    async def _read_keyed(
        self, side: _Side, keyed: AsyncIterator[tuple[list[Any], list[bytes]]]
    ) -> None:
        """A source's own JSON texts, already keyed: nothing to decode or pack here."""
        side.unpack = unpack_json
        seen = 0
        async for keys, blobs in keyed:
            if None in keys:
                where = side.where(seen + keys.index(None) + 1)
                raise ReconcileError(f"{where}: the key is empty (None)")
            seen += len(keys)
            side.spool.add(keys, blobs)
            self._budget()
            await asyncio.sleep(0)

    def _pack(self, side: _Side, batch: list[Any], seen: int) -> tuple[list[Any], list[bytes]]:
        try:
            keys = self.config.keys(batch)
        except KeyError as exc:
            index = _first_failing(batch, lambda r: self.config.keys([r]))
            raise ReconcileError(
                f"{side.where(seen + index + 1)}: no key field {exc.args[0]!r}"
            ) from None
        except Exception as exc:
            index = _first_failing(batch, lambda r: self.config.keys([r]))
            raise ReconcileError(f"{side.where(seen + index + 1)}: key failed: {exc}") from exc
        if None in keys:
            index = keys.index(None)
            raise ReconcileError(f"{side.where(seen + index + 1)}: the key is empty (None)")
        try:
            blobs = [_pack(r) for r in batch]
        except Exception:
            blobs = [self._pack_one(side, r, seen + i + 1) for i, r in enumerate(batch)]
        return keys, blobs

    def _pack_one(self, side: _Side, record: Any, index: int) -> bytes:
        try:
            return _pack(_as_dict(record))
        except Exception as exc:
            raise ReconcileError(f"{side.where(index)}: cannot store the record: {exc}") from exc

    def _budget(self) -> None:
        left, right = self.left.spool, self.right.spool
        if left.spilled or left.in_memory + right.in_memory <= self.config.memory_records:
            return
        if self.folder is None:
            self.folder = make_folder(self.config.spill_dir)
        left.spill(self.folder)
        right.spill(self.folder)

    # -- judge -------------------------------------------------------------------------------
    async def _judge(self) -> None:
        left, right = self.left.spool, self.right.spool
        if left.writer is None or right.writer is None:
            await self._verdicts(left.keys, left.blobs, right.keys, right.blobs)
            left.keys, left.blobs, right.keys, right.blobs = [], [], [], []
            return
        for n in range(self.config.partitions):
            await self._partition(
                left.writer.paths[n],
                right.writer.paths[n],
                left.writer.counts[n] + right.writer.counts[n],
                1,
            )

    async def _partition(self, left: Path, right: Path, count: int, depth: int) -> None:
        tuple_keys = self.left.spool.tuple_keys or self.right.spool.tuple_keys
        if count <= self.config.memory_records or depth > _MAX_DEPTH:
            left_keys, left_blobs = take_partition(left, tuple_keys)
            right_keys, right_blobs = take_partition(right, tuple_keys)
            await self._verdicts(left_keys, left_blobs, right_keys, right_blobs)
            return
        # Too big for memory still: split both sides of this partition again, another hash.
        parts = self.config.partitions
        splits = [resplit(path, parts, depth, tuple_keys) for path in (left, right)]
        for n in range(parts):
            count = splits[0].counts[n] + splits[1].counts[n]
            await self._partition(splits[0].paths[n], splits[1].paths[n], count, depth + 1)

    async def _verdicts(
        self,
        left_keys: list[Any],
        left_blobs: list[bytes],
        right_keys: list[Any],
        right_blobs: list[bytes],
    ) -> None:
        try:
            repairs = judge(
                left_keys,
                left_blobs,
                right_keys,
                right_blobs,
                self.config.comparer,
                self.tally,
                (self.left.unpack, self.right.unpack),
            )
        except TypeError as exc:  # an unhashable key (a dict, a list from a key function)
            raise ReconcileError(f"reconcile '{self.config.name}': bad key: {exc}") from exc
        for repair in repairs:
            await self._send(repair)
        await asyncio.sleep(0)

    # -- repair ------------------------------------------------------------------------------
    async def _send(self, repair: Repair) -> None:
        limit = self.config.max_repairs
        if limit is not None and self.attempted >= limit:
            self.skipped += 1
            return
        self.attempted += 1
        if self.config.repair_concurrency == 1:
            await self._one(repair)
            return
        if len(self.pending) >= self.config.repair_concurrency:
            _, self.pending = await asyncio.wait(self.pending, return_when=asyncio.FIRST_COMPLETED)
        self.pending.add(asyncio.create_task(self._one(repair)))

    async def _one(self, repair: Repair) -> None:
        assert self.sink is not None
        try:
            result = self.sink(repair)
            if result is not None and inspect.isawaitable(result):
                await result
        except Exception as exc:
            self.failed += 1
            if len(self.errors) < _ERRORS_KEPT:
                self.errors.append(f"{repair.verdict} {repair.key!r}: {exc}")
        else:
            self.sent += 1

    async def _drain(self) -> None:
        if self.pending:
            await asyncio.wait(self.pending)
            self.pending = set()

    # -- report ------------------------------------------------------------------------------
    def _report(self, started: dt.datetime, seconds: float) -> ReconcileReport:
        tally = self.tally
        keys = sum(tally.counts.values())
        consistency = round(tally.counts[SAME] / keys, 6) if keys else 1.0
        samples = msgspec.convert(tally.samples, dict[str, list[Sample]])
        return ReconcileReport(
            name=self.config.name,
            started_at=started,
            finished_at=started + dt.timedelta(seconds=seconds),
            duration_seconds=round(seconds, 3),
            left=SideSummary(
                self.left.source.describe(), self.left.spool.records, tally.left_duplicates
            ),
            right=SideSummary(
                self.right.source.describe(), self.right.spool.records, tally.right_duplicates
            ),
            keys=keys,
            consistency=consistency,
            counts=dict(tally.counts),
            field_differences=dict(tally.fields.most_common()),
            samples=samples,
            repairs=RepairSummary(
                endpoint=self.endpoint if self.sink is not None else None,
                sent=self.sent,
                failed=self.failed,
                skipped=self.skipped,
                errors=list(self.errors),
            ),
            spilled=self.left.spool.spilled,
        )


def _first_failing(batch: list[Any], fn: Callable[[Any], Any]) -> int:
    for index, record in enumerate(batch):
        try:
            fn(record)
        except Exception:
            return index
    return 0


async def reconcile(
    left: Source | Any,
    right: Source | Any,
    *,
    key: KeySpec,
    repair: RepairSink | None = None,
    report: str | Path | None = None,
    **options: Any,
) -> ReconcileReport:
    """Compare two sources once, outside a route (a script, a test): ``options`` are those of
    :class:`Reconciler`; with ``repair`` (a function of a :class:`Repair`) repairs are sent to
    it; with ``report`` the report is also written there as JSON."""
    from eip.reconcile.report import write_report

    verdicts = options.pop("repair_verdicts", (DIFFERS, ONLY_LEFT))
    result = await Reconciler(left, right, key=key, repair=verdicts, **options).run(repair)
    if report is not None:
        await write_report(result, report)
    return result
