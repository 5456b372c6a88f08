"""One side's records, keyed and packed: in memory while they are few, in hash partitions on
disk once they are many. This is what bounds a reconcile's memory.

Each record is kept as ``(key, blob)``: the blob is the record in msgpack, a third to a fifth
of the memory of the dict it came from, and two records with equal blobs are equal without
being decoded (the fast path of nearly every key).

**Why hash partitions** (a Grace hash join) rather than a sorted merge or a SQLite index:
records from APIs and exports come in no useful order, so a merge would first need an
external sort, O(n log n) comparisons in Python plus a k-way merge that costs a Python call
per record; a SQLite index costs an insert and a lookup per record through the sqlite3
module. Partitioning by ``hash(key) % partitions`` is one pass of appends and sequential
writes; each partition then holds all the records of its keys from both sides and is small
enough to compare as two dicts, which is exactly what a hand-written in-memory comparison
does. A partition that still outgrows the memory budget (a huge input) is split again with
another hash, so memory stays bounded whatever the input size.

On disk a partition is a file of frames: a 4-byte little-endian length, then one msgpack
``[keys, blobs]`` pair of arrays (up to :data:`FLUSH` records), written as the buffer fills.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import msgspec

__all__ = [
    "FLUSH",
    "PartitionWriter",
    "Spool",
    "make_folder",
    "read_frames",
    "resplit",
    "take_partition",
]

#: Records buffered per partition before a frame is written.
FLUSH = 256

_frame = msgspec.msgpack.Encoder().encode
_unframe = msgspec.msgpack.Decoder(tuple[list[Any], list[bytes]]).decode

Keys = list[Any]
Blobs = list[bytes]


class PartitionWriter:
    """Append ``(key, blob)`` pairs to ``partitions`` files named ``<base>.<n>``.

    ``salt`` None partitions by ``hash(key)``; a salt (the depth of a re-split) by
    ``hash((salt, key))``, so a partition split again spreads over all the new files.
    """

    def __init__(self, base: Path, partitions: int, salt: int | None = None) -> None:
        self.paths = [base.with_name(f"{base.name}.{n}") for n in range(partitions)]
        self.partitions = partitions
        self.salt = salt
        self.counts = [0] * partitions
        self._keys: list[Keys] = [[] for _ in range(partitions)]
        self._blobs: list[Blobs] = [[] for _ in range(partitions)]
        self._files: list[BinaryIO] = []
        try:
            for path in self.paths:
                self._files.append(open(path, "wb"))  # noqa: SIM115 - closed in close()
        except BaseException:
            self.close()
            raise

    def add(self, keys: Keys, blobs: Blobs) -> None:
        count, salt = self.partitions, self.salt
        part_keys, part_blobs = self._keys, self._blobs
        if salt is None:
            for key, blob in zip(keys, blobs, strict=True):
                n = hash(key) % count
                part_keys[n].append(key)
                part_blobs[n].append(blob)
        else:
            for key, blob in zip(keys, blobs, strict=True):
                n = hash((salt, key)) % count
                part_keys[n].append(key)
                part_blobs[n].append(blob)
        for n in range(count):
            if len(part_keys[n]) >= FLUSH:
                self._flush(n)

    def _flush(self, n: int) -> None:
        keys = self._keys[n]
        if not keys:
            return
        data = _frame((keys, self._blobs[n]))
        handle = self._files[n]
        handle.write(len(data).to_bytes(4, "little"))
        handle.write(data)
        self.counts[n] += len(keys)
        self._keys[n] = []
        self._blobs[n] = []

    def close(self) -> None:
        """Write what is buffered and close the files (they stay, to be read)."""
        for n in range(len(self._files)):
            self._flush(n)
        for handle in self._files:
            handle.close()
        self._files = []

    def discard(self) -> None:
        """Close the files without writing what is buffered (a run that failed)."""
        for handle in self._files:
            handle.close()
        self._files = []


def read_frames(path: Path) -> Iterator[tuple[Keys, Blobs]]:
    """The frames of a partition file, one at a time."""
    with open(path, "rb") as handle:
        while header := handle.read(4):
            size = int.from_bytes(header, "little")
            yield _unframe(handle.read(size))


def take_partition(path: Path, tuple_keys: bool) -> tuple[Keys, Blobs]:
    """All the pairs of a partition file, which is then removed. msgpack has no tuples, so a
    composite key comes back as a list; ``tuple_keys`` makes it a tuple again (hashable,
    equal to the original)."""
    keys: Keys = []
    blobs: Blobs = []
    for frame_keys, frame_blobs in read_frames(path):
        keys.extend(frame_keys)
        blobs.extend(frame_blobs)
    path.unlink()
    if tuple_keys:
        keys = [tuple(k) if type(k) is list else k for k in keys]
    return keys, blobs


def resplit(path: Path, partitions: int, depth: int, tuple_keys: bool) -> PartitionWriter:
    """Split a partition file that outgrew the memory budget into ``partitions`` smaller ones
    (hashed with ``depth`` as the salt); the file is then removed."""
    writer = PartitionWriter(path.with_name(f"{path.name}.s"), partitions, depth)
    try:
        for keys, blobs in read_frames(path):
            if tuple_keys:
                keys = [tuple(k) if type(k) is list else k for k in keys]
            writer.add(keys, blobs)
    finally:
        writer.close()
    path.unlink()
    return writer


class Spool:
    """One side's pairs: a list in memory until :meth:`spill`, then a :class:`PartitionWriter`
    under ``folder``."""

    def __init__(self, side: str, partitions: int) -> None:
        self.side = side
        self.partitions = partitions
        self.keys: Keys = []
        self.blobs: Blobs = []
        self.writer: PartitionWriter | None = None
        self.records = 0
        #: Set when a key was a tuple (a composite key), to restore tuples read back.
        self.tuple_keys = False

    @property
    def spilled(self) -> bool:
        return self.writer is not None

    @property
    def in_memory(self) -> int:
        return len(self.keys)

    def add(self, keys: Keys, blobs: Blobs) -> None:
        self.records += len(keys)
        if keys and type(keys[0]) is tuple:
            self.tuple_keys = True
        if self.writer is not None:
            self.writer.add(keys, blobs)
        else:
            self.keys.extend(keys)
            self.blobs.extend(blobs)

    def spill(self, folder: Path) -> None:
        """Move to disk: what is in memory goes to the partitions, and so does what follows."""
        if self.writer is not None:
            return
        self.writer = PartitionWriter(folder / self.side, self.partitions)
        keys, blobs = self.keys, self.blobs
        self.keys, self.blobs = [], []
        for start in range(0, len(keys), 50_000):
            self.writer.add(keys[start : start + 50_000], blobs[start : start + 50_000])

    def finish(self) -> None:
        if self.writer is not None:
            self.writer.close()

    def discard(self) -> None:
        if self.writer is not None:
            self.writer.discard()


def make_folder(parent: str | os.PathLike[str] | None) -> Path:
    """A fresh private folder for one run's partitions."""
    import tempfile

    return Path(tempfile.mkdtemp(prefix="eip-reconcile-", dir=parent))
