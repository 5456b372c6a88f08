"""How a RabbitMQ consumer settles its deliveries: the ack window and the poison counts.

**The ack window** (one per channel: delivery tags belong to their channel). Acks go out with
``multiple=true`` up to the highest delivery tag below which *every* delivery has settled, so a
finished message is never acked past an unfinished one, whatever the concurrency. That keeps
acks cheap, but one message that stays unfinished (waiting for a long redelivery backoff, say)
would hold the whole prefetch window behind it: the broker sends nothing more and the queue
stalls. So once more than half the window has finished behind an unfinished head, the window
switches to acking finished deliveries one by one until the head settles; the queue keeps
moving and the slow message keeps its place. (Deliveries still running do not count: with
many in flight, say waiting for their publish confirms, the window stays on multiple acks.)

**Poison counts.** A message whose outcome was unknown (see the producer) is put back on its
queue; one that keeps coming back must not loop for ever. On quorum queues the broker's
``x-delivery-count`` counts every delivery of the message exactly (crashes included) and is
checked when the message arrives. Elsewhere the consumer counts the times it requeued a message
itself, keyed by message id (or routing key and body when there is none), and resets the count
as soon as a message with that key completes: a broker drop that redelivers thousands of
identical bodies adds nothing to any count, because the broker requeued those, not the engine.
"""

from __future__ import annotations

import asyncio
import collections

from eip.components.rabbitmq._amqp import Delivery
from eip.components.rabbitmq.client import AmqpChannel

__all__ = ["AckWindow", "RequeueCounts"]

RUNNING, DONE, SETTLED = 0, 1, 2


class AckWindow:
    """The unsettled deliveries of one channel, in arrival order."""

    __slots__ = (
        "_finished",
        "_gap_at",
        "_gapped",
        "_order",
        "_scheduled",
        "_state",
        "_upto",
        "channel",
    )

    def __init__(self, channel: AmqpChannel, prefetch: int) -> None:
        self.channel = channel
        self._order: collections.deque[int] = collections.deque()
        self._state: dict[int, int] = {}
        self._upto = 0
        self._scheduled = False
        self._gap_at = max(1, prefetch // 2)
        self._gapped = False
        self._finished = 0  # deliveries DONE behind an unfinished head (not yet acked)

    @property
    def open(self) -> bool:
        return self.channel.is_open

    def arrived(self, tag: int) -> None:
        self._order.append(tag)
        self._state[tag] = RUNNING

    def done(self, tag: int) -> None:
        """The delivery's exchange succeeded: ack it (soon, with the others)."""
        if self._gapped:
            self.channel.ack(tag)
            self._state[tag] = SETTLED
        else:
            self._state[tag] = DONE
            self._finished += 1
        self._advance()

    def done_all(self, tags: list[int]) -> None:
        """:meth:`done` for several deliveries at once."""
        state = self._state
        if self._gapped:
            ack = self.channel.ack
            for tag in tags:
                ack(tag)
                state[tag] = SETTLED
        else:
            for tag in tags:
                state[tag] = DONE
            self._finished += len(tags)
        self._advance()

    def reject(self, tag: int, requeue: bool) -> None:
        """Settle one delivery negatively now (requeue, or dead-letter it)."""
        if requeue:
            self.channel.nack(tag, requeue=True)
        else:
            self.channel.reject(tag, requeue=False)
        self._state[tag] = SETTLED
        self._advance()

    def _advance(self) -> None:
        order, state = self._order, self._state
        upto = 0
        moved = False
        while order:
            tag = order[0]
            outcome = state[tag]
            if outcome == RUNNING:
                break
            moved = True
            order.popleft()
            del state[tag]
            if outcome == DONE:
                upto = tag
                self._finished -= 1
        if upto:
            self._upto = upto
            if not self._scheduled:
                self._scheduled = True
                asyncio.get_running_loop().call_soon(self.flush)
        if moved:
            self._gapped = False  # the head settled: back to multiple acks
        if not self._gapped and self._finished > self._gap_at:
            self._open_gap()

    def _open_gap(self) -> None:
        """The head is stuck and the window is filling: ack the finished ones singly."""
        self._gapped = True
        state = self._state
        channel = self.channel
        for tag in self._order:
            if state[tag] == DONE:
                channel.ack(tag)
                state[tag] = SETTLED
        self._finished = 0

    def flush(self) -> None:
        """Send the pending multiple ack."""
        self._scheduled = False
        if self._upto and self.channel.is_open:
            self.channel.ack(self._upto, multiple=True)
            self._upto = 0


class RequeueCounts:
    """How often the engine requeued each message (by key), until one with the key completes."""

    __slots__ = ("_counts",)

    LIMIT = 100_000

    def __init__(self) -> None:
        self._counts: collections.OrderedDict[str, int] = collections.OrderedDict()

    @staticmethod
    def key(delivery: Delivery) -> str:
        message_id = delivery.properties.message_id
        if message_id is not None:
            return f"id:{message_id}"
        return f"body:{delivery.routing_key}:{hash(delivery.body)}"

    def requeued(self, delivery: Delivery) -> int:
        """Count one more requeue of ``delivery``; returns the count so far."""
        key = self.key(delivery)
        count = self._counts.pop(key, 0) + 1
        self._counts[key] = count
        if len(self._counts) > self.LIMIT:
            self._counts.popitem(last=False)
        return count

    def seen(self, delivery: Delivery) -> int:
        return self._counts.get(self.key(delivery), 0) if self._counts else 0

    def __bool__(self) -> bool:
        """Whether any message is being counted (else :meth:`completed` has nothing to do)."""
        return bool(self._counts)

    def completed(self, delivery: Delivery) -> None:
        if self._counts:
            self._counts.pop(self.key(delivery), None)
