"""Where a reconcile's records come from: a :class:`Source` is an async iterable of records.

A record is a dict (or a msgspec Struct, a dataclass, any mapping); its fields are compared.
The engine reads a source a batch at a time (:meth:`Source.batches`, a list per await), so a
million records cost a few hundred awaits, not a million; ``async for record in source``
reads one record at a time. Each run reads the source afresh.

Adapters:

- :func:`file_source` (:mod:`eip.reconcile.file_sources`): JSON lines, CSV (every value a
  str) or a JSON array, read in chunks off the event loop;
- :func:`http_source` (:mod:`eip.reconcile.http_sources`): GETs through an ``http:``
  endpoint of the route (its auth, timeouts and placeholders apply), page after page:
  RFC 8288 ``Link: <...>; rel="next"``, or a page number parameter until a short page;
- :func:`callable_source`: a function returning an iterable, an async iterable, or an
  awaitable of either: a database query, a generator, a list.

``source.map(fn)`` reshapes each record (a :class:`~eip.mapping.FieldMapper` to bring both
sides to one shape) and ``source.filter(predicate)`` keeps some of them.
"""

from __future__ import annotations

import asyncio
import inspect
from abc import ABC, abstractmethod
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from itertools import islice
from pathlib import Path
from typing import Any

from eip.endpoint import EndpointRef, Sender
from eip.reconcile.base import ReconcileError

__all__ = ["BATCH", "Resolve", "Source", "as_source", "at_path", "callable_source"]

#: What binds an endpoint source: the route's producer for an endpoint.
Resolve = Callable[[EndpointRef], Sender]

BATCH = 2_000


class Source(ABC):
    """An async iterable of records, read in batches. Subclass and implement
    :meth:`batches`; endpoint-backed sources also implement :meth:`bind`."""

    name: str = "source"

    @abstractmethod
    def batches(self) -> AsyncIterator[list[Any]]:
        """The records, a list at a time, read from the start."""

    def bind(self, resolve: Resolve) -> Source:
        """This source with its endpoints resolved to the route's producers (at compile)."""
        return self

    def keyed_batches(self, key: str) -> AsyncIterator[tuple[list[Any], list[bytes]]] | None:
        """Optionally, the records as ``(keys, JSON texts)`` batches, keyed by the field
        ``key``: a source that reads JSON can skip decoding whole records (the engine
        decodes only those that differ). None (the default): use :meth:`batches`."""
        return None

    def describe(self) -> str:
        return self.name

    def map(self, fn: Callable[[Any], Any]) -> Source:
        """Each record becomes ``fn(record)`` (a FieldMapper, a function)."""
        return _Reshaped(self, fn, None)

    def filter(self, predicate: Callable[[Any], Any]) -> Source:
        """Keep the records for which ``predicate(record)`` is true."""
        return _Reshaped(self, None, predicate)

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._records()

    async def _records(self) -> AsyncIterator[Any]:
        async for batch in self.batches():
            for record in batch:
                yield record


class _Reshaped(Source):
    def __init__(
        self,
        inner: Source,
        fn: Callable[[Any], Any] | None,
        predicate: Callable[[Any], Any] | None,
    ) -> None:
        self.inner = inner
        self.fn = fn
        self.predicate = predicate
        self.name = inner.name

    def bind(self, resolve: Resolve) -> Source:
        return _Reshaped(self.inner.bind(resolve), self.fn, self.predicate)

    def describe(self) -> str:
        step = "map" if self.fn is not None else "filter"
        return f"{self.inner.describe()}.{step}()"

    async def batches(self) -> AsyncIterator[list[Any]]:
        fn, keep = self.fn, self.predicate
        seen = 0
        async for batch in self.inner.batches():
            try:
                if fn is not None:
                    batch = [fn(record) for record in batch]
                if keep is not None:
                    batch = [record for record in batch if keep(record)]
            except Exception as exc:
                raise self._failure(batch, seen, exc) from exc
            seen += len(batch)
            if batch:
                yield batch

    def _failure(self, batch: list[Any], seen: int, exc: Exception) -> ReconcileError:
        """Find the record that failed (the slow way: only once, on the error path)."""
        what = "map" if self.fn is not None else "filter"
        for index, record in enumerate(batch):
            try:
                if self.fn is not None:
                    self.fn(record)
                elif self.predicate is not None:
                    self.predicate(record)
            except Exception as error:
                return ReconcileError(
                    f"source '{self.name}': {what} failed on record {seen + index + 1}: {error}"
                )
        return ReconcileError(f"source '{self.name}': {what} failed: {exc}")


