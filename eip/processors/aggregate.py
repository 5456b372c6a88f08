"""Aggregator: collect related exchanges into groups, and emit a group when it is complete.

The aggregator is a gate: an incoming exchange is added to its group and ends there (its unit
of work succeeds once the group is stored); the steps after ``aggregate(...)`` run for each
*completed* group, as a new exchange.

What makes it lose nothing (the points where Camel's aggregator is known to fail):

- every change to a group goes to the :class:`~eip.stores.base.AggregationRepository` before
  the input counts as done, with optimistic locking (a concurrent writer re-reads and retries);
- the ids of the inputs in a group are stored with it, so an input redelivered after a crash
  is recognised and not added twice (also when its group has completed and closed the key);
  an id is recorded only in the same write that stores the input's data, so it says exactly
  "this input is in a group": an input that failed before that write (and was dead-lettered)
  is aggregated when it is replayed, and one that was stored before its exchange failed
  further on (in a calling route) is not aggregated a second time. A failure after the write
  (closing the key, emitting the group it completed) belongs to the group, which the recovery
  redelivers; it does not fail the input;
- a completed group stays in the repository until the downstream steps succeed (confirm); a
  recovery task redelivers unconfirmed groups (marked ``eip.aggregated.redelivered``), and
  after ``max_redeliveries`` sends them to ``dead_letter`` (or keeps retrying when there is no
  dead letter endpoint: never dropped);
- open groups and their inactivity timeouts survive a restart; on stop, open groups are
  completed (``force_completion_on_stop``) or left in the repository for the next start.

Completion triggers: ``size`` (fixed or an expression of the incoming exchange), ``timeout``
(inactivity per key), ``interval`` (all groups, periodically), ``predicate`` (on the aggregated
exchange; with ``eager_check`` on the incoming one), ``new_group`` (another key arrived), and
``stop``. The trigger is in the ``eip.aggregated.completed_by`` property.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import uuid
from collections.abc import Callable
from typing import Any

from eip import headers as H
from eip.clock import Clock
from eip.errors import ClosedCorrelationKeyError, InvalidCorrelationKeyError
from eip.message import Exchange
from eip.processors.aggregate_nowait import NOWAIT_METHODS, nowait_step
from eip.processors.aggregate_service import AggregatorService
from eip.processors.base import STOP, Step, run_to_completion, unwrap
from eip.stores.base import (
    AggregationRepository,
    CompletedGroup,
    ConcurrentUpdateError,
    OpenGroup,
)

__all__ = ["Aggregator", "ClosedCorrelationKeyError", "InvalidCorrelationKeyError"]

log = logging.getLogger("eip.aggregator")

Strategy = Callable[[Exchange | None, Exchange], Exchange]


class Aggregator(AggregatorService):
    """The aggregate step; its background work (a route service) is in
    :class:`~eip.processors.aggregate_service.AggregatorService`."""

    def __init__(
        self,
        *,
        name: str,
        clock: Clock,
        correlation: Callable[[Exchange], Any],
        strategy: Strategy,
        downstream: Step,
        repository: AggregationRepository,
        completion_size: int | Callable[[Exchange], Any] | None = None,
        completion_timeout: float | None = None,
        completion_interval: float | None = None,
        completion_predicate: Callable[[Exchange], Any] | None = None,
        eager_check: bool = False,
        complete_on_new_group: bool = False,
        force_completion_on_stop: bool = True,
        close_on_completion: bool = False,
        discard_on_timeout: bool = False,
        ignore_invalid_keys: bool = False,
        input_id: Callable[[Exchange], Any] | None = None,
        recovery_interval: float = 5.0,
        max_redeliveries: int = 3,
        dead_letter: Step | None = None,
    ) -> None:
        self.name = name
        self.clock = clock
        self.correlation = unwrap(correlation)
        self.strategy = strategy
        self.downstream = downstream
        self.repository = repository
        self.completion_size = completion_size
        self.completion_timeout = completion_timeout
        self.completion_interval = completion_interval
        self.completion_predicate = completion_predicate
        self.eager_check = eager_check
        self.complete_on_new_group = complete_on_new_group
        self.force_completion_on_stop = force_completion_on_stop
        self.close_on_completion = close_on_completion
        self.discard_on_timeout = discard_on_timeout
        self.ignore_invalid_keys = ignore_invalid_keys
        self.input_id = unwrap(input_id)
        self.recovery_interval = recovery_interval
        self.max_redeliveries = max_redeliveries
        self.dead_letter = dead_letter
        self._locks: dict[str, asyncio.Lock] = {}
        self._last_key: str | None = None
        self._timeouts: collections.deque[tuple[float, str]] = collections.deque()
        self._timeout_added = asyncio.Event()
        self._emitting: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []

    # -- incoming exchanges ----------------------------------------------------------------
    @property
    def step(self) -> Step:
        """The compiled step: a plain function for an in-memory repository (no await unless a
        group completes), the async path otherwise."""
        fast = all(hasattr(self.repository, name) for name in NOWAIT_METHODS)
        return nowait_step(self) if fast and not self.complete_on_new_group else self.__call__

    async def _completed_by_input(self, key: str, completed: CompletedGroup) -> Any:
        """Emit the group this input completed. The input's own work is done (the group is
        stored with it): a failure from here on belongs to the group, which stays unconfirmed
        for the recovery to redeliver, and must not fail (and dead-letter) the input."""
        self._locks.pop(key, None)
        try:
            if self.close_on_completion:
                await self.repository.close_key(key)
            await self._emit(completed)
        except Exception as exc:
            log.error(
                "%s: group %r (%s) is stored, but emitting it failed: %r; the recovery will "
                "redeliver it",
                self.name,
                key,
                completed.id,
                exc,
            )
        return STOP

    def _key(self, raw_key: Any, exchange: Exchange) -> str | None:
        """The key for what the correlation expression gave (None: ignore the input)."""
        if raw_key is None or raw_key == "":
            if self.ignore_invalid_keys:
                log.warning(
                    "%s: exchange %s has no correlation key; ignored", self.name, exchange.id
                )
                return None
            raise InvalidCorrelationKeyError(f"{self.name}: the correlation expression gave no key")
        return str(raw_key)

    async def __call__(self, exchange: Exchange) -> Any:
        raw_key = self.correlation(exchange)
        if raw_key is None or raw_key == "":
            if self.ignore_invalid_keys:
                log.warning(
                    "%s: exchange %s has no correlation key; ignored", self.name, exchange.id
                )
                return STOP
            raise InvalidCorrelationKeyError(f"{self.name}: the correlation expression gave no key")
        key = str(raw_key)
        if self.close_on_completion and await self.repository.is_closed(key):
            input_id = self.input_id(exchange) if self.input_id is not None else None
            if input_id is not None and await self.repository.completed_input(str(input_id)):
                log.info("%s: input %s is already aggregated (redelivered)", self.name, input_id)
                return STOP  # it is in the group that closed the key
            raise ClosedCorrelationKeyError(
                f"{self.name}: correlation key {key!r} is closed (its group already completed)"
            )
        if self.complete_on_new_group and self._last_key is not None and key != self._last_key:
            await self._complete_all("new_group", keep=key)
        self._last_key = key
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        async with lock:
            completed = await self._add(key, exchange)
        if completed is not None:
            return await self._completed_by_input(key, completed)
        return STOP

    async def _add(self, key: str, exchange: Exchange) -> CompletedGroup | None:
        input_id = self.input_id(exchange) if self.input_id is not None else None
        eager = (
            self.eager_check
            and self.completion_predicate is not None
            and bool(self.completion_predicate(exchange))
        )
        while True:
            group = await self.repository.get(key)
            if input_id is not None and (
                (group is not None and str(input_id) in group.input_ids)
                or await self.repository.completed_input(str(input_id))
            ):
                log.info("%s: input %s is already aggregated (redelivered)", self.name, input_id)
                return None
            old = _restore(group.state) if group is not None else None
            # A store that hands out its stored body (the in-memory one) sees a strategy's
            # appends at once: they are taken back when this input does not end up stored.
            stored = old.body if old is not None and old.body.__class__ is list else None
            kept = len(stored) if stored is not None else 0
            try:
                completed = await self._aggregate(key, exchange, group, old, input_id, eager)
            except ConcurrentUpdateError:
                if stored is not None:
                    del stored[kept:]
                continue  # another writer changed the group: re-read and aggregate again
            except BaseException:
                if stored is not None:
                    del stored[kept:]
                raise
            return completed

    async def _aggregate(
        self,
        key: str,
        exchange: Exchange,
        group: OpenGroup | None,
        old: Exchange | None,
        input_id: Any,
        eager: bool,
    ) -> CompletedGroup | None:
        """Aggregate ``exchange`` into ``group`` (``old``: its state) and store the result;
        the completed group when this input completes it. Raises ConcurrentUpdateError when
        another writer changed the group meanwhile."""
        aggregated = self.strategy(old, exchange)
        now = self.clock.time()
        input_ids = list(group.input_ids) if group is not None else []
        if input_id is not None:
            input_ids.append(str(input_id))
        updated = OpenGroup(
            key=key,
            state=(aggregated.body, aggregated.headers),
            size=(group.size if group is not None else 0) + 1,
            input_ids=input_ids,
            created=group.created if group is not None else now,
            updated=now,
            version=group.version if group is not None else 0,
        )
        trigger = "predicate" if eager else self._trigger(updated.size, exchange, aggregated)
        if trigger is None:
            await self.repository.put(updated)
            if self.completion_timeout is not None:
                self._timeouts.append((now + self.completion_timeout, key))
                self._timeout_added.set()
            return None
        completed = _completed(updated, trigger, now)
        await self.repository.complete(updated, completed)
        return completed

    def _trigger(self, size: int, incoming: Exchange, aggregated: Exchange) -> str | None:
        """What completes a group of ``size`` inputs now, if anything."""
        completion_size = self.completion_size
        if completion_size is not None:
            limit = completion_size(incoming) if callable(completion_size) else completion_size
            if limit is not None and size >= int(limit):
                return "size"
        if self.completion_predicate is not None and self.completion_predicate(aggregated):
            return "predicate"
        return None

    # -- completed groups --------------------------------------------------------------------
    async def _emit(self, completed: CompletedGroup, redelivered: bool = False) -> None:
        """Run the downstream steps for a completed group; confirm it when they succeed."""
        if completed.id in self._emitting:
            return
        self._emitting.add(completed.id)
        try:
            exchange = self._exchange(completed, redelivered)
            await run_to_completion(self.downstream, exchange)
            if exchange.exception is None:
                await self.repository.confirm(completed.id)
            else:
                log.error(
                    "%s: downstream failed for group %r (%s); it stays unconfirmed and will be "
                    "redelivered: %r",
                    self.name,
                    completed.key,
                    completed.id,
                    exchange.exception,
                )
        finally:
            self._emitting.discard(completed.id)

    def _exchange(self, completed: CompletedGroup, redelivered: bool) -> Exchange:
        body, headers = completed.state
        exchange = Exchange(body, headers)
        exchange.properties.update(
            {
                H.AGGREGATED_KEY: completed.key,
                H.AGGREGATED_SIZE: completed.size,
                H.AGGREGATED_COMPLETED_BY: completed.trigger,
                H.AGGREGATED_ID: completed.id,
                H.AGGREGATED_REDELIVERED: redelivered,
                H.AGGREGATED_REDELIVERY_COUNT: completed.redeliveries,
            }
        )
        return exchange

    async def _complete_key(self, key: str, trigger: str) -> None:
        lock = self._locks.get(key) or self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            group = await self.repository.get(key)
            if group is None:
                return
            completed = _completed(group, trigger, self.clock.time())
            try:
                await self.repository.complete(group, completed)
            except ConcurrentUpdateError:
                return  # it changed or completed meanwhile; its new state decides
        self._locks.pop(key, None)
        if trigger == "timeout" and self.discard_on_timeout:
            log.info("%s: group %r timed out and is discarded", self.name, key)
            await self.repository.confirm(completed.id)
            return
        if self.close_on_completion:
            await self.repository.close_key(key)
        await self._emit(completed)

    async def _complete_all(self, trigger: str, keep: str | None = None) -> None:
        for group in await self.repository.open_groups():
            if group.key != keep:
                await self._complete_key(group.key, trigger)


def _restore(state: Any) -> Exchange:
    body, headers = state
    return Exchange(body, headers)


def _completed(group: OpenGroup, trigger: str, now: float) -> CompletedGroup:
    return CompletedGroup(
        id=uuid.uuid4().hex,
        key=group.key,
        state=group.state,
        size=group.size,
        trigger=trigger,
        completed=now,
    )
