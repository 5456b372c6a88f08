"""The ack window (:class:`eip.components.rabbitmq.settlement.AckWindow`) on a real channel:
many deliveries in flight keep it on ``multiple`` acks, a stuck head opens the gap (single
acks) only once more than half the window has finished behind it, and the gap closes when the
head settles. The acks the window sends are recorded on the way to the broker, and the broker
must end with nothing unacked."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from eip.components.rabbitmq._amqp import Channel, Delivery, Properties, connect
from eip.components.rabbitmq.settlement import AckWindow

from .support import URL, Broker, depth_is, unique, until

pytestmark = pytest.mark.rabbitmq

COUNT = 300


async def _window(broker: Broker) -> tuple[Channel, AckWindow, list[Delivery], list[Any], Any]:
    """``COUNT`` deliveries on a consumer channel of its own (prefetch ``COUNT``), all
    arrived in the window; the list the window's acks are recorded in."""
    channel, queues, _ = broker
    queue = unique("window")
    queues.append(queue)
    await channel.queue_declare(queue)
    seq = 0
    for n in range(COUNT):
        seq = channel.publish(b"%d" % n, "", queue, Properties(delivery_mode=2))
    await channel.wait_confirm(seq)
    connection = await connect(URL)
    consumer = await connection.channel()
    await consumer.basic_qos(COUNT)
    deliveries: list[Delivery] = []
    await consumer.basic_consume(queue, deliveries.extend)
    await until(lambda: len(deliveries) == COUNT, what="all delivered")
    window = AckWindow(consumer, COUNT)
    for delivery in deliveries:
        window.arrived(delivery.delivery_tag)
    acks: list[tuple[int, bool]] = []
    send = consumer.ack

    def recorded(tag: int, multiple: bool = False) -> None:
        acks.append((tag, multiple))
        send(tag, multiple)

    consumer.ack = recorded  # type: ignore[method-assign]
    return consumer, window, deliveries, acks, (connection, queue)


async def _all_acked(broker: Broker, held: Any) -> None:
    connection, queue = held
    await asyncio.sleep(0.05)  # the window's flush runs on the next loop iteration
    await connection.close()  # anything unacked goes back to the queue
    await until(lambda: depth_is(broker[0], queue, 0), what="nothing requeued")


async def test_many_in_flight_finishing_in_order_keep_multiple_acks(broker: Broker) -> None:
    _, window, deliveries, acks, held = await _window(broker)
    tags = [d.delivery_tag for d in deliveries]
    for start in range(0, COUNT, 25):  # the rest still running, as under pipelined confirms
        window.done_all(tags[start : start + 25])
        await asyncio.sleep(0)
    await asyncio.sleep(0.05)
    assert acks
    assert all(multiple for _, multiple in acks), acks
    assert acks[-1] == (tags[-1], True)
    await _all_acked(broker, held)


async def test_a_stuck_head_opens_the_gap_and_it_closes_when_the_head_settles(
    broker: Broker,
) -> None:
    _, window, deliveries, acks, held = await _window(broker)
    tags = [d.delivery_tag for d in deliveries]
    head, behind, rest = tags[0], tags[1:200], tags[200:]
    for tag in behind[: COUNT // 2]:  # up to half the window finished behind the head
        window.done(tag)
    assert acks == []
    window.done(behind[COUNT // 2])  # one more: the gap opens, finished ones acked singly
    assert len(acks) == COUNT // 2 + 1
    assert not any(multiple for _, multiple in acks)
    for tag in behind[COUNT // 2 + 1 :]:
        window.done(tag)
    single = len(acks)
    assert single == len(behind)
    window.done(head)  # the head settles (acked singly, still in the gap): the gap closes
    await asyncio.sleep(0.05)
    assert acks[single:] == [(head, False)]
    window.done_all(rest)
    await asyncio.sleep(0.05)
    assert acks[single + 1 :] == [(rest[-1], True)]
    await _all_acked(broker, held)
