"""The RabbitMQ consumer: at-least-once, batched, self-healing.

Deliveries arrive in batches (everything parsed from one socket read) and are dispatched by one
worker task per consumer, with no task per message: a route that completes synchronously is a
plain call, and only exchanges that really suspend are awaited (``concurrency=1``, in order)
or run as tasks (up to ``concurrency`` at a time).

**The confirm-aware fast path** (see :mod:`.confirmed` and :mod:`.fastpath`): when the
route's last step is a RabbitMQ send and ``concurrency`` > 1, a delivery whose route runs
synchronously to that send is settled from the publish's confirm, with no task, coroutine or
future of its own.

**Settlement** (see :mod:`.verdict`, and :mod:`.settlement` for the ack window and the poison
counts). A message is settled only when its exchange's unit of work has completed:

- it succeeded (or the route's error handling handled the failure, e.g. a dead letter
  channel took it): **ack**;
- it failed (the error handler gave up): **reject without requeue**, so the broker
  dead-letters it (configure ``dead_letter_exchange``; without one the broker drops it, and
  the log says so);
- its outcome is unknown (:class:`~eip.errors.OutcomeUnknownError`: a send whose connection
  died before the confirm, a confirm timeout, a blocked broker): **nack with requeue**, so it
  is tried again; after ``max_redeliveries`` requeues it is rejected like a failure, so it
  cannot loop for ever.

A message delivered more than ``max_redeliveries`` times by a quorum queue
(``x-delivery-count``) is rejected before it is processed.

**Recovery.** When the connection drops, unacked messages go back to the queue (the broker
does that), messages buffered here are dropped and acks for the dead channel are skipped. When
the broker closes the consumer's channel (``consumer_timeout``, a channel error) or cancels the
consumer (its queue was deleted or failed over), the consumer re-attaches on its own, with
backoff: it re-declares its topology when it declares, and otherwise reports the queue gone
(readiness false, with the broker's reason) and keeps checking. Other endpoints on the
connection are not affected.

**Shutdown.** ``stop`` cancels the consumer, lets the buffered and in-flight messages finish
(within the context's shutdown timeout), acks them and closes the channel.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import TYPE_CHECKING, Any

from eip.components.base import Consumer
from eip.components.rabbitmq._amqp import Delivery
from eip.components.rabbitmq.client import AmqpChannel, AmqpConnection
from eip.components.rabbitmq.fastpath import FastPath, then_confirmed
from eip.components.rabbitmq.mapping import exchange_from_delivery
from eip.components.rabbitmq.recovery import Backoff, Recovery
from eip.components.rabbitmq.settlement import AckWindow, RequeueCounts
from eip.components.rabbitmq.spec import RabbitMQSpec
from eip.components.rabbitmq.topology import declare_topology
from eip.components.rabbitmq.verdict import Verdicts
from eip.message import Exchange, ExchangePattern

if TYPE_CHECKING:
    from eip.components.rabbitmq import RabbitMQComponent
    from eip.runtime.route import Route

__all__ = ["RabbitMQConsumer"]

log = logging.getLogger("eip.rabbitmq")


class RabbitMQConsumer(FastPath, Verdicts, Consumer):
    def __init__(self, component: RabbitMQComponent, spec: RabbitMQSpec, route: Route) -> None:
        super().__init__(route)
        self.component = component
        self.spec = spec
        self.link = component.link(spec)
        self.channel: AmqpChannel | None = None
        self._window: AckWindow | None = None
        self._consumer_tag = ""
        self._buffer: collections.deque[tuple[AckWindow, Delivery]] = collections.deque()
        self._wake = asyncio.Event()
        self._free = max(1, spec.concurrency)  # task slots for suspending exchanges
        self._slot_freed = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._worker: asyncio.Task[None] | None = None
        self._stopping = False
        self._requeues = RequeueCounts()
        self._recovery = Recovery(
            f"consumer of route {route.id} ({spec.queue_name})",
            self.link,
            self._attach,
            Backoff(spec.reconnect_delay, spec.reconnect_max_delay, spec.reconnect_jitter),
        )
        self._dead_letter = spec.dead_letter_exchange or str(
            spec.queue_arguments.get("x-dead-letter-exchange", "")
        )
        self.consumed = 0
        self._handoff = component.handoff
        self._fast = False  # the confirm-aware fast path (see :mod:`.confirmed`)
        self._last_send: Any = None  # the producer of the route's last step, on the fast path
        #: Deliveries whose publish was confirmed on the fast path (for tests, diagnostics).
        self.settled_by_confirm = 0
        self._send_counter: Any = None  # the last send's counter (metrics on), if any

    @property
    def backlog(self) -> int:
        return len(self._buffer)

    @property
    def ready(self) -> bool:
        channel = self.channel
        return (
            self.link.is_open
            and channel is not None
            and channel.is_open
            and bool(self._consumer_tag)
        )

    @property
    def problem(self) -> str | None:
        if self.ready:
            return None
        if not self.link.is_open and self.link.problem:
            return self.link.problem
        return self._recovery.problem or "consumer not connected"

    async def start(self) -> None:
        self._stopping = False
        self._fast = self._fast_path_possible()
        self._worker = asyncio.create_task(self._work(), name=f"rabbitmq-consumer {self.route.id}")
        try:
            connection = await self.link.acquire()
        except BaseException:
            await self._cancel_worker()  # a supervised retry must not leave one behind
            raise
        try:
            await self._attach(connection)
        except BaseException:
            await self._recovery.stop()
            await self._cancel_worker()
            await self.link.release()
            raise

    async def _cancel_worker(self) -> None:
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)

    # -- attaching -------------------------------------------------------------------------
    async def _attach(self, connection: AmqpConnection) -> None:
        """Open a channel (or keep the one whose consumer was cancelled), declare, consume."""
        if self.ready:
            return
        channel = self.channel
        if channel is None or not channel.is_open:
            channel = await connection.channel()
            await channel.basic_qos(self.spec.prefetch)
            channel.on_cancel = self._on_cancel
            self._buffer.clear()
            self._window = AckWindow(channel, self.spec.prefetch)
            self.channel = channel  # before consuming: deliveries may come before ConsumeOk
            channel.closed.add_done_callback(lambda closed: self._lost(channel, closed))
        await declare_topology(channel, self.spec, consumer=True)
        self._consumer_tag = await channel.basic_consume(
            self.spec.queue_name,
            self._on_deliveries,
            consumer_tag=self.spec.consumer_tag,
            exclusive=self.spec.exclusive_consumer,
            arguments=self.spec.consume_arguments or None,
        )
        log.info(
            "rabbitmq consumer of route %s consuming %s (prefetch %d, concurrency %d)",
            self.route.id,
            self.spec.queue_name,
            self.spec.prefetch,
            self.spec.concurrency,
        )

    def _lost(self, channel: AmqpChannel, closed: asyncio.Future[BaseException | None]) -> None:
        if channel is not self.channel or self._stopping:
            return
        self._consumer_tag = ""
        reason = None if closed.cancelled() else closed.result()
        if reason is not None:
            self._recovery.trigger(f"channel closed: {reason}")

    def _on_cancel(self, tag: str) -> None:
        if tag != self._consumer_tag or self._stopping:
            return
        self._consumer_tag = ""
        self._recovery.trigger(
            f"the broker cancelled the consumer of queue {self.spec.queue_name!r} "
            "(deleted or failed over)"
        )

    def _on_deliveries(self, deliveries: list[Delivery]) -> None:
        window = self._window
        if window is None:
            return
        buffer = self._buffer
        for delivery in deliveries:
            buffer.append((window, delivery))
            window.arrived(delivery.delivery_tag)
        self._wake.set()

    # -- dispatching ---------------------------------------------------------------------
    async def _work(self) -> None:
        buffer = self._buffer
        while True:
            if not buffer:
                self._wake.clear()
                await self._wake.wait()
                continue
            window, delivery = buffer.popleft()
            if window is not self._window or not window.channel.is_open:
                continue  # from a channel that died: the broker redelivers it
            try:
                waiting = self._handle(window, delivery)
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
                if window is self._window and window.open:
                    window.reject(delivery.delivery_tag, requeue=False)

    def _handle(self, window: AckWindow, delivery: Delivery) -> Any:
        """Dispatch one delivery; None when it settled synchronously, runs as a task or waits
        for its publish's confirm (the fast path), else an awaitable (``concurrency=1``, or
        every slot taken)."""
        if delivery.redelivered and self._poisoned(window, delivery):
            return None
        exchange = exchange_from_delivery(delivery, self.component.context.tracing.enabled)
        route = self.route
        handoff = None
        if delivery.properties.reply_to:
            exchange.pattern = ExchangePattern.IN_OUT
        elif self._fast and route.dispatch_is_fused:
            handoff = self._handoff
            handoff.exchange = exchange
            handoff.producer = self._last_send
        self.consumed += 1
        try:
            pending = route.dispatch(exchange)
        except Exception as exc:
            exchange.exception = exc
            pending = None
        if handoff is not None:
            handoff.exchange = None
            settler = handoff.settler
            if settler is not None:
                handoff.settler = None
                if pending is None and exchange.exception is None:
                    # published by the last step: settled from the confirm (see .confirmed)
                    route.inflight += 1
                    settler.pending.append(
                        (handoff.seq, handoff.routing_key, self, window, delivery, exchange)
                    )
                    return None
                # the same producer sent it earlier in the route too (one URI twice), or the
                # route failed after it: the general path, and never ack it unconfirmed
                confirm = settler.producer.confirmed(
                    settler.channel, handoff.seq, handoff.routing_key
                )
                pending = then_confirmed(pending, confirm)
        done = None
        if pending is None:
            done = exchange.done()
            if done is None:
                self._settle(window, delivery, exchange)
                return None
        self.route.inflight += 1
        if self.spec.concurrency <= 1:
            return self._run(pending, done, window, delivery, exchange, False)
        if self._free > 0:
            self._start(pending, done, window, delivery, exchange)
            return None
        return self._launch(pending, done, window, delivery, exchange)

    def _start(
        self, pending: Any, done: Any, window: AckWindow, delivery: Delivery, exchange: Exchange
    ) -> None:
        """Run a suspending exchange as a task in a free slot (no coroutine to get the slot)."""
        self._free -= 1
        task = asyncio.create_task(self._run(pending, done, window, delivery, exchange, True))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _launch(
        self, pending: Any, done: Any, window: AckWindow, delivery: Delivery, exchange: Exchange
    ) -> None:
        """Every slot is taken: wait for one (only the worker calls this, one at a time)."""
        while self._free <= 0:
            self._slot_freed.clear()
            await self._slot_freed.wait()
        self._start(pending, done, window, delivery, exchange)

    async def _run(
        self,
        pending: Any,
        done: Any,
        window: AckWindow,
        delivery: Delivery,
        exchange: Exchange,
        slot: bool,
    ) -> None:
        """Finish a suspending exchange (the route's awaitable, then its on-completion work,
        or only the latter), then settle it: one coroutine per suspending message."""
        try:
            try:
                if pending is not None:
                    try:
                        await pending
                    except Exception as exc:
                        exchange.exception = exc
                    done = exchange.done()
                if done is not None:
                    await done
            finally:
                self.route.leave()
            self._settle(window, delivery, exchange)
        finally:
            if slot:
                self._free += 1
                self._slot_freed.set()

    # -- shutdown --------------------------------------------------------------------------
    async def stop(self) -> None:
        self._stopping = True
        await self._recovery.stop()
        channel = self.channel
        if channel is not None and channel.is_open and self._consumer_tag:
            try:
                await channel.basic_cancel(self._consumer_tag)
            except Exception as exc:
                log.warning("rabbitmq consumer of route %s: cancel failed: %s", self.route.id, exc)
        window = self._window
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.component.context.shutdown_timeout
        while (self._buffer or self._tasks or self.route.inflight) and window is self._window:
            if loop.time() > deadline:
                log.warning(
                    "rabbitmq consumer of route %s stopped with %d buffered and %d running "
                    "messages; the broker will redeliver them",
                    self.route.id,
                    len(self._buffer),
                    len(self._tasks),
                )
                break
            await asyncio.sleep(0.005)
        if window is not None and window is self._window:
            window.flush()
        await self._cancel_worker()
        self._consumer_tag = ""
        self.channel = None
        self._window = None
        if channel is not None and channel.is_open:
            await channel.close()
        await self.link.release()
