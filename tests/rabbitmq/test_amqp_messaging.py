"""Publishing and consuming with the lean AMQP client against the real broker: declarations,
properties round trip, large bodies, acks, nacks, rejects, dead-lettering, cancels, batching."""

from __future__ import annotations

import asyncio
import datetime
import os
from decimal import Decimal

import pytest

from eip.components.rabbitmq._amqp import (
    ChannelClosedError,
    Connection,
    ConsumerCancelledError,
    Delivery,
    Properties,
)

from .test_amqp_helpers import (
    Collector,
    conn,
    delete_queues,
    eventually,
    queue,
    requires_broker,
    unique,
)

pytestmark = requires_broker
__all__ = ["conn", "queue"]


def full_properties(i: int) -> Properties:
    return Properties(
        content_type="application/json",
        content_encoding="utf-8",
        headers={
            "index": i,
            "big": 2**40,
            "negative": -5,
            "text": "héllo wörld",
            "flag": True,
            "ratio": 1.5,
            "price": Decimal("12.34"),
            "nothing": None,
            "raw": bytearray(b"\x00\x01\xff"),
            "when": datetime.datetime(2024, 5, 1, 12, 30, tzinfo=datetime.UTC),
            "nested": {"list": [1, "two", {"three": [3.5, False]}], "empty": {}},
        },
        delivery_mode=2,
        priority=7,
        correlation_id=f"corr-{i}",
        reply_to="replies.queue",
        expiration="600000",
        message_id=f"msg-{i}",
        timestamp=1_700_000_000 + i,
        type="order.created",
        user_id="guest",  # RabbitMQ checks it against the login
        app_id="eip-tests",
        cluster_id="c1",
    )


async def test_declare_bind_publish_purge_delete(conn: Connection) -> None:
    channel = await conn.channel()
    exchange, q = unique("ex"), unique()
    await channel.exchange_declare(exchange, "direct", durable=False, auto_delete=False)
    await channel.exchange_declare(exchange, "direct", durable=False, passive=True)
    name, messages, consumers = await channel.queue_declare(q, durable=False)
    assert (name, messages, consumers) == (q, 0, 0)
    await channel.queue_bind(q, exchange, "key.a")
    channel.publish(b"one", exchange, "key.a")
    channel.publish(b"lost", exchange, "key.b")  # not bound: dropped by the broker
    channel.publish(b"two", exchange, "key.a")

    async def two_ready() -> bool:
        return (await channel.queue_declare(q, passive=True))[1] == 2

    await eventually(two_ready)
    assert await channel.queue_purge(q) == 2
    await channel.queue_unbind(q, exchange, "key.a")
    channel.publish(b"three", exchange, "key.a")  # unbound now
    channel.publish(b"four", "", q)  # default exchange

    async def one_ready() -> bool:
        return (await channel.queue_declare(q, passive=True))[1] == 1

    await eventually(one_ready)
    assert await channel.queue_delete(q) == 1
    await channel.exchange_delete(exchange)
    with pytest.raises(ChannelClosedError) as info:
        await channel.exchange_declare(exchange, passive=True)
    assert info.value.code == 404


async def test_server_named_exclusive_queue(conn: Connection) -> None:
    channel = await conn.channel()
    name, _, _ = await channel.queue_declare("", durable=False, exclusive=True)
    assert name.startswith("amq.gen-")


async def test_round_trip_1000_messages_with_all_properties(conn: Connection, queue: str) -> None:
    channel = await conn.channel()
    await channel.basic_qos(200)
    collector = Collector(ack=True, channel=channel)
    tag = await channel.basic_consume(queue, collector)
    assert tag.startswith("amq.ctag-")
    for i in range(1000):
        channel.publish(f"body-{i}".encode(), "", queue, full_properties(i))
    deliveries = await collector.wait_for(1000)
    assert len(deliveries) == 1000
    for i, delivery in enumerate(deliveries):
        assert delivery.body == f"body-{i}".encode()
        assert delivery.properties == full_properties(i), delivery.properties
        assert delivery.consumer_tag == tag
        assert delivery.exchange == ""
        assert delivery.routing_key == queue
        assert not delivery.redelivered
    assert [d.delivery_tag for d in deliveries] == list(range(1, 1001))
    # deliveries came in batches (one per read), not one call per message
    assert len(collector.batches) < 1000


