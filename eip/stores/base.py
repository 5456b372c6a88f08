"""What the stateful EIPs need from a store, and the errors stores raise.

Two kinds of store, each with several implementations (memory, SQLite, PostgreSQL, Redis):

- :class:`IdempotentRepository` remembers message ids for the idempotent consumer. A key goes
  through two states: **claimed** (``add`` returned True; processing is under way) and
  **confirmed** (processing succeeded). A claim is a lease: a claimed key whose claim is older
  than ``lease`` seconds can be claimed again, so a process that crashed mid-message does not
  leave the key orphaned for ever (the broker redelivers, the next claim takes it over). A
  confirmed key stays until it expires (``ttl``) or is removed.
- :class:`AggregationRepository` keeps the aggregator's open groups and its completed groups
  until downstream processing confirms them. Updates of an open group use optimistic locking:
  each write names the version it read, and a concurrent writer gets
  :class:`ConcurrentUpdateError` (the aggregator then re-reads and retries).

All methods are ``async``: persistent stores do I/O. Implementations must be safe to share
between tasks of one event loop, and the persistent ones between processes.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import msgspec

from eip.errors import EipError

__all__ = [
    "AggregationRepository",
    "CompletedGroup",
    "ConcurrentUpdateError",
    "IdempotentRepository",
    "OpenGroup",
    "StoreError",
    "TimeSource",
]


class StoreError(EipError):
    """A store failed (connection lost, corrupt data); the cause is chained."""


class ConcurrentUpdateError(StoreError):
    """An optimistic-lock conflict: the group changed since it was read."""


class TimeSource(Protocol):
    """What a store needs from a clock: ``eip.clock.SystemClock`` and ``ManualClock``
    both fit. Stores only read the time (leases, ttl, bookkeeping); they never sleep on it."""

    def time(self) -> float:
        """Wall-clock time as seconds since the epoch."""
        ...


@runtime_checkable
class IdempotentRepository(Protocol):
    async def start(self) -> None:
        """Connect and create tables/keys as needed (idempotent)."""

    async def stop(self) -> None:
        """Release connections."""

    async def add(self, key: str) -> bool:
        """Claim ``key``: True if it was new (or its claim had expired), False if it is
        confirmed or claimed by someone else. Atomic across processes for persistent stores."""

    async def confirm(self, key: str) -> None:
        """Mark a claimed key as processed; it is then a duplicate until it expires."""

    async def remove(self, key: str) -> None:
        """Forget ``key`` (processing failed: a retry must be able to claim it again)."""

    async def contains(self, key: str) -> bool:
        """True if ``key`` is claimed (unexpired) or confirmed."""

    async def clear(self) -> None:
        """Forget every key of this repository."""


class OpenGroup(msgspec.Struct, kw_only=True):
    """An aggregation group that is still collecting.

    ``state`` is the aggregated exchange as the strategy left it, as a ``(body, headers)``
    tuple: the memory store keeps the object itself, persistent stores serialize it with
    :func:`encode_state` when writing and :func:`decode_state` when reading; ``input_ids``
    are the ids of the exchanges already in the group, so a redelivered input is recognised
    and not added twice; ``version`` is the optimistic-lock counter.
    """

    key: str
    state: Any
    size: int
    input_ids: list[str]
    created: float
    updated: float
    version: int = 0


class CompletedGroup(msgspec.Struct, kw_only=True):
    """A completed group waiting for downstream confirmation (or redelivery after a crash)."""

    id: str
    key: str
    state: Any
    size: int
    trigger: str
    completed: float
    redeliveries: int = 0


@runtime_checkable
class AggregationRepository(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def get(self, key: str) -> OpenGroup | None:
        """The open group for ``key``, or None."""

    async def put(self, group: OpenGroup) -> OpenGroup:
        """Create (version 0 means "must not exist yet") or update the open group, checking
        that the stored version equals ``group.version``; returns it with the new version.
        Raises ConcurrentUpdateError on a conflict."""

    async def complete(self, group: OpenGroup, completed: CompletedGroup) -> None:
        """Atomically remove the open group (checking its version) and store ``completed``.
        Raises ConcurrentUpdateError on a conflict."""

    async def open_groups(self) -> list[OpenGroup]:
        """Every open group (to restore timeouts after a restart, or force completion)."""

    async def confirm(self, completed_id: str) -> None:
        """Downstream processing of a completed group succeeded: forget it."""

    async def unconfirmed(self) -> list[CompletedGroup]:
        """Completed groups not yet confirmed (to redeliver after a crash or failure)."""

    async def mark_redelivered(self, completed_id: str) -> int:
        """Count one more redelivery of a completed group; returns the new count."""

    async def completed_input(self, input_id: str) -> bool:
        """True if ``input_id`` is in a group that has completed. ``complete`` records a group's
        input ids in the same transaction, so an input redelivered after its group completed
        (a crash before its source was acknowledged) is not aggregated into a second group.
        Stores keep these ids for ``input_retention`` seconds."""

    async def close_key(self, key: str) -> None:
        """Remember that ``key`` is closed (late arrivals are rejected)."""

    async def is_closed(self, key: str) -> bool: ...


def encode_state(value: Any) -> bytes:
    """Serialize aggregation state. pickle: the state is written and read only by the engine
    itself, and must round-trip any body (Structs, dicts, bytes) with its type."""
    import pickle

    return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


def decode_state(data: bytes) -> Any:
    import pickle

    return pickle.loads(data)  # trusted: our own store wrote it, see encode_state
