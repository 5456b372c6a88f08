"""The limit in the same run: a hand-written relay on eip's own AMQP client, no engine.

``own_client_relay`` does the same at-least-once relay as the baselines in
:mod:`benchmarks._rabbitmq_baselines` (consume A, decode into ``Customer``, map with
``to_erp``, encode, publish to B with publisher confirms, ack A after the confirm), written
directly on :mod:`eip.components.rabbitmq._amqp` the way its API is meant to be used:

- **batched consume**: ``on_deliveries`` gets every delivery parsed from one socket read and
  runs the work for each as a plain call, inside ``data_received``;
- **pipelined confirms**: each publish is written without waiting (``Channel.publish`` only
  buffers; the connection writes everything buffered in one ``transport.write`` per loop
  iteration); the batch remembers its last publish sequence number and last delivery tag;
- **multiple acks**: ``on_confirm`` advances the lowest unconfirmed sequence number and, once
  every publish of one or more batches is confirmed, acks A with one ``ack(multiple=True)``
  on the last of those batches' delivery tags.

No task, future or lock exists per message. One channel consumes and publishes, so delivery
tags and publish sequence numbers both increase in the order the work runs. A nack fails the
run (the baseline has no dead-lettering; eip's route would requeue). What this measures is the
physical limit of eip's client on this machine, beside eip: ``rabbitmq-vs-own-client``.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

from benchmarks._rabbitmq_baselines import _Tally, _unless_dead, _Watch, _work
from eip.components.rabbitmq._amqp import Channel, Delivery, Properties, connect

__all__ = ["own_client_relay"]

CONTENT_TYPE = "application/json"


class _Relay:
    """The relay's state: what is published but not yet confirmed, and what to ack then."""

    def __init__(self, channel: Channel, target: str, persistent: bool, acked: _Tally) -> None:
        self.channel = channel
        self.target = target
        self.properties = Properties(
            content_type=CONTENT_TYPE, delivery_mode=2 if persistent else 1
        )
        self.work = _work()
        self.acked = acked
        self.unconfirmed: set[int] = set()
        self.low = 1  # the lowest publish sequence number that may still be unconfirmed
        self.next_seq = 1
        self.batches: deque[tuple[int, int, int]] = deque()  # (last seq, last tag, count)
        self.failure: BaseException | None = None

    def on_deliveries(self, deliveries: list[Delivery]) -> None:
        publish = self.channel.publish
        work, target, properties = self.work, self.target, self.properties
        unconfirmed = self.unconfirmed
        seq = 0
        for delivery in deliveries:
            seq = publish(work(delivery.body), "", target, properties)
            unconfirmed.add(seq)
        self.next_seq = seq + 1
        self.batches.append((seq, deliveries[-1].delivery_tag, len(deliveries)))

    def on_confirm(self, tag: int, multiple: bool, ack: bool) -> None:
        if not ack:
            self.failure = RuntimeError(f"the broker nacked publish {tag}")
            return
        unconfirmed = self.unconfirmed
        low = self.low
        if multiple:
            unconfirmed.difference_update(range(low, tag + 1))
        else:
            unconfirmed.discard(tag)
        end = self.next_seq
        while low < end and low not in unconfirmed:
            low += 1
        self.low = low
        batches = self.batches
        last_tag = count = 0
        while batches and batches[0][0] < low:
            _, last_tag, n = batches.popleft()
            count += n
        if count:
            self.channel.ack(last_tag, multiple=True)
            self.acked.add(count)


async def own_client_relay(
    url: str,
    a: str,
    b: str,
    n: int,
    *,
    prefetch: int = 1000,
    persistent: bool = False,
    timeout: float = 600.0,
) -> float:
    """Relay ``n`` messages from ``a`` to ``b`` on eip's own client; the elapsed seconds
    (from starting the consumer until B holds ``n`` messages)."""
    watch = await _Watch.open(url)
    connection = await connect(url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        await channel.basic_qos(prefetch)
        await channel.queue_declare(a, passive=True)
        acked = _Tally(n)
        relay = _Relay(channel, b, persistent, acked)
        channel.on_confirm = relay.on_confirm

        async def until_closed() -> None:
            reason = await channel.closed
            raise RuntimeError(f"the relay's channel closed: {reason!r}")

        closed = asyncio.create_task(until_closed())
        try:
            began = time.perf_counter()
            tag = await channel.basic_consume(a, relay.on_deliveries)
            elapsed = await _unless_dead(closed, watch.until(b, n, began, timeout))
            await _unless_dead(closed, acked.wait(timeout))
            if relay.failure is not None:
                raise relay.failure
            await channel.basic_cancel(tag)
        finally:
            closed.cancel()
            await asyncio.gather(closed, return_exceptions=True)
    finally:
        await connection.close()
        await watch.close()
    return elapsed
