"""Durable seda: ``seda:orders?durable=true&path=data/seda.db`` keeps the queue in SQLite.

At-least-once across the hop, where memory seda is at-most-once:

- **A send returns once the message is committed** to the file (:mod:`.seda_store`), so the
  route upstream acknowledges its own source (a RabbitMQ ack, a moved file) only after that.
- **A row is deleted only after its exchange completed**: it succeeded, or the consuming
  route's error handling handled the failure (a dead letter channel took it). A crash before
  then redelivers it at the next start, in order and with the header ``seda.redelivered``;
  downstream steps should be idempotent, as after any at-least-once hop.
- **A failure nothing handled** is kept in the file, marked failed with its error, and not
  delivered again (a poison message must not loop across restarts); the log says so. With
  ``wait_for_completion`` (or an in-out exchange) the failure goes back to the sender instead,
  which then owns it, and the row is deleted.
- **What crosses**: the headers and the body, never the exchange properties (as over a
  broker). Bodies of ``bytes``, ``str``, ``None``, ``bool``, ``int``, ``float``, or ``dict`` /
  ``list`` of those, which come back equal and of the same types; anything else (a Struct, a
  tuple, a naive datetime) fails the send with an EndpointError that says to marshal it first.
  Header values are written as msgpack: a tuple comes back as a list, a Struct as a dict, a
  naive datetime as its ISO text. The consumer always gets what was decoded from the stored
  bytes, so a message looks the same whether or not the process restarted in between.
- ``size``, ``block_when_full``, ``offer_timeout`` and ``concurrent_consumers`` behave as for
  memory seda. ``size`` bounds the messages written and not yet taken by a consumer; after a
  restart the rows found in the file are delivered even when there are more than ``size``.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

import msgspec

from eip.components.base import Producer, process_exchange
from eip.components.seda import SedaConsumer, offer
from eip.components.seda_store import SedaStore, StoredRow
from eip.errors import EndpointError
from eip.message import Exchange, ExchangePattern

if TYPE_CHECKING:
    from eip.components.seda import SedaComponent, SedaSpec
    from eip.runtime.route import Route

__all__ = [
    "REDELIVERED",
    "DurableQueue",
    "DurableSedaConsumer",
    "DurableSedaProducer",
    "DurableStores",
    "decode_row",
    "encode_message",
]

log = logging.getLogger("eip.seda")

#: Set (True) on a message found in the file at start: it may have been processed before.
REDELIVERED = "seda.redelivered"

RAW, TEXT, PACKED = 0, 1, 2  # how a body is stored: bytes as they are, UTF-8 text, msgpack
_SCALARS = (bool, int, float)
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder()


class _Item:
    """A committed message waiting for a consumer (and, with a waiting sender, its waiter)."""

    __slots__ = ("body", "headers", "pattern", "row_id", "trace_context", "waiter")

    def __init__(self, body: Any, headers: dict[str, Any], row_id: int = 0) -> None:
        self.body = body
        self.headers = headers
        self.row_id = row_id
        self.pattern = ExchangePattern.IN_ONLY
        self.trace_context: Any = None
        self.waiter: asyncio.Future[Exchange] | None = None


# -- what is stored ------------------------------------------------------------------------
def encode_message(headers: dict[str, Any], body: Any, where: str) -> tuple[_Item, bytes, int, Any]:
    """(the item the consumer gets, headers blob, body kind, body blob); EndpointError for a
    body or header that cannot cross the file as it is."""
    try:
        header_blob = _encoder.encode(headers)
    except (TypeError, OverflowError, ValueError) as exc:
        raise EndpointError(
            f"{where}: a header value cannot be stored ({exc}); durable seda keeps header values "
            "msgpack can write (str, bytes, numbers, bool, None, lists, dicts)",
            endpoint=where,
        ) from exc
    kind, blob, copy = _encode_body(body, where)
    return _Item(copy, _decoder.decode(header_blob)), header_blob, kind, blob


def _encode_body(body: Any, where: str) -> tuple[int, Any, Any]:
    cls = type(body)
    if cls is bytes:
        return RAW, body, body
    if cls is str:
        try:
            return TEXT, body.encode(), body
        except UnicodeEncodeError as exc:
            raise _unsupported(where, "a str that is not valid Unicode") from exc
    if body is None or cls in _SCALARS:
        return PACKED, _encoder.encode(body), body
    if cls is dict or cls is list:
        try:
            blob = _encoder.encode(body)
        except (TypeError, OverflowError, ValueError) as exc:
            raise _unsupported(
                where, f"a {cls.__name__} holding a value msgpack cannot write ({exc})"
            ) from exc
        copy = _decoder.decode(blob)
        if copy != body:
            raise _unsupported(
                where,
                f"a {cls.__name__} that would not come back equal (a tuple, Struct, "
                "datetime or NaN inside)",
            )
        return PACKED, blob, copy
    raise _unsupported(where, f"a body of type {cls.__name__}")


def _unsupported(where: str, what: str) -> EndpointError:
    return EndpointError(
        f"{where} is durable and cannot store {what}: it keeps bytes, str, None, bool, int, "
        "float, and dicts and lists of those; marshal the body first (.marshal(json()))",
        endpoint=where,
    )


def decode_row(row: StoredRow) -> _Item:
    """The item for a row found in the file at start, marked redelivered."""
    headers = _decoder.decode(row.headers)
    if not isinstance(headers, dict):
        raise ValueError(f"headers are a {type(headers).__name__}, not a map")
    if row.kind == RAW:
        body: Any = bytes(row.body or b"")
    elif row.kind == TEXT:
        body = bytes(row.body or b"").decode()
    elif row.kind == PACKED:
        body = _decoder.decode(row.body or b"")
    else:
        raise ValueError(f"unknown body kind {row.kind}")
    headers[REDELIVERED] = True
    return _Item(body, headers, row.id)


# -- the queues ------------------------------------------------------------------------------
class DurableQueue:
    """One durable seda queue: committed messages in order (``items``), and one ticket per
    message written and not yet taken (``room``, bounded by ``size``) for back-pressure."""

    def __init__(self, name: str, store: SedaStore, size: int) -> None:
        self.name = name
        self.store = store
        self.items: asyncio.Queue[_Item] = asyncio.Queue()
        self.room: asyncio.Queue[None] = asyncio.Queue(size)
        self._untracked = 0  # recovered items beyond ``size``: they hold no ticket

    def recover(self, rows: list[StoredRow]) -> None:
        for row in rows:
            try:
                item = decode_row(row)
            except Exception as exc:
                log.error(
                    "seda:%s: row %d of %s cannot be read (%s); kept as failed",
                    self.name,
                    row.id,
                    self.store.path,
                    exc,
                )
                self.store.mark_failed(row.id, f"cannot be read: {exc}")
                continue
            self.items.put_nowait(item)
            try:
                self.room.put_nowait(None)
            except asyncio.QueueFull:
                self._untracked += 1
        if rows:
            log.info(
                "seda:%s: %d message(s) from %s delivered again",
                self.name,
                len(rows),
                self.store.path,
            )

    def put(self, item: _Item, headers: bytes, kind: int, body: Any) -> asyncio.Future[None]:
        """Write ``item`` (its ticket already taken); the future is done once it is committed
        and queued, whether or not the sender still waits for it."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def settle(_result: Any, error: BaseException | None) -> None:
            if error is None:
                self.items.put_nowait(item)
            else:
                self.room.get_nowait()  # give the ticket back
            if not done.done():
                done.set_exception(error) if error is not None else done.set_result(None)

        item.row_id = self.store.insert(self.name, headers, kind, body, settle)
        return done

    def taken(self) -> None:
        """A consumer took an item: its ticket frees room for a sender."""
        if self._untracked:
            self._untracked -= 1
        elif not self.room.empty():
            self.room.get_nowait()


