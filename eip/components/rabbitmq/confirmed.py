"""The confirm-aware fast path: a delivery settled from its publish's confirm.

A route ``from_("rabbitmq:A") ... .to("rabbitmq:B")`` spends, on the general path, per
message: the send's coroutine waiting for its confirm, a future in the confirm bookkeeping, the
pipeline's slow-path coroutine and the consumer's task. When the RabbitMQ send is the route's
last top-level step, the fast path spends none of them:

1. the consumer marks the exchange it dispatches (:attr:`Handoff.exchange`) and runs the
   route's fused pipeline, synchronously;
2. the producer, meeting the marked exchange, writes the publish and returns None instead of
   the confirm's awaitable, leaving the publish (sequence number, routing key) and its
   channel's settler in the handoff;
3. the consumer gives the delivery to the producer channel's :class:`ConfirmSettler`, which
   settles it from the channel's confirm callback, in publish order: acked, the consumer
   completes the exchange's unit of work and the ack window acks it (``multiple``, up to the
   last contiguous finished delivery); nacked, returned, or unknown (the channel closed, the
   confirm timed out), the route's error handling runs from the send step exactly as if the
   send had raised (a task, on this rare path only).

At-least-once is unchanged: a delivery is acked only after its publish is confirmed. The
fast path is taken only when nothing can observe the difference: the send is the last
top-level step (nothing runs after it that the confirm would have gated), nothing wraps the
route's dispatch or the send but the context's send counters (``metrics=True``, as under
``eip run``: the send counts as sent when written, and moves to failed if its confirm fails;
tracing and audit take the general path), the consumer runs with
``concurrency`` > 1 (``concurrency=1`` promises one exchange at a time, in order, retries
included), the delivery asks for no reply, and the producer is on eip's own client, with
confirms and without ``mandatory``. Anything else takes the general path, unchanged.
"""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING, Any

from eip.components.rabbitmq._amqp import AmqpError, Channel, ChannelClosedError

if TYPE_CHECKING:
    from eip.components.rabbitmq._amqp import Delivery
    from eip.components.rabbitmq.consumer import RabbitMQConsumer
    from eip.components.rabbitmq.producer import RabbitMQProducer
    from eip.components.rabbitmq.settlement import AckWindow
    from eip.message import Exchange

__all__ = ["ConfirmSettler", "Handoff"]


class Handoff:
    """Between a consumer's dispatch and the producer the exchange reaches synchronously (one
    per component; dispatch is synchronous, so one slot is enough)."""

    __slots__ = ("exchange", "producer", "routing_key", "seq", "settler")

    def __init__(self) -> None:
        #: The exchange the consumer is dispatching on the fast path, else None, and the
        #: producer of the route's last step, the only one that may take it (an earlier send,
        #: in a sub-route say, waits for its confirm as usual before the route goes on).
        self.exchange: Exchange | None = None
        self.producer: RabbitMQProducer | None = None
        #: Set (with ``seq`` and ``routing_key``) by the producer that wrote its publish,
        #: which then clears ``exchange``.
        self.settler: ConfirmSettler | None = None
        self.seq = 0
        self.routing_key = ""


class ConfirmSettler:
    """The fast-path deliveries waiting for the confirms of one producer channel, in
    publish order (sequence numbers increase): the consumer appends ``(seq, routing key,
    consumer, ack window, delivery, exchange)`` to :attr:`pending`."""

    __slots__ = ("channel", "pending", "producer")

    def __init__(self, channel: Channel, producer: RabbitMQProducer) -> None:
        self.channel = channel
        self.producer = producer
        self.pending: collections.deque[
            tuple[int, str, RabbitMQConsumer, AckWindow, Delivery, Exchange]
        ] = collections.deque()
        channel.on_confirm = self.on_confirm
        channel.closed.add_done_callback(self._closed)

    def on_confirm(self, tag: int, multiple: bool, ack: bool) -> None:
        """A Basic.Ack/Nack (the channel's bookkeeping has recorded it): settle, in order,
        every waiting delivery whose publish is now confirmed."""
        pending = self.pending
        if not pending:
            return
        channel = self.channel
        below = channel.settled_below
        failure = channel.confirm_failure if channel.any_confirm_failed else None
        acked: list[tuple[AckWindow, Delivery, Exchange]] = []
        to: RabbitMQConsumer | None = None  # the consumer of the deliveries in ``acked``
        while pending and pending[0][0] < below:
            seq, routing_key, consumer, window, delivery, exchange = pending.popleft()
            error = None if failure is None else failure(seq)
            if error is not None:
                self._fail(routing_key, consumer, window, delivery, exchange, error)
                continue
            if consumer is not to:
                if to is not None:
                    to.confirmed(acked)
                    acked = []
                to = consumer
            acked.append((window, delivery, exchange))
        if to is not None:
            to.confirmed(acked)

    def expire(self, before: int, error: AmqpError) -> int:
        """Fail the waits of publishes numbered below ``before`` (no confirm in time): their
        outcome is unknown. A late confirm then finds nobody waiting."""
        pending = self.pending
        expired = 0
        while pending and pending[0][0] < before:
            _seq, routing_key, consumer, window, delivery, exchange = pending.popleft()
            self._fail(routing_key, consumer, window, delivery, exchange, error)
            expired += 1
        return expired

    def _closed(self, closed: Any) -> None:
        """The channel closed: every waiting publish's outcome is unknown."""
        reason = None if closed.cancelled() else closed.result()
        error = reason if isinstance(reason, AmqpError) else ChannelClosedError(200, "closed")
        self.expire(self.channel.next_publish_seq, error)
        if self.channel.on_confirm == self.on_confirm:
            self.channel.on_confirm = None

    def _fail(
        self,
        routing_key: str,
        consumer: RabbitMQConsumer,
        window: AckWindow,
        delivery: Delivery,
        exchange: Exchange,
        error: AmqpError,
    ) -> None:
        consumer.confirm_failed(
            window, delivery, exchange, self.producer.confirm_error(error, routing_key)
        )