async def test_empty_and_absent_properties_and_bodies(conn: Connection, queue: str) -> None:
    channel = await conn.channel()
    collector = Collector(ack=True, channel=channel)
    await channel.basic_consume(queue, collector)
    channel.publish(b"", "", queue)
    channel.publish(b"x", "", queue, Properties(content_type="", headers={}))
    channel.publish(b"y", "", queue, Properties())
    first, second, third = await collector.wait_for(3)
    assert first.body == b""
    assert first.properties == Properties()
    assert second.properties.content_type == ""
    assert second.properties.headers == {}
    assert third.properties == Properties()


@pytest.mark.parametrize("size", [1_000_000, 131072 - 8, 131072 - 7, 3 * (131072 - 8)])
async def test_large_bodies_are_split_across_frames(
    conn: Connection, queue: str, size: int
) -> None:
    channel = await conn.channel()
    collector = Collector(ack=True, channel=channel)
    await channel.basic_consume(queue, collector)
    body = os.urandom(size)
    channel.publish(body, "", queue, Properties(message_id="big"))
    channel.publish(b"after", "", queue)
    big, after = await collector.wait_for(2)
    assert big.body == body
    assert big.properties.message_id == "big"
    assert after.body == b"after"


async def test_ack_multiple(conn: Connection, queue: str) -> None:
    channel = await conn.channel()
    await channel.basic_qos(100)
    received: list[Delivery] = []
    done = asyncio.get_running_loop().create_future()
    pending = 0

    def on_deliveries(batch: list[Delivery]) -> None:
        nonlocal pending
        for delivery in batch:
            received.append(delivery)
            pending += 1
            if pending == 100:  # ack every 100 with one multiple ack
                channel.ack(delivery.delivery_tag, multiple=True)
                pending = 0
        if len(received) == 1000 and not done.done():
            done.set_result(None)

    tag = await channel.basic_consume(queue, on_deliveries)
    for i in range(1000):
        channel.publish(b"%d" % i, "", queue)
    await asyncio.wait_for(done, 20)
    await channel.basic_cancel(tag)
    await channel.close()  # would requeue anything not acked
    check = await conn.channel()
    _, messages, consumers = await check.queue_declare(queue, passive=True)
    assert (messages, consumers) == (0, 0)
    assert len({d.delivery_tag for d in received}) == 1000


async def test_reject_and_nack_requeue(conn: Connection, queue: str) -> None:
    channel = await conn.channel()
    collector = Collector()
    await channel.basic_consume(queue, collector)
    channel.publish(b"again", "", queue)
    (first,) = await collector.wait_for(1)
    assert not first.redelivered
    channel.reject(first.delivery_tag, requeue=True)
    second = (await collector.wait_for(2))[1]
    assert second.body == b"again"
    assert second.redelivered
    channel.nack(second.delivery_tag, requeue=True)
    third = (await collector.wait_for(3))[2]
    assert third.redelivered
    channel.ack(third.delivery_tag)


async def test_reject_and_nack_without_requeue_dead_letter(conn: Connection) -> None:
    channel = await conn.channel()
    dlx, dlq, work = unique("dlx"), unique("dlq"), unique("work")
    await channel.exchange_declare(dlx, "fanout", durable=False, auto_delete=True)
    await channel.queue_declare(dlq, durable=False)
    await channel.queue_bind(dlq, dlx)
    await channel.queue_declare(work, durable=False, arguments={"x-dead-letter-exchange": dlx})
    try:
        work_deliveries = Collector()
        await channel.basic_consume(work, work_deliveries)
        dead = Collector(ack=True, channel=channel)
        await channel.basic_consume(dlq, dead)
        channel.publish(b"rejected", "", work, Properties(message_id="r"))
        channel.publish(b"nacked", "", work, Properties(message_id="n"))
        one, two = await work_deliveries.wait_for(2)
        channel.reject(one.delivery_tag, requeue=False)
        channel.nack(two.delivery_tag, requeue=False)
        dead_letters = await dead.wait_for(2)
        assert sorted(d.body for d in dead_letters) == [b"nacked", b"rejected"]
        for d in dead_letters:
            headers = d.properties.headers
            assert headers is not None
            death = headers["x-death"][0]
            assert death["queue"] == work
            assert death["reason"] == "rejected"
        assert len(work_deliveries.deliveries) == 2  # nothing was requeued
    finally:
        await delete_queues(dlq, work)


async def test_broker_cancel_calls_on_cancel(conn: Connection) -> None:
    q = unique()
    channel = await conn.channel()
    await channel.queue_declare(q, durable=False)
    cancelled: list[str] = []
    channel.on_cancel = cancelled.append
    tag = await channel.basic_consume(q, Collector())
    other = await conn.channel()
    await other.queue_delete(q)
    await eventually(lambda: asyncio.sleep(0, bool(cancelled)))
    assert cancelled == [tag]
    assert channel.is_open  # on_cancel was set: the channel stays usable
    await channel.queue_declare(unique(), durable=False, exclusive=True)