def file_key(path: str) -> str:
    """One name per file, however a route spells its path."""
    return os.path.abspath(path)


class DurableStores:
    """The durable files and queues of one seda component, opened on first use."""

    def __init__(self) -> None:
        self.stores: dict[str, SedaStore] = {}
        self.queues: dict[str, DurableQueue] = {}
        self._recovered: dict[str, dict[str, list[StoredRow]]] = {}
        self._lock = asyncio.Lock()

    async def queue(self, spec: SedaSpec) -> DurableQueue:
        found = self.queues.get(spec.name)
        if found is not None:
            return found
        async with self._lock:
            found = self.queues.get(spec.name)
            if found is not None:
                return found
            path = file_key(spec.path)
            store = self.stores.get(path)
            if store is None:
                store = SedaStore(path, spec.synchronous)
                rows = await store.open()
                self.stores[path] = store
                grouped = self._recovered[path] = {}
                for row in rows:
                    grouped.setdefault(row.queue, []).append(row)
            queue = DurableQueue(spec.name, store, spec.size)
            queue.recover(self._recovered[path].pop(spec.name, []))
            self.queues[spec.name] = queue
            return queue

    async def close(self) -> None:
        stores, self.stores, self.queues = list(self.stores.values()), {}, {}
        for store in stores:
            await store.close()


