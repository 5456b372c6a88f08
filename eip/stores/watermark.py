"""Watermark (checkpoint) stores: where an incremental sync remembers how far it got.

A watermark is one named value: a timestamp (``"2026-11-02T03:00:00+08:00"``), a sequence
number, or an opaque cursor or sync token, any JSON value. ``poll_pages`` reads it at the start
of a run, puts it into the query, and moves it on only once every record of the run has
completed its route (see :mod:`eip.processors.paging` for the rules).

Every store keeps, per name, the value, a **version** (1 for the first value, +1 per change)
and when it changed. Moving it on is a compare-and-set on the version, as Spring
Integration's ``ConcurrentMetadataStore.replace(key, old, new)``: ``advance(name, value,
version)`` succeeds only while the stored version is still the one the run read (0: "there is
none yet"), so two instances that ran the same sync at once cannot silently overwrite each
other; the loser gets :class:`~eip.stores.base.ConcurrentUpdateError` and decides (the poll
step re-reads and keeps the further of the two when the values can be ordered).

=========================  ==================================  ============================
Store                      Survives                            Shared between
=========================  ==================================  ============================
``MemoryWatermarkStore``   nothing (tests)                     one process
``SqliteWatermarkStore``   a crash of the process (WAL)        processes on one host
``PostgresWatermarkStore`` the server's durability             any number of instances
=========================  ==================================  ============================

Values are stored as JSON text, so a value reads back as the JSON value it was written as: a
``datetime`` written by a field becomes its ISO 8601 string (which is what an
``updated_since=`` query wants anyway).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import msgspec

from eip.stores._common import default_clock
from eip.stores.base import ConcurrentUpdateError, StoreError, TimeSource

__all__ = [
    "Checkpoint",
    "MemoryWatermarkStore",
    "WatermarkStore",
    "decode_value",
    "encode_value",
    "stale",
]


class Checkpoint(msgspec.Struct, frozen=True, kw_only=True):
    """A stored watermark: its ``value``, ``version`` (1 for the first value) and the time of
    the last change (``updated_at``, epoch seconds of the store's clock)."""

    name: str
    value: Any
    version: int
    updated_at: float


@runtime_checkable
class WatermarkStore(Protocol):
    async def start(self) -> None:
        """Connect and create the table (idempotent)."""

    async def stop(self) -> None:
        """Release connections."""

    async def get(self, name: str) -> Checkpoint | None:
        """The watermark ``name``, or None when none was stored yet."""

    async def advance(self, name: str, value: Any, version: int) -> Checkpoint:
        """Store ``value`` if the stored version is still ``version`` (0: none stored yet);
        the new checkpoint, or ConcurrentUpdateError when another writer came first."""

    async def set(self, name: str, value: Any) -> Checkpoint:
        """Store ``value`` whatever is there (an operator's reset or replay)."""

    async def delete(self, name: str) -> None:
        """Forget ``name``: the next run starts from the initial value."""


_encoder = msgspec.json.Encoder()


def encode_value(value: Any) -> str:
    """A watermark value as JSON text (a datetime as ISO 8601, a Decimal as a string); a
    value JSON cannot hold is a StoreError, not a silent ``str()``."""
    try:
        return _encoder.encode(value).decode()
    except (TypeError, ValueError) as exc:
        raise StoreError(f"watermark value {value!r} cannot be stored as JSON: {exc}") from exc


def decode_value(text: str | bytes) -> Any:
    try:
        return msgspec.json.decode(text)
    except msgspec.DecodeError as exc:
        raise StoreError(f"corrupt watermark value in store: {exc}") from exc


def stale(name: str, version: int) -> ConcurrentUpdateError:
    """The error for a failed compare-and-set of watermark ``name``."""
    expected = "none stored yet" if version == 0 else f"at version {version}"
    return ConcurrentUpdateError(
        f"watermark {name!r} was moved by another writer (expected it {expected})"
    )


class MemoryWatermarkStore:
    """Watermarks in a dict: for tests, and for syncs that may start over after a restart."""

    def __init__(self, clock: TimeSource | None = None) -> None:
        self._clock = default_clock(clock)
        self._values: dict[str, Checkpoint] = {}

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def get(self, name: str) -> Checkpoint | None:
        return self._values.get(name)

    async def advance(self, name: str, value: Any, version: int) -> Checkpoint:
        current = self._values.get(name)
        if (current.version if current is not None else 0) != version:
            raise stale(name, version)
        return self._put(name, value, version + 1)

    async def set(self, name: str, value: Any) -> Checkpoint:
        current = self._values.get(name)
        return self._put(name, value, (current.version if current is not None else 0) + 1)

    async def delete(self, name: str) -> None:
        self._values.pop(name, None)

    def _put(self, name: str, value: Any, version: int) -> Checkpoint:
        # Round-trip through JSON, so memory gives back what the persistent stores give back.
        stored = decode_value(encode_value(value))
        checkpoint = Checkpoint(
            name=name, value=stored, version=version, updated_at=self._clock.time()
        )
        self._values[name] = checkpoint
        return checkpoint
