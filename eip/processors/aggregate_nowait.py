"""The aggregator's per-input path on a repository without I/O (the in-memory one).

:func:`nowait_step` builds it once per aggregator, at compile time: a plain function over the
aggregator's settings and the repository's ``*_nowait`` methods, bound as locals, so that an
input that does not complete its group costs no await, no coroutine and no attribute lookup
on the aggregator. An input that completes a group returns the aggregator's coroutine that
emits it (once per group). It does exactly what the async path
(:meth:`Aggregator.__call__ <eip.processors.aggregate.Aggregator.__call__>`) does with an
async repository, in the same order:

1. the correlation key (no key: an error, or ignored with ``ignore_invalid_keys``);
2. a closed key (``close_on_completion``): a redelivered input is skipped, another fails;
3. a key that a timeout or stop is completing right now (its lock is held): the async path;
4. the input id (``input_id``): an input already in the group, or in a completed one, is
   skipped;
5. the eager predicate on the input, the strategy, then the completion test on the
   aggregated exchange (the built-in ``collect_bodies`` adding to a group with a fixed
   completion size runs inline: the stored list grows, as the strategy would grow it);
6. only then, with every user callable done, the store is changed: the group grows in place
   (:meth:`~eip.stores.memory.MemoryAggregationRepository.grow_nowait`: no copy of the group
   per input), or completes.

A user callable that raises leaves the stored group as it was, so the input fails cleanly and
its redelivery is aggregated once.
"""

from __future__ import annotations

import time
import types
from typing import TYPE_CHECKING, Any

from eip.clock import SystemClock
from eip.errors import ClosedCorrelationKeyError
from eip.expressions import constant, header
from eip.message import Exchange
from eip.processors.base import STOP, Step, unwrap
from eip.processors.strategies import collect_bodies
from eip.stores._common import copy_group
from eip.stores.base import OpenGroup
from eip.stores.memory import MemoryAggregationRepository

if TYPE_CHECKING:
    from eip.processors.aggregate import Aggregator

__all__ = ["NOWAIT_METHODS", "nowait_step"]

#: What a repository needs for this path (the in-memory one has them all).
NOWAIT_METHODS = (
    "peek_nowait",
    "grow_nowait",
    "put_nowait",
    "complete_nowait",
    "is_closed_nowait",
    "completed_input_nowait",
)


def nowait_step(aggregator: Aggregator) -> Step:
    """The aggregate step of ``aggregator``, whose repository has :data:`NOWAIT_METHODS`."""
    from eip.processors.aggregate import _completed

    repository: Any = aggregator.repository
    peek, grow, put = repository.peek_nowait, repository.grow_nowait, repository.put_nowait
    complete, is_closed = repository.complete_nowait, repository.is_closed_nowait
    completed_input = repository.completed_input_nowait
    name, correlation, strategy = aggregator.name, aggregator.correlation, aggregator.strategy
    input_id_of = aggregator.input_id
    close_on_completion = aggregator.close_on_completion
    eager_predicate = aggregator.completion_predicate if aggregator.eager_check else None
    completion_size = aggregator.completion_size
    # The common completion test, inline: a fixed size and no predicate.
    fixed_size = (
        completion_size
        if isinstance(completion_size, int) and aggregator.completion_predicate is None
        else None
    )
    trigger_of = aggregator._trigger
    key_of, clock = aggregator._key, aggregator.clock
    now_of = time.time if type(clock) is SystemClock else clock.time  # one call less
    locks, timeouts = aggregator._locks, aggregator._timeouts
    timeout_added, completion_timeout = aggregator._timeout_added, aggregator.completion_timeout
    emit, slow = aggregator._completed_by_input, aggregator.__call__
    # collect_bodies adding to a group, inline: what it does to the restored exchange (the
    # stored body list grows; body and headers stay the same objects), without making that
    # exchange or calling it. Only with a fixed completion size (nothing else then reads the
    # aggregated exchange) and for an input without an exception (which it handles itself).
    appends = strategy is collect_bodies and fixed_size is not None
    # ... and on the in-memory repository's own grow_nowait, the group then grows right here.
    own_grow = getattr(type(repository), "grow_nowait", None)  # None: a wrapper's __getattr__
    grows_here = appends and own_grow is MemoryAggregationRepository.grow_nowait

    # A constant correlation key (``constant("all")``) and the default input id (the message
    # id header) are read here without calling their expressions.
    fixed_key = _constant_of(correlation)
    if fixed_key.__class__ is not str or not fixed_key:
        fixed_key = None  # checked (and made a str) per input, as any key
    id_header = _header_of(input_id_of)

    seen = _SeenInputs()

    def aggregate(exchange: Exchange) -> Any:
        if fixed_key is not None:
            key = fixed_key
        else:
            key = correlation(exchange)
            if key.__class__ is not str or not key:
                key = key_of(key, exchange)
                if key is None:
                    return STOP
        if close_on_completion and is_closed(key):
            input_id = input_id_of(exchange) if input_id_of is not None else None
            if input_id is not None and completed_input(str(input_id)):
                return STOP  # redelivered: it is in the group that closed the key
            raise ClosedCorrelationKeyError(
                f"{name}: correlation key {key!r} is closed (its group already completed)"
            )
        if locks:
            lock = locks.get(key)
            if lock is not None and lock.locked():
                return slow(exchange)  # a timeout or stop is completing this key now
        group = peek(key)  # the stored group itself: read only, until the end
        if input_id_of is not None:
            if id_header is not None:
                input_id = exchange.headers.get(id_header[0], id_header[1])
            else:
                input_id = input_id_of(exchange)
            if input_id is not None:
                input_id = str(input_id)
                if (
                    group is not None
                    and (
                        input_id in group.input_ids
                        if len(group.input_ids) < _SeenInputs.SMALL
                        else seen.contains(key, group, input_id)
                    )
                ) or completed_input(input_id):
                    return STOP  # redelivered: it is already aggregated
        else:
            input_id = None
        eager = eager_predicate is not None and bool(eager_predicate(exchange))
        now = now_of()
        stored: list[Any] | None = None  # a stored list body the strategy may append to
        kept = 0
        if group is None:
            aggregated: Exchange | None = strategy(None, exchange)
            size = 1
        elif appends and exchange.exception is None:
            aggregated = None
            group.state[0].append(exchange.body)  # collect_bodies on the restored exchange
            size = group.size + 1
            if grows_here and size < fixed_size and not eager:
                # The group grows and stays open (most inputs): what grow_nowait does, here
                # (the group is the stored one: peeked above, nothing awaited or called since).
                group.size = size
                group.updated = now
                if input_id is not None:
                    group.input_ids.append(input_id)
                group.version += 1
                if completion_timeout is not None:
                    timeouts.append((now + completion_timeout, key))
                    timeout_added.set()
                return STOP
        else:
            # The strategy gets the stored body itself: one that appends to it (collect_bodies,
            # most collectors) has changed the stored group already, so when it or the
            # completion test after it fails, those appends are taken back: the input fails,
            # and its redelivery must find the group as it was (not aggregate it twice).
            body, headers = group.state
            if body.__class__ is list:
                stored, kept = body, len(body)
            try:
                aggregated = strategy(Exchange(body, headers), exchange)
            except BaseException:
                if stored is not None:
                    del stored[kept:]
                raise
            size = group.size + 1
        if eager:
            trigger: str | None = "predicate"
        elif fixed_size is not None:
            trigger = "size" if size >= fixed_size else None
        else:
            assert aggregated is not None
            try:
                trigger = trigger_of(size, exchange, aggregated)
            except BaseException:
                if stored is not None:
                    del stored[kept:]
                raise
        state = group.state if aggregated is None else (aggregated.body, aggregated.headers)
        if group is None:
            group = OpenGroup(
                key=key,
                state=state,
                size=1,
                input_ids=[input_id] if input_id is not None else [],
                created=now,
                updated=now,
            )
            if trigger is None:
                put(group)
        elif trigger is None:
            grow(group, state, size, now, input_id)
        else:
            group = copy_group(group, state=state, size=size, updated=now)
            if input_id is not None:
                group.input_ids.append(input_id)
        if trigger is None:
            if completion_timeout is not None:
                timeouts.append((now + completion_timeout, key))
                timeout_added.set()
            return STOP
        completed = _completed(group, trigger, now)
        complete(group, completed)
        seen.forget(key)
        return emit(key, completed)

    return aggregate