# -- producer and consumer -----------------------------------------------------------------
class DurableSedaProducer(Producer):
    """Writes each message to the file; returns once it is committed (and, when waiting, once
    the consuming exchange completed)."""

    def __init__(self, component: SedaComponent, spec: SedaSpec) -> None:
        self.component = component
        self.spec = spec
        self.where = f"seda:{spec.name}"
        self._queue: DurableQueue | None = None

    async def start(self) -> None:
        self._queue = await self.component.durable_queue(self.spec)

    def process(self, exchange: Exchange) -> Awaitable[None]:
        return self._send(exchange)

    async def _send(self, exchange: Exchange) -> None:
        queue = self._queue
        if queue is None:
            raise EndpointError(f"{self.where} is not started", endpoint=self.where)
        item, headers, kind, body = encode_message(exchange.headers, exchange.body, self.where)
        item.trace_context = exchange.trace_context
        if self.spec.wait_for_completion or exchange.pattern is ExchangePattern.IN_OUT:
            item.pattern = exchange.pattern
            item.waiter = asyncio.get_running_loop().create_future()
        try:
            queue.room.put_nowait(None)
        except asyncio.QueueFull:
            await offer(queue.room, None, self.spec)
        await queue.put(item, headers, kind, body)
        if item.waiter is not None:
            final = await item.waiter
            if final.exception is not None:
                raise final.exception
            exchange.message = final.message


class DurableSedaConsumer(SedaConsumer):
    """Routes each committed message; deletes its row once the exchange completed."""

    def __init__(self, component: SedaComponent, spec: SedaSpec, route: Route) -> None:
        super().__init__(component, spec, route)
        self._queue: DurableQueue | None = None

    @property
    def backlog(self) -> int:
        return self._queue.items.qsize() if self._queue is not None else 0

    async def _open(self) -> asyncio.Queue[Any]:
        self._queue = queue = await self.component.durable_queue(self.spec)
        return queue.items

    def _handle(self, item: _Item) -> Awaitable[bool]:
        queue = self._queue
        assert queue is not None
        queue.taken()
        exchange = Exchange(item.body, item.headers, item.pattern)
        exchange.trace_context = item.trace_context
        store, row_id, waiter = queue.store, item.row_id, item.waiter

        def succeeded(done: Exchange) -> None:
            store.delete(row_id)
            if waiter is not None and not waiter.done():
                waiter.set_result(done)

        def failed(done: Exchange) -> None:
            if waiter is not None and not waiter.done():
                store.delete(row_id)  # the sender gets the failure, and owns it from here
                waiter.set_result(done)
                return
            error = done.exception
            reason = f"{type(error).__name__}: {error}"[:2000]
            store.mark_failed(row_id, reason)
            log.warning(
                "seda:%s: message %d failed in route %s and is kept in %s, marked failed "
                "(a dead letter channel on the route would take it): %s",
                queue.name,
                row_id,
                self.route.id,
                store.path,
                reason,
            )

        exchange.on_completion(on_success=succeeded, on_failure=failed)
        return process_exchange(self.route, exchange)