def at_path(doc: Any, path: str, where: str) -> list[Any]:
    """The list at a dotted ``path`` of a decoded document."""
    value = doc
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            raise ReconcileError(f"{where}: no '{path}' in the document")
        value = value[part]
    if not isinstance(value, list):
        raise ReconcileError(f"{where}: '{path}' is a {type(value).__name__}, not a list")
    return value


class CallableSource(Source):
    """Records a function returns: see :func:`callable_source`."""

    def __init__(self, fn: Callable[[], Any], *, name: str, batch_size: int) -> None:
        self.fn = fn
        self.name = name
        self.batch_size = batch_size

    async def batches(self) -> AsyncIterator[list[Any]]:
        try:
            produced = self.fn()
            if inspect.isawaitable(produced):
                produced = await produced
        except Exception as exc:
            raise ReconcileError(f"source '{self.name}': {exc}") from exc
        if isinstance(produced, AsyncIterable):
            async for batch in self._async_batches(produced):
                yield batch
            return
        if not isinstance(produced, Iterable) or isinstance(produced, str | bytes | dict):
            raise ReconcileError(
                f"source '{self.name}': the function returned a {type(produced).__name__}, "
                "not an iterable of records"
            )
        records, read = iter(produced), 0
        while True:
            try:
                batch = list(islice(records, self.batch_size))
            except Exception as exc:
                raise self._failed(read, exc) from exc
            if not batch:
                return
            read += len(batch)
            yield batch
            await asyncio.sleep(0)  # a generator's work must not hold the loop for the run

    async def _async_batches(self, produced: AsyncIterable[Any]) -> AsyncIterator[list[Any]]:
        records = aiter(produced)
        batch: list[Any] = []
        read = 0
        while True:
            try:
                record = await anext(records)
            except StopAsyncIteration:
                break
            except Exception as exc:
                raise self._failed(read + len(batch), exc) from exc
            batch.append(record)
            if len(batch) >= self.batch_size:
                read += len(batch)
                yield batch
                batch = []
        if batch:
            yield batch

    def _failed(self, read: int, exc: Exception) -> ReconcileError:
        return ReconcileError(f"source '{self.name}': {exc} (after {read} records)")


def callable_source(
    fn: Callable[[], Any], *, name: str | None = None, batch_size: int = BATCH
) -> Source:
    """Records that ``fn()`` returns: a list, a generator, an async generator, or an
    awaitable of one (``lambda: pool.fetch("SELECT ...")``). Called once per run."""
    if not callable(fn):
        raise TypeError(f"callable_source needs a function, got {type(fn).__name__}")
    if batch_size < 1:
        raise ValueError(f"callable_source: batch_size must be >= 1, got {batch_size}")
    label = name or str(getattr(fn, "__name__", "records"))
    return CallableSource(fn, name=label, batch_size=batch_size)


def as_source(value: Any, side: str) -> Source:
    """A :class:`Source` from what a reconcile was given: a Source, a file path (a ``Path``),
    or a function (see :func:`callable_source`)."""
    if isinstance(value, Source):
        return value
    if isinstance(value, Path):
        from eip.reconcile.file_sources import file_source

        return file_source(value)
    if callable(value):
        return callable_source(value, name=side)
    raise TypeError(
        f"{side} must be a source (file_source, http_source, callable_source), a Path or a "
        f"function, got {type(value).__name__}"
    )