async def test_broker_cancel_without_on_cancel_closes_the_channel(conn: Connection) -> None:
    q = unique()
    channel = await conn.channel()
    await channel.queue_declare(q, durable=False)
    tag = await channel.basic_consume(q, Collector())
    other = await conn.channel()
    await other.queue_delete(q)
    reason = await asyncio.wait_for(channel.closed, 5)
    assert isinstance(reason, ConsumerCancelledError)
    assert reason.consumer_tag == tag
    assert conn.is_open


async def test_failing_callback_closes_the_channel_and_requeues(
    conn: Connection, queue: str
) -> None:
    channel = await conn.channel()

    def explode(batch: list[Delivery]) -> None:
        raise RuntimeError("bug in the consumer")

    await channel.basic_consume(queue, explode)
    channel.publish(b"survivor", "", queue)
    reason = await asyncio.wait_for(channel.closed, 5)
    assert isinstance(reason, RuntimeError)
    with pytest.raises(ChannelClosedError):
        channel.ack(1)
    again = await conn.channel()
    collector = Collector(ack=True, channel=again)
    await again.basic_consume(queue, collector)
    (delivery,) = await collector.wait_for(1)
    assert delivery.body == b"survivor"
    assert delivery.redelivered


async def test_two_consumers_on_one_channel(conn: Connection) -> None:
    a, b = unique(), unique()
    channel = await conn.channel()
    await channel.queue_declare(a, durable=False, exclusive=True)
    await channel.queue_declare(b, durable=False, exclusive=True)
    got_a, got_b = Collector(ack=True, channel=channel), Collector(ack=True, channel=channel)
    await channel.basic_consume(a, got_a, consumer_tag="ctag-a")
    await channel.basic_consume(b, got_b, consumer_tag="ctag-b")
    for i in range(300):
        channel.publish(b"a%d" % i, "", a)
        channel.publish(b"b%d" % i, "", b)
    await got_a.wait_for(300)
    await got_b.wait_for(300)
    assert [d.body for d in got_a.deliveries] == [b"a%d" % i for i in range(300)]
    assert {d.consumer_tag for d in got_b.deliveries} == {"ctag-b"}
    await channel.basic_cancel("ctag-a")
    channel.publish(b"late", "", a)
    await asyncio.sleep(0.2)
    assert len(got_a.deliveries) == 300  # cancelled: nothing more


async def test_no_ack_consumer(conn: Connection) -> None:
    q = unique()
    channel = await conn.channel()
    await channel.queue_declare(q, durable=False, exclusive=True)
    collector = Collector()
    await channel.basic_consume(q, collector, no_ack=True)
    for i in range(50):
        channel.publish(b"%d" % i, "", q)
    await collector.wait_for(50)
    _, messages, _ = await channel.queue_declare(q, passive=True)
    assert messages == 0


class CountingTransport:
    """Wraps the real transport and counts ``write`` calls."""

    def __init__(self, inner: asyncio.Transport) -> None:
        self.inner = inner
        self.writes = 0

    def write(self, data: bytes) -> None:
        self.writes += 1
        self.inner.write(data)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


async def test_write_coalescing(conn: Connection, queue: str) -> None:
    channel = await conn.channel(publisher_confirms=True)
    assert conn._transport is not None
    counting = CountingTransport(conn._transport)
    conn._transport = counting  # type: ignore[assignment]
    seqs = [
        channel.publish(b"m%d" % i, "", queue, Properties(message_id=str(i))) for i in range(1000)
    ]
    assert counting.writes == 0  # nothing is written synchronously
    await asyncio.gather(*(channel.wait_confirm(s) for s in seqs))
    assert counting.writes <= 2, counting.writes
    # acks coalesce the same way
    consumer = await conn.channel()
    await consumer.basic_qos(1000)
    collector = Collector()
    await consumer.basic_consume(queue, collector)
    deliveries = await collector.wait_for(1000)
    before = counting.writes
    for d in deliveries:
        consumer.ack(d.delivery_tag)
    await asyncio.sleep(0)
    assert counting.writes - before == 1
    await consumer.basic_cancel(collector.deliveries[0].consumer_tag)
    _, messages, _ = await consumer.queue_declare(queue, passive=True)
    assert messages == 0