class _SeenInputs:
    """The input ids of large open groups as sets, kept beside the stored groups.

    ``input_id in group.input_ids`` scans a list; a group fed by a split (each part carries an
    id, ``<parent id>#<index>``) made an input cost O(group size), and a 20,000-part group took
    seconds. A set per key follows the stored group's list as it grows in place (same group,
    same list, only appended to); any other group or list under the key starts it over. Groups
    completed elsewhere (a timeout, a stop) leave their set until the key comes again, so the
    index starts over when it holds :attr:`LIMIT` keys.
    """

    __slots__ = ("by_key",)

    #: Shorter lists are scanned: faster than keeping a set.
    SMALL = 32
    #: Keys kept before the index starts over.
    LIMIT = 4096

    def __init__(self) -> None:
        self.by_key: dict[str, _GroupIds] = {}

    def contains(self, key: str, group: OpenGroup, input_id: str) -> bool:
        ids = group.input_ids
        entry = self.by_key.get(key)
        if (
            entry is None
            or entry.group is not group
            or entry.ids is not ids
            or entry.covered > len(ids)
        ):
            if len(self.by_key) >= self.LIMIT:
                self.by_key.clear()
            entry = self.by_key[key] = _GroupIds(group, ids)
        elif entry.covered < len(ids):
            entry.seen.update(ids[entry.covered :])
            entry.covered = len(ids)
        return input_id in entry.seen

    def forget(self, key: str) -> None:
        """The group of ``key`` completed: its set goes with it."""
        if self.by_key:
            self.by_key.pop(key, None)


class _GroupIds:
    """One stored group's input ids as a set, and how much of its list the set holds."""

    __slots__ = ("covered", "group", "ids", "seen")

    def __init__(self, group: OpenGroup, ids: list[str]) -> None:
        self.group = group
        self.ids = ids
        self.seen = set(ids)
        self.covered = len(ids)


_CONSTANT_CODE = unwrap(constant(None)).__code__
_HEADER_CODE = unwrap(header("-")).__code__


def _closure(fn: Any, code: types.CodeType) -> dict[str, Any] | None:
    """The captured values of ``fn`` when it is a function made from ``code``, else None."""
    if getattr(fn, "__code__", None) is not code or fn.__closure__ is None:
        return None
    cells = zip(code.co_freevars, fn.__closure__, strict=True)
    return {name: cell.cell_contents for name, cell in cells}


def _constant_of(fn: Any) -> Any:
    """The value of a ``constant(value)`` expression's function, else None."""
    captured = _closure(fn, _CONSTANT_CODE)
    return None if captured is None else captured.get("value")


def _header_of(fn: Any) -> tuple[str, Any] | None:
    """``(name, default)`` of a ``header(name, default)`` expression's function, else None."""
    captured = _closure(fn, _HEADER_CODE)
    if captured is None or set(captured) != {"name", "default"}:
        return None
    return captured["name"], captured["default"]
