"""Connection-level behaviour of the lean AMQP client against the real broker: handshake,
refused logins, broker-side closes, heartbeats, socket loss, channel errors, corrupt frames."""

from __future__ import annotations

import asyncio
import time

import pytest

from eip.components.rabbitmq._amqp import (
    AmqpError,
    ChannelClosedError,
    Connection,
    ConnectionClosedError,
    Delivery,
    connect,
    parse_url,
)

from .test_amqp_helpers import URL, close_broker_side, conn, requires_broker, unique

pytestmark = requires_broker
__all__ = ["conn"]


def test_parse_url() -> None:
    p = parse_url("amqp://user%40x:p%3Ass@broker:5673/%2F")
    assert (p.host, p.port, p.username, p.password, p.vhost, p.ssl) == (
        "broker",
        5673,
        "user@x",
        "p:ss",
        "/",
        False,
    )
    assert parse_url("amqp://h").vhost == "/"
    assert parse_url("amqp://h/").vhost == "/"
    assert parse_url("amqp://h/prod%2Feu").vhost == "prod/eu"
    d = parse_url("amqps://h/v")
    assert (d.port, d.username, d.password, d.ssl) == (5671, "guest", "guest", True)
    assert "guest" not in repr(parse_url("amqp://u:guest@h/"))
    with pytest.raises(ValueError, match="query"):
        parse_url("amqp://h/?heartbeat=5")
    with pytest.raises(ValueError, match="amqp"):
        parse_url("http://h/")


async def test_handshake_negotiates_and_closes_cleanly() -> None:
    connection = await connect(URL, heartbeat=30, frame_max=65536, client_name=unique("hs"))
    assert connection.is_open
    assert connection.server_properties["product"] == "RabbitMQ"
    assert connection.frame_max == 65536  # the smaller proposal wins
    assert connection.heartbeat == 30
    assert 0 < connection.channel_max <= 65535
    channel = await connection.channel()
    assert channel.is_open
    assert channel.number >= 1
    await connection.close()
    assert connection.closed.done()
    assert connection.closed.result() is None
    assert not connection.is_open
    assert channel.closed.done()
    assert channel.closed.result() is None
    with pytest.raises(ConnectionClosedError) as info:
        await connection.channel()
    assert info.value.code == 200
    with pytest.raises(ConnectionClosedError):
        channel.publish(b"x", "", "nowhere")
    await connection.close()  # idempotent


async def test_wrong_password_is_access_refused() -> None:
    with pytest.raises(ConnectionClosedError) as info:
        await connect("amqp://guest:not-the-password@127.0.0.1:5672/")
    assert info.value.code == 403
    assert "ACCESS_REFUSED" in info.value.text


async def test_unknown_vhost_is_refused() -> None:
    with pytest.raises(ConnectionClosedError) as info:
        await connect(f"amqp://guest:guest@127.0.0.1:5672/{unique('no-such-vhost')}")
    assert info.value.code == 530  # NOT_ALLOWED


async def test_connection_refused_is_an_os_error() -> None:
    with pytest.raises(ConnectionRefusedError):
        await connect("amqp://guest:guest@127.0.0.1:1/", connect_timeout=5)


async def test_channel_error_closes_only_the_channel(conn: Connection) -> None:
    channel = await conn.channel()
    missing = unique("missing")
    with pytest.raises(ChannelClosedError) as info:
        await channel.queue_declare(missing, passive=True)
    assert info.value.code == 404
    assert "NOT_FOUND" in info.value.text
    assert info.value.method == "Queue.Declare"
    assert not channel.is_open
    reason = await asyncio.wait_for(channel.closed, 5)
    assert isinstance(reason, ChannelClosedError)
    assert reason.code == 404
    with pytest.raises(ChannelClosedError):
        channel.publish(b"x")
    with pytest.raises(ChannelClosedError):
        await channel.queue_declare(missing, passive=True)
    # the connection is still fine
    assert conn.is_open
    other = await conn.channel()
    name, _, _ = await other.queue_declare(unique(), durable=False, exclusive=True)
    assert name
    await other.close()


async def test_pipelined_rpcs_fail_together_on_channel_error(conn: Connection) -> None:
    channel = await conn.channel()
    results = await asyncio.gather(
        channel.queue_declare(unique(), durable=False, exclusive=True),
        channel.queue_declare(unique("missing"), passive=True),
        channel.queue_declare(unique(), durable=False, exclusive=True),
        return_exceptions=True,
    )
    assert isinstance(results[0], tuple)
    assert isinstance(results[1], ChannelClosedError)
    assert results[1].code == 404
    assert isinstance(results[2], ChannelClosedError)
    assert results[2].code == 404


