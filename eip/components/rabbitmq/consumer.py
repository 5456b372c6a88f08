"""The RabbitMQ consumer: at-least-once, batched, acks in order.

Deliveries arrive in batches (everything parsed from one socket read) and are dispatched by one
worker task per consumer, with no task per message: a route that completes synchronously is a
plain call, and only exchanges that really suspend are awaited (``concurrency=1``, in order)
or run as tasks (up to ``concurrency`` at a time).

**Acks.** A message is acked only when its exchange's unit of work has completed successfully
(after the route, its on-completion callbacks, and a reply for a request). Acks go out with
``multiple=true`` up to the highest delivery tag below which *every* message has completed, so
a finished message is never acked past an unfinished one: at-least-once stays exact with any
concurrency. A message whose route failed (its error handler gave up) is rejected without
requeue, so the broker dead-letters it (configure ``dead_letter_exchange``); a route with a
dead letter channel handles the failure itself, and the message is then acked.

**Poison messages.** On a quorum queue the broker's ``x-delivery-count`` says how often a
message was delivered; elsewhere the consumer counts redeliveries itself, per message id, in
memory. A message delivered more than ``max_redeliveries`` times is rejected without requeue
before it is processed, so a message that crashes the process cannot loop for ever.

**Reconnects.** When the connection drops, unacked messages go back to the queue (the broker
does that), messages buffered here are dropped, and acks for messages of the dead channel are
skipped; after the reconnect the topology is declared again and consumption resumes.

**Shutdown.** ``stop`` cancels the consumer, lets the buffered and in-flight messages finish
(within the context's shutdown timeout), acks them and closes the channel.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import TYPE_CHECKING, Any

from eip.components.base import Consumer
from eip.components.rabbitmq._amqp import Channel, Connection, Delivery, Properties
from eip.components.rabbitmq.mapping import DELIVERY_COUNT, exchange_from_delivery
from eip.components.rabbitmq.spec import RabbitMQSpec
from eip.message import Exchange, ExchangePattern

if TYPE_CHECKING:
    from eip.components.rabbitmq import RabbitMQComponent
    from eip.runtime.route import Route

__all__ = ["RabbitMQConsumer", "declare_topology"]

log = logging.getLogger("eip.rabbitmq")
_failures = logging.getLogger("eip.route.failures")


async def declare_topology(channel: Channel, spec: RabbitMQSpec, *, consumer: bool) -> None:
    """Declare (or, with ``declare=false``, passively check) the exchange, queue and bindings."""
    passive = not spec.declare
    if spec.exchange:
        await channel.exchange_declare(
            spec.exchange, spec.exchange_type, durable=spec.exchange_durable, passive=passive
        )
    if not consumer:
        return
    await channel.queue_declare(
        spec.queue_name,
        durable=spec.durable,
        exclusive=spec.exclusive,
        auto_delete=spec.auto_delete,
        passive=passive,
        arguments=spec.queue_arguments or None,
    )
    if spec.exchange and spec.declare:
        for key in spec.bindings:
            await channel.queue_bind(spec.queue_name, spec.exchange, key)


class RabbitMQConsumer(Consumer):
    def __init__(self, component: RabbitMQComponent, spec: RabbitMQSpec, route: Route) -> None:
        super().__init__(route)
        self.component = component
        self.spec = spec
        self.link = component.link(spec.broker_url)
        self.channel: Channel | None = None
        self._consumer_tag = ""
        self._buffer: collections.deque[tuple[Channel, Delivery]] = collections.deque()
        # Delivery tags in arrival order, and their state: 0 running, 1 done, 2 rejected.
        self._order: collections.deque[int] = collections.deque()
        self._state: dict[int, int] = {}
        self._ack_upto = 0
        self._ack_scheduled = False
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(max(1, spec.concurrency))
        self._tasks: set[asyncio.Task[None]] = set()
        self._worker: asyncio.Task[None] | None = None
        self._stopping = False
        self._deliveries: collections.OrderedDict[str, int] = collections.OrderedDict()
        self.consumed = 0

    @property
    def backlog(self) -> int:
        return len(self._buffer)

    @property
    def ready(self) -> bool:
        return self.link.ready and self.channel is not None and self.channel.is_open

    async def start(self) -> None:
        self._stopping = False
        self._worker = asyncio.create_task(self._work(), name=f"rabbitmq-consumer {self.route.id}")
        await self.link.acquire(self._resume)

    async def _resume(self, connection: Connection) -> None:
        """Open a channel, declare the topology and consume; runs again after a reconnect."""
        self._buffer.clear()
        self._order.clear()
        self._state.clear()
        self._ack_upto = 0
        channel = await connection.channel()
        await declare_topology(channel, self.spec, consumer=True)
        await channel.basic_qos(self.spec.prefetch)
        self.channel = channel  # before consuming: deliveries may come before ConsumeOk returns
        self._consumer_tag = await channel.basic_consume(self.spec.queue_name, self._on_deliveries)
        log.info(
            "rabbitmq consumer of route %s consuming %s (prefetch %d, concurrency %d)",
            self.route.id,
            self.spec.queue_name,
            self.spec.prefetch,
            self.spec.concurrency,
        )

    def _on_deliveries(self, deliveries: list[Delivery]) -> None:
        channel = self.channel
        if channel is None:
            return
        order, state = self._order, self._state
        for delivery in deliveries:
            self._buffer.append((channel, delivery))
            order.append(delivery.delivery_tag)
            state[delivery.delivery_tag] = 0
        self._wake.set()

    # -- dispatching ---------------------------------------------------------------------
    async def _work(self) -> None:
        buffer = self._buffer
        while True:
            if not buffer:
                self._wake.clear()
                await self._wake.wait()
                continue
            channel, delivery = buffer.popleft()
            if channel is not self.channel:
                continue  # from a channel that died: the broker redelivers it
            try:
                waiting = self._handle(channel, delivery)
                if waiting is not None:
                    await waiting
            except Exception:
                # A fault of the engine itself, not of the route (those are settled): the
                # worker must survive it, and the message must not stay unacked for ever.
                log.exception(
                    "rabbitmq consumer of route %s: internal error on delivery %d; rejected",
                    self.route.id,
                    delivery.delivery_tag,
                )
                if channel is self.channel and channel.is_open:
                    self._state[delivery.delivery_tag] = 2
                    channel.reject(delivery.delivery_tag, requeue=False)
                    self._advance(channel)

    def _handle(self, channel: Channel, delivery: Delivery) -> Any:
        """Dispatch one delivery; None when it settled synchronously, else an awaitable."""
        if self._poisoned(channel, delivery):
            return None
        exchange = exchange_from_delivery(delivery, self.component.context.tracing.enabled)
        if delivery.properties.reply_to:
            exchange.pattern = ExchangePattern.IN_OUT
        self.consumed += 1
        pending = self._dispatch(exchange)
        if pending is None:
            self._settle(channel, delivery, exchange)
            return None
        if self.spec.concurrency <= 1:
            return self._await_and_settle(pending, channel, delivery, exchange)
        return self._launch(pending, channel, delivery, exchange)

    async def _await_and_settle(
        self, pending: Any, channel: Channel, delivery: Delivery, exchange: Exchange
    ) -> None:
        await pending
        self._settle(channel, delivery, exchange)

    async def _launch(
        self, pending: Any, channel: Channel, delivery: Delivery, exchange: Exchange
    ) -> None:
        await self._slots.acquire()
        task = asyncio.create_task(self._run(pending, channel, delivery, exchange))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _dispatch(self, exchange: Exchange) -> Any:
        """Route the exchange; None when it completed synchronously, else an awaitable."""
        try:
            result = self.route.dispatch(exchange)
        except Exception as exc:
            self._failed(exchange, exc)
            result = None
        if result is not None:
            self.route.inflight += 1
            return self._finish(exchange, result)
        done = exchange.done()
        if done is not None:
            self.route.inflight += 1
            return self._complete(exchange, done)
        return None

    async def _finish(self, exchange: Exchange, pending: Any) -> None:
        try:
            try:
                await pending
            except Exception as exc:
                self._failed(exchange, exc)
            done = exchange.done()
            if done is not None:
                await done
        finally:
            self.route.leave()

    async def _complete(self, exchange: Exchange, done: Any) -> None:
        try:
            await done
        finally:
            self.route.leave()

    async def _run(
        self, pending: Any, channel: Channel, delivery: Delivery, exchange: Exchange
    ) -> None:
        try:
            await pending
            self._settle(channel, delivery, exchange)
        finally:
            self._slots.release()

    def _failed(self, exchange: Exchange, exc: Exception) -> None:
        exchange.exception = exc
        _failures.error(
            "route %s failed exchange %s: %s: %s",
            self.route.id,
            exchange.id,
            type(exc).__name__,
            exc,
        )

    # -- settling --------------------------------------------------------------------------
    def _settle(self, channel: Channel, delivery: Delivery, exchange: Exchange) -> None:
        if channel is not self.channel or not channel.is_open:
            return  # the channel died meanwhile: the broker redelivers this message
        tag = delivery.delivery_tag
        if exchange.exception is not None:
            self._state[tag] = 2
            channel.reject(tag, requeue=False)
        else:
            if delivery.properties.reply_to:
                self._reply(channel, delivery, exchange)
            self._state[tag] = 1
        self._advance(channel)

    def _advance(self, channel: Channel) -> None:
        """Ack (multiple) up to the last success below which everything has settled."""
        order, state = self._order, self._state
        upto = 0
        while order:
            tag = order[0]
            outcome = state[tag]
            if not outcome:
                break
            order.popleft()
            del state[tag]
            if outcome == 1:
                upto = tag
        if not upto:
            return
        self._ack_upto = upto
        if not self._ack_scheduled:
            self._ack_scheduled = True
            asyncio.get_running_loop().call_soon(self._send_ack, channel)

    def _send_ack(self, channel: Channel) -> None:
        self._ack_scheduled = False
        if channel is self.channel and channel.is_open and self._ack_upto:
            channel.ack(self._ack_upto, multiple=True)

    def _reply(self, channel: Channel, delivery: Delivery, exchange: Exchange) -> None:
        body = exchange.body
        if isinstance(body, str):
            body = body.encode()
        elif not isinstance(body, bytes | bytearray | memoryview):
            log.error(
                "route %s: a reply needs a bytes or str body, got %s",
                self.route.id,
                type(body).__name__,
            )
            return
        properties = Properties(correlation_id=delivery.properties.correlation_id)
        channel.publish(bytes(body), "", delivery.properties.reply_to or "", properties)

    def _poisoned(self, channel: Channel, delivery: Delivery) -> bool:
        limit = self.spec.max_redeliveries
        headers = delivery.properties.headers
        count = headers.get(DELIVERY_COUNT) if headers else None
        if count is None and delivery.redelivered:
            key = delivery.properties.message_id or f"{delivery.routing_key}:{hash(delivery.body)}"
            count = self._deliveries.get(key, 0) + 1
            self._deliveries[key] = count
            self._deliveries.move_to_end(key)
            if len(self._deliveries) > 100_000:
                self._deliveries.popitem(last=False)
        if count is None or int(count) <= limit:
            return False
        log.error(
            "route %s: message %s was delivered %s times (limit %d); rejected to the dead letter "
            "exchange without processing",
            self.route.id,
            delivery.properties.message_id,
            count,
            limit,
        )
        self._state[delivery.delivery_tag] = 2
        channel.reject(delivery.delivery_tag, requeue=False)
        self._advance(channel)
        return True

    # -- shutdown --------------------------------------------------------------------------
    async def stop(self) -> None:
        self._stopping = True
        channel = self.channel
        if channel is not None and channel.is_open and self._consumer_tag:
            try:
                await channel.basic_cancel(self._consumer_tag)
            except Exception as exc:
                log.warning("rabbitmq consumer of route %s: cancel failed: %s", self.route.id, exc)
        deadline = asyncio.get_running_loop().time() + self.component.context.shutdown_timeout
        while (self._buffer or self._tasks or self.route.inflight) and channel is self.channel:
            if asyncio.get_running_loop().time() > deadline:
                log.warning(
                    "rabbitmq consumer of route %s stopped with %d buffered and %d running "
                    "messages; the broker will redeliver them",
                    self.route.id,
                    len(self._buffer),
                    len(self._tasks),
                )
                break
            await asyncio.sleep(0.005)
        if channel is not None and channel is self.channel:
            self._send_ack(channel)
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
            self._worker = None
        self.channel = None
        await self.link.release(self._resume)
