"""Publisher confirms, returns and back-pressure with the lean AMQP client (real broker)."""

from __future__ import annotations

import asyncio

import pytest
from pamqp import commands

from eip.components.rabbitmq._amqp import (
    AmqpError,
    ChannelClosedError,
    Connection,
    MessageNackedError,
    MessageReturnedError,
    Properties,
    Returned,
)
from eip.components.rabbitmq._amqp.codec import marshal

from .test_amqp_helpers import conn, delete_queues, eventually, queue, requires_broker, unique

pytestmark = requires_broker
__all__ = ["conn", "queue"]


def expand(events: list[tuple[int, bool, bool]], start: int = 1) -> dict[int, bool]:
    """Per sequence number, the outcome reported by (tag, multiple, ack) confirms."""
    outcome: dict[int, bool] = {}
    low = start
    for tag, multiple, ack in events:
        if multiple:
            for seq in range(low, tag + 1):
                outcome.setdefault(seq, ack)
        else:
            assert tag not in outcome, f"{tag} confirmed twice"
            outcome[tag] = ack
        while low in outcome:
            low += 1
    return outcome


async def test_every_publish_is_confirmed(conn: Connection, queue: str) -> None:
    channel = await conn.channel(publisher_confirms=True)
    events: list[tuple[int, bool, bool]] = []
    channel.on_confirm = lambda tag, multiple, ack: events.append((tag, multiple, ack))
    total = 5000
    seqs = []
    for _ in range(10):
        seqs += [channel.publish(b"%d" % i, "", queue) for i in range(total // 10)]
        await channel.drain()
        await asyncio.sleep(0)  # several writes, so that the broker acks in several rounds
    assert seqs == list(range(1, total + 1))
    await channel.wait_confirm(total)
    await asyncio.gather(*(channel.wait_confirm(s) for s in seqs[:100]))  # late waits: acked

    async def all_confirmed() -> bool:
        return channel.unconfirmed_count == 0

    await eventually(all_confirmed)
    outcome = expand(events)
    assert set(outcome) == set(seqs)
    assert all(outcome.values())
    assert any(multiple for _, multiple, _ in events)  # the broker did use multiple acks


async def test_publish_returns_zero_without_confirms(conn: Connection, queue: str) -> None:
    channel = await conn.channel()
    assert channel.publish(b"x", "", queue) == 0
    assert channel.unconfirmed_count == 0
    with pytest.raises(AmqpError, match="publisher_confirms"):
        await channel.wait_confirm(1)


async def test_mandatory_unroutable_is_returned_before_its_confirm(conn: Connection) -> None:
    channel = await conn.channel(publisher_confirms=True)
    log: list[tuple[str, int]] = []
    returned: list[Returned] = []

    def on_return(message: Returned) -> None:
        returned.append(message)
        log.append(("return", message.publish_seq))

    def on_confirm(tag: int, multiple: bool, ack: bool) -> None:
        log.append(("ack" if ack else "nack", tag))

    channel.on_return = on_return
    channel.on_confirm = on_confirm
    q = unique()
    await channel.queue_declare(q, durable=False, exclusive=True)
    routed = channel.publish(b"routed", "", q, mandatory=True)
    key = unique("nowhere")
    lost = channel.publish(b"unroutable", "", key, Properties(message_id="m1"), mandatory=True)
    also = channel.publish(b"not mandatory", "", key)
    await channel.wait_confirm(routed)
    with pytest.raises(MessageReturnedError) as info:
        await channel.wait_confirm(lost)
    assert info.value.seq == lost
    await channel.wait_confirm(also)  # unroutable but not mandatory: just acked
    (message,) = returned
    assert message.reply_code == 312
    assert message.reply_text == "NO_ROUTE"
    assert (message.exchange, message.routing_key, message.body) == ("", key, b"unroutable")
    assert message.properties.message_id == "m1"
    assert message.publish_seq == lost
    assert log.index(("return", lost)) < next(
        i for i, (kind, tag) in enumerate(log) if kind == "ack" and tag >= lost
    )
    with pytest.raises(MessageReturnedError):  # a late wait still knows
        await channel.wait_confirm(lost)


async def test_nack_from_the_broker(conn: Connection) -> None:
    channel = await conn.channel(publisher_confirms=True)
    q = unique()
    await channel.queue_declare(
        q, durable=False, arguments={"x-max-length": 1, "x-overflow": "reject-publish"}
    )
    try:
        nacked: list[int] = []
        channel.on_confirm = lambda tag, multiple, ack: None if ack else nacked.append(tag)
        first = channel.publish(b"fits", "", q)
        second = channel.publish(b"overflows", "", q)
        await channel.wait_confirm(first)
        with pytest.raises(MessageNackedError) as info:
            await channel.wait_confirm(second)
        assert info.value.seq == second
        assert nacked == [second]
        with pytest.raises(MessageNackedError):
            await channel.wait_confirm(second)  # late wait
        with pytest.raises(ValueError, match="sequence number"):
            await channel.wait_confirm(second + 1)
    finally:
        await delete_queues(q)


async def test_channel_close_fails_confirm_waiters(conn: Connection) -> None:
    channel = await conn.channel(publisher_confirms=True)
    seq = channel.publish(b"x", unique("no-such-exchange"), "k")  # 404 closes the channel
    with pytest.raises(ChannelClosedError) as info:
        await channel.wait_confirm(seq)
    assert info.value.code == 404
    with pytest.raises(ChannelClosedError):
        channel.publish(b"y")
    assert conn.is_open


async def test_failing_on_confirm_closes_the_channel(conn: Connection, queue: str) -> None:
    channel = await conn.channel(publisher_confirms=True)

    def broken(tag: int, multiple: bool, ack: bool) -> None:
        raise ValueError("bookkeeping bug")

    channel.on_confirm = broken
    channel.publish(b"x", "", queue)
    reason = await asyncio.wait_for(channel.closed, 5)
    assert isinstance(reason, ValueError)


async def test_drain_returns_when_writable(conn: Connection, queue: str) -> None:
    channel = await conn.channel(publisher_confirms=True)
    for _ in range(20):
        for _ in range(1000):
            channel.publish(b"x" * 1000, "", queue)
        await asyncio.wait_for(channel.drain(), 10)
    await asyncio.wait_for(channel.wait_confirm(20_000), 20)
    assert await channel.queue_purge(queue) == 20_000


async def test_blocked_connection_makes_drain_wait(conn: Connection, queue: str) -> None:
    channel = await conn.channel()
    # the frames RabbitMQ sends on a resource alarm and when it clears
    conn.data_received(marshal(0, commands.Connection.Blocked("low on memory")))
    assert conn.blocked
    waiter = asyncio.ensure_future(channel.drain())
    await asyncio.sleep(0.05)
    assert not waiter.done()
    conn.data_received(marshal(0, commands.Connection.Unblocked()))
    assert not conn.blocked
    await asyncio.wait_for(waiter, 1)
    assert conn.is_open
