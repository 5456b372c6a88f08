"""In-memory stores: fast, bounded, and gone when the process ends.

Use them for tests and for routes where a restart may forget state (a broker redelivery after a
crash is then processed again). They follow the same contract as the persistent stores (the
shared contract suite in ``tests/stores`` runs against all of them), so a route can move to
SQLite or PostgreSQL without changing behaviour.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, NamedTuple

import msgspec

from eip.stores._common import check_durations, conflict, copy_group, default_clock
from eip.stores.base import (
    CompletedGroup,
    OpenGroup,
    StoreError,
    TimeSource,
)

__all__ = ["MemoryAggregationRepository", "MemoryIdempotentRepository"]


class _Entry(NamedTuple):
    confirmed: bool
    expires_at: float  # math.inf: never


class MemoryIdempotentRepository:
    """Idempotent repository in a bounded LRU map.

    When more than ``max_size`` keys are held, the least recently added/confirmed key is
    forgotten: memory stays bounded, at the price that a very old duplicate can pass. Keep
    ``max_size`` well above the number of messages in flight, or an in-flight claim could be
    evicted (and its duplicate let through).

    The ``*_nowait`` methods are the synchronous fast path: nothing here does I/O, so the
    idempotent consumer calls them directly instead of awaiting a coroutine per message.
    """

    def __init__(
        self,
        max_size: int = 100_000,
        ttl: float | None = None,
        lease: float = 60.0,
        clock: TimeSource | None = None,
    ) -> None:
        if max_size < 1:
            raise ValueError(f"max_size must be >= 1, got {max_size!r}")
        check_durations(ttl, lease)
        self.max_size = max_size
        self.ttl = ttl
        self.lease = lease
        self._clock = default_clock(clock)
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def __len__(self) -> int:
        """Keys held, including expired ones not yet purged."""
        return len(self._entries)

    async def start(self) -> None:
        """Nothing to connect."""

    async def stop(self) -> None:
        """Nothing to release; keys survive a stop/start (not a process restart)."""

    def add_nowait(self, key: str) -> bool:
        now = self._clock.time()
        entry = self._entries.get(key)
        if entry is not None and entry.expires_at > now:
            self._entries.move_to_end(key)
            return False
        self._put(key, _Entry(False, now + self.lease))
        return True

    def confirm_nowait(self, key: str) -> None:
        expires = math.inf if self.ttl is None else self._clock.time() + self.ttl
        self._put(key, _Entry(True, expires))

    def remove_nowait(self, key: str) -> None:
        self._entries.pop(key, None)

    def contains_nowait(self, key: str) -> bool:
        entry = self._entries.get(key)
        return entry is not None and entry.expires_at > self._clock.time()

    def purge_nowait(self) -> int:
        """Drop expired keys now (they are otherwise dropped lazily); returns how many."""
        now = self._clock.time()
        expired = [key for key, entry in self._entries.items() if entry.expires_at <= now]
        for key in expired:
            del self._entries[key]
        return len(expired)

    async def add(self, key: str) -> bool:
        return self.add_nowait(key)

    async def confirm(self, key: str) -> None:
        self.confirm_nowait(key)

    async def remove(self, key: str) -> None:
        self.remove_nowait(key)

    async def contains(self, key: str) -> bool:
        return self.contains_nowait(key)

    async def purge(self) -> int:
        return self.purge_nowait()

    async def clear(self) -> None:
        self._entries.clear()

    def _put(self, key: str, entry: _Entry) -> None:
        self._entries[key] = entry
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_size:
            self._entries.popitem(last=False)


class MemoryAggregationRepository:
    """Aggregation repository in dicts, with the persistent stores' optimistic locking.

    Groups are copied on the way in and out (the struct and its ``input_ids``), so an
    aggregator mutating the group it holds cannot change the stored one behind the version
    check's back. The ``state`` object itself is kept, not copied or serialized (that is the
    point of a memory store): the aggregator replaces a group's state, it does not mutate it.

    Nothing here does I/O, so every method has a synchronous ``*_nowait`` twin that the
    aggregator calls directly on its per-message path; each is atomic on the event loop.
    """

    def __init__(
        self, clock: TimeSource | None = None, *, input_retention: float = 7 * 86400
    ) -> None:
        self._clock = default_clock(clock)
        self._open: dict[str, OpenGroup] = {}
        #: ``peek_nowait(key)``: the stored group itself, not a copy, or None. For the
        #: aggregator's per-input path, which only reads it and then changes it through
        #: :meth:`grow_nowait`. It is the dict's own ``get``: no Python call per input.
        self.peek_nowait: Callable[[str], OpenGroup | None] = self._open.get
        self._completed: dict[str, CompletedGroup] = {}
        self._closed: dict[str, float] = {}
        #: Input ids of completed groups, oldest first (so expiry pops from the front).
        self._inputs: OrderedDict[str, float] = OrderedDict()
        self.input_retention = input_retention

    async def start(self) -> None:
        """Nothing to connect."""

    async def stop(self) -> None:
        """Nothing to release; groups survive a stop/start (not a process restart)."""

    def get_nowait(self, key: str) -> OpenGroup | None:
        group = self._open.get(key)
        return None if group is None else copy_group(group)

    def grow_nowait(
        self, group: OpenGroup, state: Any, size: int, updated: float, input_id: str | None
    ) -> None:
        """Add one input to the stored ``group`` (from ``peek_nowait``) in place, with the
        next version: what ``put_nowait`` of a changed copy does, without copying the group
        (and its ``input_ids``) twice per input."""
        if self._open.get(group.key) is not group:
            raise conflict(group)
        group.state = state
        group.size = size
        group.updated = updated
        if input_id is not None:
            group.input_ids.append(input_id)
        group.version += 1

    def put_nowait(self, group: OpenGroup) -> None:
        """Store a copy of ``group`` with the next version (the async ``put`` returns it)."""
        self._check_version(group)
        self._open[group.key] = copy_group(group, version=group.version + 1)

    def complete_nowait(self, group: OpenGroup, completed: CompletedGroup) -> None:
        self._check_version(group)
        if completed.id in self._completed:
            raise StoreError(f"completed group id {completed.id!r} already exists")
        self._open.pop(group.key, None)
        self._completed[completed.id] = msgspec.structs.replace(completed)
        if group.input_ids:
            now = self._clock.time()
            inputs = self._inputs
            for input_id in group.input_ids:
                if input_id in inputs:
                    inputs.move_to_end(input_id)
                inputs[input_id] = now
            if len(inputs) > 10_000:
                # Expired ids leave from the front, each once: rebuilding the dict per
                # completion made every completion O(ids kept) once over 10,000 were kept.
                horizon = now - self.input_retention
                while inputs and next(iter(inputs.values())) < horizon:
                    inputs.popitem(last=False)

    def completed_input_nowait(self, input_id: str) -> bool:
        return input_id in self._inputs

    def open_groups_nowait(self) -> list[OpenGroup]:
        groups = sorted(self._open.values(), key=lambda g: (g.created, g.key))
        return [copy_group(g) for g in groups]

    def confirm_nowait(self, completed_id: str) -> None:
        self._completed.pop(completed_id, None)

    def unconfirmed_nowait(self) -> list[CompletedGroup]:
        groups = sorted(self._completed.values(), key=lambda g: (g.completed, g.id))
        return [msgspec.structs.replace(g) for g in groups]

    def mark_redelivered_nowait(self, completed_id: str) -> int:
        group = self._completed.get(completed_id)
        if group is None:
            raise StoreError(f"no unconfirmed completed group {completed_id!r}")
        group.redeliveries += 1
        return group.redeliveries

    def close_key_nowait(self, key: str) -> None:
        self._closed.setdefault(key, self._clock.time())

    def is_closed_nowait(self, key: str) -> bool:
        return key in self._closed

    async def get(self, key: str) -> OpenGroup | None:
        return self.get_nowait(key)

    async def put(self, group: OpenGroup) -> OpenGroup:
        self.put_nowait(group)
        return copy_group(self._open[group.key])

    async def complete(self, group: OpenGroup, completed: CompletedGroup) -> None:
        self.complete_nowait(group, completed)

    async def open_groups(self) -> list[OpenGroup]:
        return self.open_groups_nowait()

    async def confirm(self, completed_id: str) -> None:
        self.confirm_nowait(completed_id)

    async def unconfirmed(self) -> list[CompletedGroup]:
        return self.unconfirmed_nowait()

    async def mark_redelivered(self, completed_id: str) -> int:
        return self.mark_redelivered_nowait(completed_id)

    async def completed_input(self, input_id: str) -> bool:
        return self.completed_input_nowait(input_id)

    async def close_key(self, key: str) -> None:
        self.close_key_nowait(key)

    async def is_closed(self, key: str) -> bool:
        return self.is_closed_nowait(key)

    def _check_version(self, group: OpenGroup) -> None:
        current = self._open.get(group.key)
        if (0 if current is None else current.version) != group.version:
            raise conflict(group)
