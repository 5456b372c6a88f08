"""Splitter: run a sub-pipeline for each part of a message, streaming.

The split expression may return a list, any iterable (a generator over a file), or an async
iterable; parts are pulled one at a time, so a huge input is never held whole (with a streaming
source, see :mod:`eip.splitters`). Each part is a new exchange with a copy of the headers and
properties plus ``eip.split.index``, ``eip.split.size`` and ``eip.split.complete``. For an
iterator the size is not known in advance: it is set on the last part only (found by reading
one part ahead), as in Camel's streaming mode.

Each part's unit of work is completed when the part is done, so an idempotent consumer inside
the split confirms or releases its key per part. A part that fails (after the route's error
handling) stops the split at once with ``stop_on_exception``; otherwise the remaining parts
still run and the first failure fails the exchange at the end (Camel's behaviour). That failure
already went through the route's error handling in its part (redelivery, ``on_exception``), so
the exchange is marked as handled by it, as multicast does: the split is not redelivered as a
whole, and no clause runs a second time for it. Without an aggregation strategy the original
message continues after the split; with one, the strategy folds the parts' results
(``strategy(None, first)``, then ``strategy(so_far, next)``) and that becomes the message.

A part's message id (``eip.message.id``) is its own, derived from the parent's:
``f"{parent_id}#{index}"``, as Camel gives each part its own exchange id. A copied id made every
part after the first a redelivery of the first to anything keyed on the message id (the
aggregator's default input id, an idempotent consumer), which dropped them silently; a derived
id is unique per part and stable across redeliveries of the parent (a random one would not be),
so at-least-once redelivery still finds the parts it already has. The parent keeps its own id,
also when a strategy folds the parts into its message; a parent without an id gives parts
without one.

That failure says which part it was: the exchange fails with a
:class:`~eip.errors.PartFailedError` (``split part index 2 failed: ValueError: ...``) whose
``__cause__`` is the part's own error, the one ``on_exception`` clauses match. The failure
headers keep the original's type and message, with the part put in front of
``eip.failure.endpoint``, and the failure history's record of a part (dead-lettered or not)
names it too (:func:`eip.failures.locate`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any

from eip import headers as H
from eip._callables import is_async_callable
from eip.errors import PartFailedError
from eip.failures import RECORD_PROPERTY, locate
from eip.headers import MESSAGE_ID
from eip.message import Exchange
from eip.processors.base import STOP, Step, run_to_completion
from eip.processors.multicast import part_failed

__all__ = ["Splitter"]

_END = object()  # the end of a split source (next's default)

Strategy = Callable[[Exchange | None, Exchange], Exchange]


class Splitter:
    def __init__(
        self,
        expression: Callable[[Exchange], Any],
        parts: Step,
        *,
        aggregate: Strategy | None = None,
        parallel: bool = False,
        max_parallel: int = 10,
        stop_on_exception: bool = False,
    ) -> None:
        self.expression = expression
        self.expression_is_async = is_async_callable(expression)
        self.parts = parts
        self.aggregate = aggregate
        self.parallel = parallel
        self.max_parallel = max_parallel
        self.stop_on_exception = stop_on_exception

    async def __call__(self, exchange: Exchange) -> Any:
        source = self.expression(exchange)
        if self.expression_is_async:
            source = await source
        size = len(source) if hasattr(source, "__len__") else None
        state = _SplitState(exchange, size, self.aggregate)
        try:
            if hasattr(source, "__aiter__"):
                parts: AsyncIterator[tuple[Any, bool]] = _alookahead(source)
                if self.parallel:
                    await self._run_parallel(parts, state)
                else:
                    async for item, last in parts:
                        if not await self._one(state.part(item, last), state):
                            break
            elif self.parallel:
                await self._run_parallel(_lookahead(source), state)
            else:
                await self._run_iterator(iter(source), state)
        finally:
            await _close(source)
        if state.failed is not None:
            raise part_failed(exchange, state.failed, "split", state.failed_index)
        if state.result is not None:
            parent_id = exchange.headers.get(MESSAGE_ID)
            exchange.message = state.result
            if parent_id is not None:
                exchange.headers[MESSAGE_ID] = parent_id
        return None

    async def _run_iterator(self, iterator: Iterator[Any], state: _SplitState) -> None:
        """The sequential split of a sync source: what ``_lookahead``, ``state.part`` and
        ``_one`` do, inline, so that a part whose steps finish synchronously (sync steps, an
        in-memory aggregator) costs no coroutine and no generator of its own."""
        parts, stop_on_exception, aggregate = self.parts, self.stop_on_exception, self.aggregate
        original, settle = state.original, state.settle
        headers, pattern = original.headers, original.pattern
        route_id, trace_context = original.route_id, original.trace_context
        # Nothing routes the original while its parts run, so its properties stay as they are.
        inherited = original.properties
        known_size = state.size
        split_index, split_size, split_complete = H.SPLIT_INDEX, H.SPLIT_SIZE, H.SPLIT_COMPLETE
        parent_id = headers.get(MESSAGE_ID) if headers else None
        following = next(iterator, _END)
        index = 0
        while following is not _END:
            body = following
            following = next(iterator, _END)
            last = following is _END
            part = Exchange(body, dict(headers) if headers else {}, pattern)
            if parent_id is not None:
                part.headers[MESSAGE_ID] = f"{parent_id}#{index}"
            if known_size is not None:
                size: int | None = known_size
            else:
                size = index + 1 if last else None
            # The part's properties, set and read here as the slot they are: the property's
            # getter and setter would be two calls per part of the few it costs. Most
            # originals have none to inherit, and a dict display is then half the cost.
            if size is None:
                part._properties = (
                    {**inherited, split_index: index, split_complete: last}
                    if inherited
                    else {split_index: index, split_complete: last}
                )
            elif inherited:
                part._properties = {
                    **inherited,
                    split_index: index,
                    split_size: size,
                    split_complete: last,
                }
            else:
                part._properties = {split_index: index, split_size: size, split_complete: last}
            part.route_id = route_id
            part.trace_context = trace_context
            index += 1
            try:
                result = parts(part)
                if result is not None and result is not STOP:
                    await result
            except Exception as exc:
                part.exception = exc
            if part._uow is not None:  # what part.done() does first: no callbacks, no work
                done = part.done()
                if done is not None:
                    await done
            properties = part._properties
            if (
                part.exception is not None
                or aggregate is not None
                or (properties is not None and RECORD_PROPERTY in properties)
            ) and not settle(part, index - 1, stop_on_exception):
                return

    async def _one(self, part: Exchange, state: _SplitState) -> bool:
        """Process one part; False when the split must stop."""
        index = part.properties[H.SPLIT_INDEX]  # before the part's steps can change it
        await run_to_completion(self.parts, part)
        return state.settle(part, index, self.stop_on_exception)

    async def _run_parallel(self, items: Any, state: _SplitState) -> None:
        running: set[asyncio.Task[bool]] = set()
        stop = False

        async def launch(part: Exchange) -> bool:
            nonlocal stop
            while len(running) >= self.max_parallel:
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                running.difference_update(done)
                if not all(task.result() for task in done):
                    stop = True
                    return False
            running.add(asyncio.create_task(self._one(part, state)))
            return True

        try:
            if isinstance(items, Iterator):
                for item, last in items:
                    if stop or not await launch(state.part(item, last)):
                        break
            else:
                async for item, last in items:
                    if stop or not await launch(state.part(item, last)):
                        break
            if running:
                if stop and self.stop_on_exception:
                    for task in running:
                        task.cancel()
                await asyncio.gather(*running, return_exceptions=True)
        finally:
            for task in running:
                task.cancel()


class _SplitState:
    """Per-split bookkeeping: part numbering, the folded result and the first failure."""

    __slots__ = ("aggregate", "failed", "failed_index", "index", "original", "result", "size")

    def __init__(self, original: Exchange, size: int | None, aggregate: Strategy | None) -> None:
        self.original = original
        self.size = size
        self.aggregate = aggregate
        self.index = 0
        self.result: Exchange | None = None
        self.failed: Exchange | None = None  # the first part that failed
        self.failed_index = 0

    def part(self, body: Any, last: bool) -> Exchange:
        original = self.original
        part = Exchange(body, dict(original.headers), original.pattern)
        parent_id = original.headers.get(MESSAGE_ID)
        if parent_id is not None:
            part.headers[MESSAGE_ID] = f"{parent_id}#{self.index}"
        properties = dict(original.properties)
        properties[H.SPLIT_INDEX] = self.index
        size = self.size if self.size is not None else (self.index + 1 if last else None)
        if size is not None:
            properties[H.SPLIT_SIZE] = size
        properties[H.SPLIT_COMPLETE] = last
        part.properties = properties
        part.route_id = original.route_id
        part.trace_context = original.trace_context
        self.index += 1
        return part

    def settle(self, part: Exchange, index: int, stop_on_exception: bool) -> bool:
        if RECORD_PROPERTY in part.properties:  # a failure was recorded in this part
            locate(part, PartFailedError.describe("split", index))
        if part.exception is not None:
            if self.failed is None:
                self.failed = part
                self.failed_index = index
            return not stop_on_exception
        if self.aggregate is not None:
            self.result = self.aggregate(self.result, part)
        return True


async def _close(source: Any) -> None:
    """Close a generator we stopped early, so the file it reads is closed now, not at GC."""
    close = getattr(source, "close", None)
    if close is not None and not isinstance(source, list | tuple):
        close()
    aclose = getattr(source, "aclose", None)
    if aclose is not None:
        await aclose()


def _lookahead(source: Iterable[Any]) -> Iterator[tuple[Any, bool]]:
    """Yield ``(item, is_last)``, reading one item ahead so the last one is known."""
    iterator = iter(source)
    try:
        current = next(iterator)
    except StopIteration:
        return
    for following in iterator:
        yield current, False
        current = following
    yield current, True


async def _alookahead(source: Any) -> AsyncIterator[tuple[Any, bool]]:
    iterator = source.__aiter__()
    try:
        current = await iterator.__anext__()
    except StopAsyncIteration:
        return
    async for following in iterator:
        yield current, False
        current = following
    yield current, True