async def test_broker_closing_the_connection_resolves_everything() -> None:
    connection = await connect(URL, client_name=unique("closed-by-broker"))
    channel = await connection.channel(publisher_confirms=True)
    other = await connection.channel()
    await asyncio.to_thread(close_broker_side, connection, "test says bye")
    reason = await asyncio.wait_for(connection.closed, 10)
    assert isinstance(reason, ConnectionClosedError)
    assert reason.code == 320  # CONNECTION_FORCED
    assert "test says bye" in reason.text
    assert not connection.is_open
    for ch in (channel, other):
        assert ch.closed.done()
        assert ch.closed.result() is reason
    with pytest.raises(ConnectionClosedError):
        channel.publish(b"x")
    with pytest.raises(ConnectionClosedError):
        await other.queue_declare(unique())
    await asyncio.wait_for(connection.close(), 5)  # no hang


async def test_socket_loss_fails_pending_waiters(conn: Connection) -> None:
    channel = await conn.channel(publisher_confirms=True)
    rpc = asyncio.ensure_future(channel.queue_declare(unique(), durable=False, exclusive=True))
    seq = channel.publish(b"in doubt", "", unique("nowhere"))
    confirm = asyncio.ensure_future(channel.wait_confirm(seq))
    await asyncio.sleep(0)
    assert conn._transport is not None
    conn._transport.abort()  # the socket dies before anything is answered
    reason = await asyncio.wait_for(conn.closed, 5)
    assert isinstance(reason, ConnectionClosedError)
    assert reason.code == 0
    for waiter in (rpc, confirm):
        with pytest.raises(ConnectionClosedError):
            await asyncio.wait_for(waiter, 5)
    assert channel.closed.result() is reason


async def test_missed_heartbeats_close_the_connection() -> None:
    connection = await connect(URL, heartbeat=1, client_name=unique("hb-timeout"))
    assert connection.heartbeat == 1
    channel = await connection.channel()
    assert connection._transport is not None
    started = time.monotonic()
    connection._transport.pause_reading()  # the broker goes silent, as far as we can tell
    reason = await asyncio.wait_for(connection.closed, 10)
    elapsed = time.monotonic() - started
    assert isinstance(reason, ConnectionClosedError)
    assert reason.code == 0
    assert "heartbeat" in reason.text
    assert 1.5 <= elapsed <= 6.0  # 4 ticks of 0.5 s without data; slack for a busy machine
    assert channel.closed.result() is reason


async def test_heartbeats_keep_an_idle_connection_alive() -> None:
    connection = await connect(URL, heartbeat=1, client_name=unique("hb-alive"))
    try:
        await asyncio.sleep(4.5)  # the broker would drop us after ~2 s without heartbeats
        assert connection.is_open
        channel = await connection.channel()
        await channel.queue_declare(unique(), durable=False, exclusive=True)
    finally:
        await connection.close()
    assert connection.closed.result() is None


async def test_corrupt_frame_end_fails_the_connection(conn: Connection) -> None:
    channel = await conn.channel()
    # a method frame on channel 0 whose frame-end octet is wrong
    conn.data_received(b"\x01\x00\x00\x00\x00\x00\x04\x00\x0a\x00\x3d\x00")
    reason = await asyncio.wait_for(conn.closed, 5)
    assert isinstance(reason, ConnectionClosedError)
    assert reason.code == 0
    assert "0xce" in reason.text
    assert isinstance(reason.__cause__, AmqpError)
    assert channel.closed.result() is reason


async def test_channel_numbers_are_reused_after_close(conn: Connection) -> None:
    channels = [await conn.channel() for _ in range(5)]
    numbers = {c.number for c in channels}
    assert len(numbers) == 5
    for c in channels:
        await c.close()
        assert c.closed.result() is None
    assert not conn._channels
    again = await conn.channel()
    await again.queue_declare(unique(), durable=False, exclusive=True)


def test_works_under_uvloop() -> None:
    """eip runs on uvloop when available: the whole path works with its transports."""
    import uvloop  # a dev dependency: the server runs on it by default

    async def scenario() -> None:
        connection = await connect(URL, heartbeat=1, client_name=unique("uvloop"))
        channel = await connection.channel(publisher_confirms=True)
        name, _, _ = await channel.queue_declare(unique(), durable=False, exclusive=True)
        received: list[bytes] = []
        done = asyncio.get_running_loop().create_future()

        def on_deliveries(batch: list[Delivery]) -> None:
            received.extend(d.body for d in batch)
            channel.ack(batch[-1].delivery_tag, multiple=True)
            if len(received) == 500 and not done.done():
                done.set_result(None)

        await channel.basic_consume(name, on_deliveries)
        seqs = [channel.publish(b"%d" % i, "", name) for i in range(500)]
        await channel.wait_confirm(seqs[-1])
        await asyncio.wait_for(done, 10)
        assert received == [b"%d" % i for i in range(500)]
        assert connection._transport is not None
        connection._transport.pause_reading()
        reason = await asyncio.wait_for(connection.closed, 10)  # heartbeat timeout works too
        assert isinstance(reason, ConnectionClosedError)

    uvloop.run(scenario())
