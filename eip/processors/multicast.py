"""Multicast: send a copy of the exchange to each output, then fold the results.

The recipient list (:mod:`eip.processors.recipient_list`) resolves its outputs per message and
then runs this same engine. Decisions:

- Each output gets ``exchange.copy()``: its own headers and properties, the same body object
  (a shallow copy, as in Camel); an output that mutates a body in place should copy it first.
  The copy keeps the route's original message, for ``use_original_message``.
- Sequential mode calls the outputs in order as plain calls, so with sync outputs the whole
  multicast is one sync call. Parallel mode makes the same calls (a sync output simply finishes
  inline) and turns only the awaitables they return into tasks, at most ``max_parallel`` at
  once. Results are folded in output order in both modes (Camel's non-streaming default), so
  aggregation is deterministic. ``use_original`` is the same as no strategy here.
- Each output is a pipeline with the route's error handling, so a failing output is redelivered
  on its own; a failure the error handler handled (dead letter channel, ``handled()``) counts
  as a success of that output. When the multicast then fails, the exchange is marked as handled
  by that output's error handling, so the route does not redeliver the whole multicast.
- ``stop_on_exception``: no further output is started after a failure and the exchange fails
  with it; in parallel mode outputs already running are awaited, not cancelled (a half-done
  send is worse than waiting). Otherwise all outputs run, failed ones are given to the
  strategy, and the exchange fails with the first failure unless the strategy's result carries
  no exception (see :mod:`eip.processors.strategies`). Without a strategy the exchange
  continues unchanged (Camel), or fails with the first failure.
- ``timeout`` (parallel only): outputs not finished in time are cancelled and the exchange
  fails with :class:`~eip.errors.ExchangeTimeoutError` naming them and those never started.
  It is a bound on real time (``asyncio.wait``), not a schedule, so it does not use the
  context clock; it runs from the first output that has to be awaited.
- Completions registered on a copy (an idempotent consumer in an output, say) are handed over
  to the exchange, so they complete with it (Camel's ``handoverCompletions``).
- **A failure says where.** When an output's failure fails the exchange, it is raised as a
  :class:`~eip.errors.PartFailedError` naming the output (``multicast output index 1
  (mock:b)``, ``recipient_list recipient index 0 (http://erp/api)``), with the output's own
  error as ``__cause__``; the failure headers keep the original's type and message, with the
  output put in front of ``eip.failure.endpoint``, and so does the failure history's record
  (:func:`eip.failures.locate`). A time-out is not one output's failure and stays an
  ``ExchangeTimeoutError``.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable, Sequence
from typing import Any

from eip import headers as H
from eip._callables import is_async_callable
from eip.errors import ExchangeTimeoutError, PartFailedError
from eip.failures import RECORD_PROPERTY, hand_over_record, locate
from eip.message import Exchange
from eip.processors.base import STOP, Step
from eip.processors.error_handler import CLAUSE_RAN
from eip.processors.strategies import AggregationStrategy, adopt, use_original

__all__ = ["Multicast", "adopt_failure", "part_failed"]

_FAILURE_HEADERS = (
    H.EXCEPTION_TYPE,
    H.EXCEPTION_MESSAGE,
    H.FAILURE_ENDPOINT,
    H.FAILURE_ROUTE,
    H.REDELIVERY_COUNT,
    H.REDELIVERED,
)


def adopt_failure(exchange: Exchange, failed: Exchange) -> BaseException:
    """Carry a failed copy's error handling state to ``exchange`` and return its exception.

    The copy's failure was already through error handling (redelivery, clauses) where it
    failed; marking ``exchange`` with the same handler keeps the route from redelivering again.
    """
    error = failed.exception
    assert error is not None
    exchange.failure_handler = failed.failure_handler
    if failed.failure_handler is not None:
        headers = failed.headers
        for name in _FAILURE_HEADERS:
            if name in headers:
                exchange.headers[name] = headers[name]
        ran = failed.properties.get(CLAUSE_RAN)
        if ran is not None:  # the clause that ran for it does not run again higher up
            exchange.properties[CLAUSE_RAN] = ran
    return error


def part_failed(
    exchange: Exchange, failed: Exchange, eip: str, index: int, branch: str | None = None
) -> PartFailedError:
    """:func:`adopt_failure`, then the error that says which part failed (its cause the part's
    error). The part goes in front of the adopted ``eip.failure.endpoint``, and the part's
    failure record (already located, see :func:`eip.failures.locate`) becomes the
    exchange's, so an enclosing split or multicast can put its own part in front."""
    cause = adopt_failure(exchange, failed)
    error = PartFailedError(eip, index, cause, branch=branch)
    error.exchange_id = exchange.id  # the route id is the pipeline's to give (it re-raises)
    endpoint = failed.headers.get(H.FAILURE_ENDPOINT)
    if failed.failure_handler is not None and endpoint is not None:
        exchange.headers[H.FAILURE_ENDPOINT] = f"{error.where} > {endpoint}"
    hand_over_record(failed, exchange)
    return error


