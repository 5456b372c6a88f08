"""One aio-pika channel behind the endpoints' :class:`~..client.AmqpChannel` interface.

The channel is a plain ``aio_pika.Channel`` on the robust connection, bound to the one
transport it was opened on (its aiormq channel, ``_wire``). Everything it does goes through
that aiormq channel, so a delivery is only ever acked on the channel that delivered it: once
the transport is gone the channel is closed for good (``closed`` resolves, every call raises)
and the endpoint re-attaches on a new channel of the next transport.

The endpoints' hot-path calls are synchronous; aio-pika's are coroutines. So:

- ``publish`` starts one task per message (aiormq waits for each confirm inside its own
  ``basic_publish``; tasks start in call order and take the channel lock in that order, so
  publishes go out in order) and returns a sequence number; ``wait_confirm(seq)`` waits for
  that task's outcome (:mod:`.confirms`). Beyond a window of publishes in flight ``writable``
  is false and a producer waits in ``drain``;
- ``ack`` / ``nack`` / ``reject`` queue the settlement for one settler task that sends them
  in order (``basic_ack(..., wait=False)``: a write, no broker round trip).

Declarations use aio-pika's API (``declare_exchange``, ``declare_queue``, ``bind``), consuming
is ``Queue.consume`` with an ``async def`` callback (a plain one costs a warning per message),
and a publish is the aiormq ``basic_publish`` that ``aio_pika.Exchange.publish`` wraps, given
the wire properties as they are (aio-pika's ``Message`` would turn an expiration into seconds
and back). aiormq gives a publish without a message id a random one (it matches returned
messages by id).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import aiormq
import aiormq.exceptions as aiormq_errors

from eip.components.rabbitmq._amqp.errors import (
    AmqpError,
    ChannelClosedError,
    ConnectionClosedError,
    ConsumerCancelledError,
    MessageNackedError,
    fresh,
)
from eip.components.rabbitmq._amqp.incoming import DeliveriesCallback
from eip.components.rabbitmq._amqp.message import Properties

from .confirms import PublishWindow
from .convert import channel_error, delivery_from, returned_error, to_pamqp

if TYPE_CHECKING:
    import aio_pika
    from aio_pika.abc import AbstractIncomingMessage, AbstractQueue

    from .connection import AioPikaConnection

__all__ = ["AioPikaChannel"]

log = logging.getLogger("eip.components.rabbitmq.aiopika")

CLOSE_WAIT = 5.0
_ACK, _NACK, _REJECT = 0, 1, 2


class AioPikaChannel:
    """An aio-pika channel; open it with :meth:`AioPikaConnection.channel`."""

    def __init__(
        self,
        connection: AioPikaConnection,
        channel: aio_pika.Channel,
        wire: aiormq.Channel,
        publisher_confirms: bool,
    ) -> None:
        self._connection = connection
        self._channel = channel
        self._wire = wire
        self.publisher_confirms = publisher_confirms
        self._loop = asyncio.get_running_loop()
        self.closed: asyncio.Future[BaseException | None] = self._loop.create_future()
        self.on_cancel: Callable[[str], None] | None = None
        self._error: AmqpError | None = None
        self._closing = False  # closed by us: ``closed`` resolves with None
        self._close_reason: BaseException | None = None
        self._publishes = PublishWindow(self._loop, publisher_confirms)
        self._tasks: set[asyncio.Task[None]] = set()
        self._settles: collections.deque[tuple[int, int, bool, bool]] = collections.deque()
        self._settler: asyncio.Task[None] | None = None
        self._queues: dict[str, AbstractQueue] = {}
        wire.closing.add_done_callback(self._on_wire_closed)
        wire.on_consumer_cancel_callbacks.add(self._on_broker_cancel)

    def __repr__(self) -> str:
        state = "open" if self.is_open else "closed"
        return f"<AioPikaChannel {self._wire.number} {state}>"

    # -- state -------------------------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        return self._error is None and not self._wire.is_closed

    @property
    def writable(self) -> bool:
        return self.is_open and not self._publishes.full and not self._connection.blocked

    @property
    def next_publish_seq(self) -> int:
        return self._publishes.next_seq

    @property
    def unconfirmed_count(self) -> int:
        return self._publishes.unconfirmed_count

    def _raise_if_closed(self) -> None:
        if self._error is not None:
            raise fresh(self._error)
        if self._wire.is_closed:  # closing, its callback not run yet
            raise fresh(self._connection.error or ChannelClosedError(0, "channel closed"))

    def _on_wire_closed(self, closing: asyncio.Future[Any]) -> None:
        """The aiormq channel is closed (by us, by the broker, or with its connection)."""
        exc = None if closing.cancelled() else closing.exception()
        reason: BaseException | None
        if self._closing:
            error: AmqpError = self._error or ChannelClosedError(
                200, "channel closed by the client"
            )
            reason = self._close_reason
        elif not self._connection.is_open or isinstance(exc, ConnectionError):
            error = self._connection.error or ConnectionClosedError(0, "connection lost")
            reason = error
        else:
            error = channel_error(exc)
            reason = error
        self._error = error
        self._publishes.terminate(error)
        self._settles.clear()
        if not self.closed.done():
            self.closed.set_result(reason)

    # -- publishing --------------------------------------------------------------------------
    def publish(
        self,
        body: bytes,
        exchange: str = "",
        routing_key: str = "",
        properties: Properties | None = None,
        *,
        mandatory: bool = False,
    ) -> int:
        self._raise_if_closed()
        wire_properties = to_pamqp(properties)
        seq = self._publishes.started(len(body))
        task = self._loop.create_task(
            self._publish(seq, body, exchange, routing_key, wire_properties, mandatory)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return seq if self.publisher_confirms else 0

    async def _publish(
        self,
        seq: int,
        body: bytes,
        exchange: str,
        routing_key: str,
        properties: aiormq.spec.Basic.Properties,
        mandatory: bool,
    ) -> None:
        error: AmqpError | None = None
        try:
            await self._wire.basic_publish(
                body,
                exchange=exchange,
                routing_key=routing_key,
                properties=properties,
                mandatory=mandatory,
                wait=False,  # do not hold the channel lock until the socket drains
            )
        except aiormq_errors.PublishError as exc:
            error = returned_error(seq, exc)
        except aiormq_errors.DeliveryError:
            error = MessageNackedError(seq)
        except asyncio.CancelledError:
            error = self._error or ChannelClosedError(0, "publish cancelled")
        except Exception as exc:
            error = self._error or (
                channel_error(exc)
                if isinstance(exc, aiormq_errors.ChannelClosed)
                else ChannelClosedError(0, f"publish failed: {type(exc).__name__}: {exc}")
            )
        self._publishes.finished(seq, len(body), error)
        if error is not None and not self.publisher_confirms and self._error is None:
            log.warning("unconfirmed publish to %r failed: %s", exchange or routing_key, error)

    async def wait_confirm(self, seq: int) -> None:
        await self._publishes.wait(seq)

    def expire_confirms(self, before: int, error: AmqpError) -> int:
        return self._publishes.expire(before, error)

    async def drain(self) -> None:
        """Wait until the publish window is half empty and the broker does not block us."""
        while True:
            self._raise_if_closed()
            if self._publishes.half_empty and not self._connection.blocked:
                return
            changed = self._publishes.changed
            changed.clear()
            with contextlib.suppress(TimeoutError):  # a block ends without an event here
                await asyncio.wait_for(changed.wait(), 0.1)

    # -- settling deliveries -----------------------------------------------------------------
    def ack(self, delivery_tag: int, multiple: bool = False) -> None:
        self._queue_settle(_ACK, delivery_tag, multiple, False)

    def nack(self, delivery_tag: int, multiple: bool = False, requeue: bool = True) -> None:
        self._queue_settle(_NACK, delivery_tag, multiple, requeue)

    def reject(self, delivery_tag: int, requeue: bool) -> None:
        self._queue_settle(_REJECT, delivery_tag, False, requeue)

    def _queue_settle(self, kind: int, tag: int, multiple: bool, requeue: bool) -> None:
        self._raise_if_closed()
        self._settles.append((kind, tag, multiple, requeue))
        if self._settler is None or self._settler.done():
            self._settler = self._loop.create_task(self._send_settles())

    async def _send_settles(self) -> None:
        """Send the queued settlements in order, on this channel's own aiormq channel: a
        tag of a dead channel is never sent on another one."""
        wire, settles = self._wire, self._settles
        while settles:
            kind, tag, multiple, requeue = settles.popleft()
            while kind == _ACK and multiple and settles and settles[0][0] == _ACK and settles[0][2]:
                tag = max(tag, settles.popleft()[1])  # one multiple ack covers the others
            try:
                if kind == _ACK:
                    await wire.basic_ack(tag, multiple=multiple, wait=False)
                elif kind == _NACK:
                    await wire.basic_nack(tag, multiple=multiple, requeue=requeue, wait=False)
                else:
                    await wire.basic_reject(tag, requeue=requeue, wait=False)
            except Exception as exc:  # the channel died: the broker requeues what is unacked
                if not wire.is_closed:
                    log.warning("channel %s: settling delivery %d failed: %r", self, tag, exc)
                settles.clear()
                return

    # -- declarations and consumers ------------------------------------------------------------
    async def basic_qos(self, prefetch_count: int) -> None:
        self._raise_if_closed()
        await self._channel.set_qos(prefetch_count=prefetch_count)

    async def exchange_declare(
        self,
        exchange: str,
        type: str = "direct",  # the AMQP argument name
        *,
        durable: bool = True,
        passive: bool = False,
        arguments: dict[str, Any] | None = None,
    ) -> None:
        self._raise_if_closed()
        await self._channel.declare_exchange(
            exchange, type, durable=durable, passive=passive, arguments=arguments
        )

    async def exchange_bind(
        self,
        destination: str,
        source: str,
        routing_key: str = "",
        arguments: dict[str, Any] | None = None,
    ) -> None:
        self._raise_if_closed()
        target = await self._channel.get_exchange(destination, ensure=False)
        await target.bind(source, routing_key, arguments=arguments)

    async def queue_declare(
        self,
        queue: str = "",
        *,
        durable: bool = True,
        exclusive: bool = False,
        auto_delete: bool = False,
        passive: bool = False,
        arguments: dict[str, Any] | None = None,
    ) -> tuple[str, int, int]:
        self._raise_if_closed()
        declared = await self._channel.declare_queue(
            queue,
            durable=durable,
            exclusive=exclusive,
            auto_delete=auto_delete,
            passive=passive,
            arguments=arguments,
        )
        ok = declared.declaration_result
        self._queues[declared.name] = declared
        return declared.name, int(ok.message_count or 0), int(ok.consumer_count or 0)

    async def queue_bind(
        self,
        queue: str,
        exchange: str,
        routing_key: str = "",
        arguments: dict[str, Any] | None = None,
    ) -> None:
        self._raise_if_closed()
        await (await self._queue(queue)).bind(exchange, routing_key, arguments=arguments)

    async def _queue(self, name: str) -> AbstractQueue:
        found = self._queues.get(name)
        if found is None:
            found = self._queues[name] = await self._channel.get_queue(name, ensure=False)
        return found

    async def basic_consume(
        self,
        queue: str,
        on_deliveries: DeliveriesCallback,
        *,
        consumer_tag: str = "",
        no_ack: bool = False,
        exclusive: bool = False,
        arguments: dict[str, Any] | None = None,
    ) -> str:
        """Consume with an ``async def`` callback that hands each delivery on at once."""
        self._raise_if_closed()

        async def on_message(message: AbstractIncomingMessage) -> None:
            if self._error is not None:
                return  # closing: left unacked, the broker requeues it
            try:
                on_deliveries([delivery_from(message)])
            except Exception as exc:
                log.error("deliveries callback of %s raised; closing it", self, exc_info=exc)
                self._close_reason = exc
                self.close_soon(f"closed by the client: on_deliveries raised {exc!r}")

        target = await self._queue(queue)
        return await target.consume(
            on_message,
            no_ack=no_ack,
            exclusive=exclusive,
            arguments=arguments,
            consumer_tag=consumer_tag or None,
        )

    async def basic_cancel(self, consumer_tag: str) -> None:
        self._raise_if_closed()
        await self._wire.basic_cancel(consumer_tag)

    async def _on_broker_cancel(self, frame: aiormq.spec.Basic.Cancel) -> None:
        tag = str(frame.consumer_tag)
        callback = self.on_cancel
        if callback is None:
            self._close_reason = ConsumerCancelledError(tag)
            self.close_soon(f"consumer {tag!r} was cancelled by the broker")
            return
        try:
            callback(tag)
        except Exception as exc:
            log.error("on_cancel callback of %s raised; closing it", self, exc_info=exc)
            self._close_reason = exc
            self.close_soon(f"closed by the client: on_cancel raised {exc!r}")

    # -- closing -----------------------------------------------------------------------------
    async def close(self) -> None:
        """Close after the publishes and settlements already queued went out (bounded)."""
        if self.closed.done():
            return
        pending = [t for t in (*self._tasks, self._settler) if t is not None and not t.done()]
        if pending and self.is_open:
            await asyncio.wait(pending, timeout=CLOSE_WAIT)
        self._closing = True
        if self._error is None:
            self._error = ChannelClosedError(200, "channel closed by the client")
        with contextlib.suppress(Exception):
            await self._channel.close()
        if not self.closed.done():
            self.closed.set_result(self._close_reason)

    def close_soon(self, reason: str) -> None:
        if self._closing or self.closed.done():
            return
        self._closing = True
        self._error = ChannelClosedError(200, reason)
        task = self._loop.create_task(self._close_quietly())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _close_quietly(self) -> None:
        with contextlib.suppress(Exception):
            await self._channel.close()
        if not self.closed.done():
            self.closed.set_result(self._close_reason)
