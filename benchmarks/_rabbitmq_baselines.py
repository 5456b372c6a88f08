"""RabbitMQ end-to-end baselines for the ``rabbitmq`` benchmark, against a real broker.

Each baseline measures one run of the same at-least-once relay:

1. consume a message from queue A (pre-filled by the caller with ``fill_queue``);
2. decode its JSON into the ``Customer`` msgspec Struct, map it with ``to_erp`` and encode the
   ``ErpCustomer`` to JSON;
3. publish the result to queue B (default exchange) on a channel with **publisher confirms**;
4. ack the message on A only once its publish to B is confirmed.

Each baseline runs until ``n`` messages are on B and returns the elapsed seconds. The clock starts
just before the consumer starts (connections, channels and queue look-ups are set up first), and
it stops when a passive declare of B, polled every 50 ms on a connection of its own, reports
``n`` messages. B has no consumer, so every message on it is ready. The acks for the last messages
are waited for after the clock stops; then the consumer is cancelled and the connection closed, so
A is left with nothing unacked. Every baseline publishes non-persistent messages by default
(``persistent=True`` switches to delivery mode 2 on every side alike).

- :func:`aio_pika_naive`: the straightforward aio-pika callback consumer.
- :func:`aio_pika_best`: the best hand-written aio-pika relay (batches, pipelined confirms, one
  ``ack(multiple=True)`` per batch).
- :func:`faststream_best`: FastStream 0.7 with its best settings.
- Helpers: :func:`unique_queue_names`, :func:`declare_queues`, :func:`delete_queues`,
  :func:`fill_queue`, :func:`queue_state`.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import aio_pika
import aiormq
import msgspec
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage
from aiormq import spec
from faststream.rabbit import Channel, RabbitBroker, RabbitMessage, RabbitQueue

from benchmarks._crm import Customer, to_erp

__all__ = [
    "DEFAULT_URL",
    "QueueState",
    "aio_pika_best",
    "aio_pika_naive",
    "declare_queues",
    "delete_queues",
    "faststream_best",
    "fill_queue",
    "queue_state",
    "unique_queue_names",
]

T = TypeVar("T")

DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/"
POLL_INTERVAL = 0.05  # seconds between two looks at B's depth
DEFAULT_TIMEOUT = 600.0  # seconds a run may take before it fails with TimeoutError
CONTENT_TYPE = "application/json"


def _work() -> Callable[[bytes], bytes]:
    """The per-message work every baseline does: JSON -> Customer -> ErpCustomer -> JSON."""
    decode = msgspec.json.Decoder(Customer).decode
    encode = msgspec.json.Encoder().encode

    def work(raw: bytes) -> bytes:
        return encode(to_erp(decode(raw)))

    return work


def _delivery_mode(persistent: bool) -> aio_pika.DeliveryMode:
    return aio_pika.DeliveryMode.PERSISTENT if persistent else aio_pika.DeliveryMode.NOT_PERSISTENT


# -- queues -----------------------------------------------------------------------------------
def unique_queue_names(count: int = 2, prefix: str = "eip-bench") -> list[str]:
    """``count`` fresh queue names sharing one run id, e.g. ``eip-bench-1a2b3c4d-a``, ``...-b``."""
    run = uuid.uuid4().hex[:12]
    return [f"{prefix}-{run}-{chr(ord('a') + i)}" for i in range(count)]


async def declare_queues(url: str, *names: str, queue_type: str = "classic") -> None:
    """Declare each queue as a durable queue of ``queue_type`` (``classic`` or ``quorum``)."""
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        for name in names:
            await channel.declare_queue(name, durable=True, arguments={"x-queue-type": queue_type})
    finally:
        await connection.close()


async def delete_queues(url: str, *names: str) -> None:
    """Delete each queue, whether or not it holds messages; a missing queue is no error."""
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        for name in names:
            await channel.queue_delete(name)
    finally:
        await connection.close()


@dataclass(frozen=True, slots=True)
class QueueState:
    """What a passive declare tells: ready messages and consumers."""

    messages: int
    consumers: int


async def _state(channel: AbstractChannel, name: str) -> QueueState:
    queue = await channel.declare_queue(name, passive=True)
    result = queue.declaration_result
    return QueueState(result.message_count or 0, result.consumer_count or 0)


async def queue_state(url: str, name: str) -> QueueState:
    """A passive declare of ``name`` on a connection of its own."""
    connection = await aio_pika.connect(url)
    try:
        return await _state(await connection.channel(), name)
    finally:
        await connection.close()


async def fill_queue(url: str, queue: str, messages: Sequence[bytes]) -> None:
    """Publish ``messages`` to ``queue`` fast, then wait until the queue holds all of them.

    Publishes go through aiormq (aio-pika's underlying channel) without confirms and without
    waiting for the socket to drain (~20k msgs/s here, against ~11k for awaited aio-pika
    publishes); the queue's depth, polled with a passive declare, proves they all arrived.
    """
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel(publisher_confirms=False)
        before = (await _state(channel, queue)).messages
        raw = await channel.get_underlay_channel()
        assert isinstance(raw, aiormq.Channel)  # for ``wait=False``, which the ABC lacks
        properties = spec.Basic.Properties(content_type=CONTENT_TYPE, delivery_mode=1)
        for body in messages:
            await raw.basic_publish(body, routing_key=queue, properties=properties, wait=False)
        await _poll(channel, queue, before + len(messages), max(60.0, len(messages) / 1000))
    finally:
        await connection.close()


# -- measuring --------------------------------------------------------------------------------
class _Watch:
    """Polls B's depth on a connection of its own, so counting stays off the relay's path."""

    def __init__(self, connection: AbstractConnection) -> None:
        self._connection = connection

    @classmethod
    async def open(cls, url: str) -> _Watch:
        return cls(await aio_pika.connect(url))

    async def until(self, queue: str, n: int, began: float, timeout: float) -> float:
        """Seconds from ``began`` until ``queue`` holds ``n`` messages (polled every 50 ms)."""
        channel = await self._connection.channel()
        await _poll(channel, queue, n, timeout)
        elapsed = time.perf_counter() - began
        await channel.close()
        return elapsed

    async def close(self) -> None:
        await self._connection.close()


async def _poll(channel: AbstractChannel, queue: str, n: int, timeout: float) -> None:
    """Return once ``queue`` holds ``n`` ready messages, looking every 50 ms."""
    async with asyncio.timeout(timeout):
        while True:
            if (await _state(channel, queue)).messages >= n:
                return
            await asyncio.sleep(POLL_INTERVAL)


async def _unless_dead(worker: asyncio.Task[None], waiting: Awaitable[T]) -> T:
    """``await waiting``, but raise ``worker``'s error as soon as it dies: a relay task whose
    channel the broker closed would otherwise leave the run waiting for its whole timeout."""
    wait = asyncio.ensure_future(waiting)
    try:
        await asyncio.wait({wait, worker}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not wait.done():
            wait.cancel()
            await asyncio.gather(wait, return_exceptions=True)
    if wait.cancelled():  # the worker ended first
        worker.result()  # raises the relay's error
        raise RuntimeError("the relay task ended before the run did")
    return wait.result()


class _Tally:
    """Counts relayed (acked) messages and tells when ``n`` are: the relay side's own count,
    awaited after the clock stopped so that the last acks are on the wire before closing."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.count = 0
        self._all = asyncio.Event()

    def add(self, count: int = 1) -> None:
        self.count += count
        if self.count >= self.n:
            self._all.set()

    async def wait(self, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            await self._all.wait()


# -- aio-pika, naive --------------------------------------------------------------------------
async def aio_pika_naive(
    url: str,
    a: str,
    b: str,
    n: int,
    prefetch: int = 100,
    *,
    persistent: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
) -> float:
    """The straightforward aio-pika relay: an ``async def`` callback per message that awaits
    ``exchange.publish`` (the confirm) and then ``message.ack()``. Channel with publisher
    confirms, ``prefetch`` unacked deliveries, one channel for consuming and publishing.

    Measured 2,579 msgs/s (median of 3 interleaved runs of 50k, prefetch 100, 2026-11-23, on 2
    cores shared with other jobs) against 3,192 for :func:`aio_pika_best` in the same runs.
    """
    work = _work()
    mode = _delivery_mode(persistent)
    watch = await _Watch.open(url)
    connection = await aio_pika.connect_robust(url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        await channel.set_qos(prefetch_count=prefetch)
        queue = await channel.declare_queue(a, passive=True)
        exchange = channel.default_exchange
        acked = _Tally(n)

        async def on_message(message: AbstractIncomingMessage) -> None:
            body = work(message.body)
            await exchange.publish(
                aio_pika.Message(body, content_type=CONTENT_TYPE, delivery_mode=mode),
                routing_key=b,
            )
            await message.ack()
            acked.add()

        began = time.perf_counter()
        tag = await queue.consume(on_message)
        elapsed = await watch.until(b, n, began, timeout)
        await acked.wait(timeout)
        await queue.cancel(tag)
    finally:
        await connection.close()
        await watch.close()
    return elapsed


# -- aio-pika, best hand-written ---------------------------------------------------------------
async def aio_pika_best(
    url: str,
    a: str,
    b: str,
    n: int,
    *,
    batch: int = 500,
    prefetch: int = 1000,
    window: int = 1,
    publish_channel: bool = False,
    persistent: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
) -> float:
    """The best hand-written aio-pika relay.

    The consumer callback only appends the delivery to a list. One relay task takes up to
    ``batch`` deliveries at a time, does the work for each, and starts all the batch's publishes
    at once (``asyncio.gather``, so their confirms are pipelined rather than awaited one by one).
    Once every publish of a batch is confirmed, one ``ack(multiple=True)`` on the batch's highest
    delivery tag acks the whole batch. Deliveries on a channel arrive in tag order and batches are
    acked in order, so everything below that tag is done. With ``window`` > 1, up to ``window``
    batches have their publishes in flight at once; with 1, a batch is confirmed and acked
    before the next one is published. ``publish_channel`` publishes on a second channel instead
    of the consuming one.

    Variants tried on 2026-11-23 (aio-pika 10.2.1, 2 cores shared with other jobs, so absolute
    figures are ~30% below ``/work/shared/BENCHMARKS.md``'s): medians of 3 interleaved runs of
    50k messages, in msgs/s, with the client's CPU per message; a range spans separate
    sessions. The defaults are the first row;
    no variant beat it by more than the run-to-run spread (~15%), and it costs the least CPU.

    ===================================================  ===========  ===============
    variant (batch, prefetch, window)                    msgs/s       client µs/msg
    ===================================================  ===========  ===============
    500, 1000, 1: gather a batch, then ack it (default)  3,192-3,521  229-270
    500, 1000, 1, publishing on a second channel         3,377-3,442  250-276
    250, 1000, 2                                         3,299        287
    100, 500, 4                                          3,016-3,508  252-313
    100, 500, 4, second channel                          3,170        294
    200, 1000, 4, second channel                         3,149        301
    100, 1000, 8, second channel                         3,003        315
    naive callback (:func:`aio_pika_naive`), same runs   2,338-2,579  267-328
    ===================================================  ===========  ===============

    aio-pika's own costs dominate whatever the batching: a task per delivery (aiormq) plus one
    per callback (aio-pika), an ``aio_pika.Message`` (~40 ``__setattr__`` calls) and a lock,
    a drain future and a ``socket.send`` per publish. aiormq's ``basic_publish(wait=False)``
    through ``channel.get_underlay_channel()`` would skip the drain wait, but that is aiormq,
    not aio-pika's publishing API, so it is not used here (only in :func:`fill_queue`).
    """
    work = _work()
    mode = _delivery_mode(persistent)
    watch = await _Watch.open(url)
    connection = await aio_pika.connect_robust(url)
    try:
        channel = await connection.channel(publisher_confirms=not publish_channel)
        await channel.set_qos(prefetch_count=prefetch)
        queue = await channel.declare_queue(a, passive=True)
        out = await connection.channel(publisher_confirms=True) if publish_channel else channel
        publish = out.default_exchange.publish
        pending: list[AbstractIncomingMessage] = []
        arrived = asyncio.Event()
        acked = _Tally(n)

        async def on_message(message: AbstractIncomingMessage) -> None:
            pending.append(message)
            arrived.set()

        def start(deliveries: list[AbstractIncomingMessage]) -> Awaitable[list[Any]]:
            return asyncio.gather(
                *[
                    publish(
                        aio_pika.Message(
                            work(m.body), content_type=CONTENT_TYPE, delivery_mode=mode
                        ),
                        routing_key=b,
                    )
                    for m in deliveries
                ]
            )

        async def relay() -> None:
            inflight: deque[tuple[Awaitable[list[Any]], AbstractIncomingMessage, int]] = deque()
            while True:
                while pending and len(inflight) < window:
                    taken = pending[:batch]
                    del pending[:batch]
                    inflight.append((start(taken), taken[-1], len(taken)))
                if inflight:
                    confirmed, last, count = inflight.popleft()
                    await confirmed
                    await last.ack(multiple=True)
                    acked.add(count)
                    continue
                arrived.clear()
                if not pending:
                    await arrived.wait()

        began = time.perf_counter()
        tag = await queue.consume(on_message)
        relaying = asyncio.create_task(relay())
        try:
            elapsed = await _unless_dead(relaying, watch.until(b, n, began, timeout))
            await _unless_dead(relaying, acked.wait(timeout))
        finally:
            relaying.cancel()
            await asyncio.gather(relaying, return_exceptions=True)
        await queue.cancel(tag)
    finally:
        await connection.close()
        await watch.close()
    return elapsed


# -- FastStream -------------------------------------------------------------------------------
async def faststream_best(
    url: str,
    a: str,
    b: str,
    n: int,
    *,
    prefetch: int = 100,
    persistent: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
) -> float:
    """FastStream 0.7 (``faststream.rabbit.RabbitBroker``) doing the same relay, best settings.

    - A ``RabbitBroker`` started without an app (``await broker.start()``), with
      ``default_channel=Channel(prefetch_count=prefetch)``: FastStream's default sets no
      prefetch, and the whole queue would arrive at once, a task per message. The subscriber
      and the publisher share that channel, which has publisher confirms on
      (``Channel.publisher_confirms`` defaults to True), so a publish returns only once the
      broker confirmed it.
    - The handler returns the encoded ``ErpCustomer`` and ``@broker.publisher(b)`` publishes it.
      FastStream publishes a handler's result inside the subscriber's acknowledgement scope, and
      the default ack policy (``AckPolicy.REJECT_ON_ERROR``) acks when that scope exits without
      an error: "when your function executes correctly, including sending all responses, a
      message will be acknowledged" (FastStream's docs, Rabbit > Acknowledgement; read in
      ``faststream/_internal/endpoint/subscriber/usecase.py`` and
      ``middlewares/acknowledgement/middleware.py`` of 0.7.8). So the ack follows the confirm.
    - A custom ``decoder`` that decodes the raw body with msgspec straight into ``Customer``
      (FastStream's default decoder would ``json.loads`` it into a dict), ``apply_types=False``
      (no FastDepends/pydantic pass over the argument), and ``logger=None`` (no access-log
      lines per message).

    Tried on 2026-11-23 (FastStream 0.7.8, 2 cores shared with other jobs, the same runs as
    :func:`aio_pika_best`'s figures): medians of 3 interleaved runs of 50k messages unless
    marked 20k, in msgs/s, with the client's CPU per message; a range spans separate sessions.
    The 20k rows published with ``await broker.publish(...)`` in the handler.

    =========================================================  ===========  ===============
    variant                                                    msgs/s       client µs/msg
    =========================================================  ===========  ===============
    prefetch 100, ``@broker.publisher`` + return (default)     1,106-1,315  574-883
    prefetch 500, same                                         894-1,253    666-1,063
    prefetch 100, ``await broker.publish(...)`` in the handler 1,008        926
    (20k) prefetch 50 / 100 / 200 / 500 / 1000                 1,025 / 821-1,188 / 861 /
                                                               667-858 / 700
    (20k) prefetch 100, ``apply_types=True``, ``body: bytes``  890          791
    (20k) prefetch 100, FastStream's default access logging    742          944
    =========================================================  ===========  ===============

    Prefetch above ~100 only adds client CPU per message (probably more concurrent handler
    tasks queueing on aiormq's channel lock), so 100 stays the default.
    """
    encode = msgspec.json.Encoder().encode
    decode = msgspec.json.Decoder(Customer).decode
    relayed = _Tally(n)  # counted in the handler; its publish and ack follow

    def decoder(message: RabbitMessage) -> Customer:
        return decode(message.body)

    broker = RabbitBroker(
        url,
        default_channel=Channel(prefetch_count=prefetch),
        apply_types=False,
        logger=None,
        graceful_timeout=timeout,
    )

    @broker.subscriber(RabbitQueue(a, declare=False), decoder=decoder)
    @broker.publisher(b, persist=persistent)
    async def relay(customer: Customer) -> bytes:
        relayed.add()
        return encode(to_erp(customer))

    watch = await _Watch.open(url)
    try:
        await broker.connect()
        began = time.perf_counter()
        await broker.start()
        elapsed = await watch.until(b, n, began, timeout)
        await relayed.wait(timeout)
    finally:
        await broker.stop()  # waits for running handlers (and their acks), cancels the consumer
        await watch.close()
    return elapsed