_OUTPUT_LABEL = re.compile(r"output \d+ \((.*)\)\Z", re.DOTALL)


def _branch(label: str) -> str:
    """The endpoint or steps of an output, from its label (``output 2 (mock:b)``: ``mock:b``)."""
    match = _OUTPUT_LABEL.match(label)
    return match.group(1) if match else label


class _Fold:
    """Per-message state: the exchange, the folded result and the failed copies' indexes."""

    __slots__ = ("exchange", "failed", "failure", "labels", "result")

    def __init__(self, exchange: Exchange, labels: Sequence[str]) -> None:
        self.exchange = exchange
        self.labels = labels
        self.result: Exchange | None = None
        self.failure: Exchange | None = None
        #: The failed copies (by id) and their indexes: made on the first failure only.
        self.failed: dict[int, tuple[Exchange, int]] | None = None


class Multicast:
    """The multicast engine: ``send(exchange, outputs, labels)`` is the step's work."""

    __slots__ = ("aggregate", "max_parallel", "name", "parallel", "stop_on_exception", "timeout")

    def __init__(
        self,
        name: str = "multicast",
        *,
        parallel: bool = False,
        max_parallel: int = 10,
        aggregate: AggregationStrategy | None = None,
        stop_on_exception: bool = False,
        timeout: float | None = None,
    ) -> None:
        if max_parallel < 1:
            raise ValueError(f"max_parallel must be >= 1, got {max_parallel}")
        if timeout is not None and (not parallel or timeout <= 0):
            raise ValueError("timeout needs parallel=True and must be > 0")
        if aggregate is not None and not callable(aggregate):
            raise TypeError(f"aggregate must be callable, got {type(aggregate).__name__}")
        if aggregate is not None and is_async_callable(aggregate):
            raise TypeError("aggregation strategies are sync by contract; got an async function")
        self.name = name
        self.parallel = parallel
        self.max_parallel = max_parallel
        self.aggregate = None if aggregate is use_original else aggregate
        self.stop_on_exception = stop_on_exception
        self.timeout = timeout

    def send(self, exchange: Exchange, outputs: Sequence[Step], labels: Sequence[str]) -> Any:
        """Run every output on a copy; None when all finished synchronously, else an awaitable."""
        fold = _Fold(exchange, labels)
        for index, output in enumerate(outputs):
            copy = _copy(exchange)
            try:
                result = output(copy)
            except Exception as exc:
                if self._settle(fold, copy, exc, index):
                    break
                continue
            if result is not None and result is not STOP:
                if self.parallel:
                    return self._parallel(fold, outputs, labels, index, copy, result)
                return self._sequential(fold, outputs, index, copy, result)
            if self._settle(fold, copy, None, index):
                break
        self._finish(fold)
        return None

    def _settle(self, fold: _Fold, copy: Exchange, error: BaseException | None, index: int) -> bool:
        """Take one output's outcome; True when the multicast must stop here."""
        copy.handover_completions(fold.exchange)
        if error is not None:
            copy.exception = error
            if fold.failed is None:
                fold.failed = {}
            fold.failed[id(copy)] = (copy, index)
            if fold.failure is None:
                fold.failure = copy
        if RECORD_PROPERTY in copy.properties:  # a failure was recorded in this output
            locate(copy, PartFailedError.describe(self.name, index, self._branch(fold, index)))
        if error is not None and self.stop_on_exception:
            return True
        if self.aggregate is not None:
            fold.result = self.aggregate(fold.result, copy)
        return False

    @staticmethod
    def _branch(fold: _Fold, index: int) -> str | None:
        labels = fold.labels
        return _branch(labels[index]) if index < len(labels) else None

    def _raise(self, fold: _Fold, failed: Exchange) -> PartFailedError:
        """The error for the output ``failed``: which one it was, its failure the cause."""
        index = fold.failed[id(failed)][1] if fold.failed and id(failed) in fold.failed else 0
        return part_failed(fold.exchange, failed, self.name, index, self._branch(fold, index))

    def _finish(self, fold: _Fold) -> None:
        exchange = fold.exchange
        failure = fold.failure
        if self.aggregate is None or (failure is not None and self.stop_on_exception):
            if failure is not None:
                raise self._raise(fold, failure)
            return
        result = fold.result
        if result is None:
            return
        if result.exception is not None:
            if failure is not None and failure.exception is result.exception:
                raise self._raise(fold, failure)
            if fold.failed is not None and id(result) in fold.failed:
                raise self._raise(fold, result)
            raise adopt_failure(exchange, result)  # the strategy's own failure
        adopt(exchange, result)

    async def _sequential(
        self, fold: _Fold, outputs: Sequence[Step], start: int, copy: Exchange, pending: Any
    ) -> None:
        exchange = fold.exchange
        for index in range(start, len(outputs)):
            error: BaseException | None = None
            try:
                if index != start:
                    copy = _copy(exchange)
                    pending = outputs[index](copy)
                if pending is not None and pending is not STOP:
                    await pending
            except Exception as exc:
                error = exc
            if self._settle(fold, copy, error, index):
                break
        self._finish(fold)

    async def _parallel(
        self,
        fold: _Fold,
        outputs: Sequence[Step],
        labels: Sequence[str],
        start: int,
        copy: Exchange,
        pending: Any,
    ) -> None:
        exchange = fold.exchange
        loop = asyncio.get_running_loop()
        deadline = None if self.timeout is None else loop.time() + self.timeout
        copies = {start: copy}
        running: dict[asyncio.Future[Any], int] = {asyncio.ensure_future(pending): start}
        finished: list[tuple[int, BaseException | None]] = []
        following = start + 1
        stopped = False
        try:
            while True:
                while not stopped and following < len(outputs) and len(running) < self.max_parallel:
                    index, following = following, following + 1
                    copies[index] = copy = _copy(exchange)
                    try:
                        result = outputs[index](copy)
                    except Exception as exc:
                        finished.append((index, exc))
                        stopped = self.stop_on_exception
                        continue
                    if result is None or result is STOP:
                        finished.append((index, None))
                    else:
                        running[asyncio.ensure_future(result)] = index
                if not running:
                    break
                wait = None if deadline is None else deadline - loop.time()
                done, _ = await asyncio.wait(
                    running, timeout=wait, return_when=asyncio.FIRST_COMPLETED
                )
                if not done:
                    await self._time_out(fold, copies, running, labels, following)
                for future in done:
                    error = future.exception()
                    finished.append((running.pop(future), error))
                    stopped = stopped or (error is not None and self.stop_on_exception)
        finally:
            for future in running:
                future.cancel()
        finished.sort(key=_first)
        try:
            for index, error in finished:
                if self._settle(fold, copies[index], error, index):
                    break
        finally:
            for copy in copies.values():  # those after a stop were not settled
                copy.handover_completions(exchange)
        self._finish(fold)

    async def _time_out(
        self,
        fold: _Fold,
        copies: dict[int, Exchange],
        running: dict[asyncio.Future[Any], int],
        labels: Sequence[str],
        following: int,
    ) -> None:
        for future in running:
            future.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        for copy in copies.values():
            copy.handover_completions(fold.exchange)
        late = _names(labels, sorted(running.values()))
        unstarted = _names(labels, range(following, len(labels)))
        running.clear()
        text = f"{self.name} timed out after {self.timeout}s; not finished: {late}"
        if unstarted:
            text += f"; not started: {unstarted}"
        raise ExchangeTimeoutError(text)


def _copy(exchange: Exchange) -> Exchange:
    """An output's copy; it keeps the route's original message for the dead letter channel."""
    copy = exchange.copy()
    copy.original = exchange.original
    return copy


def _first(item: tuple[int, Any]) -> int:
    return item[0]


def _names(labels: Sequence[str], indexes: Iterable[int]) -> str:
    return ", ".join(labels[i] for i in indexes)
