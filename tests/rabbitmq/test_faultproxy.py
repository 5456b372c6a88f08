"""The fault-injecting proxy, each control checked against the real broker through eip's own
AMQP client. One vhost for the module: every fault here hits only the test's own
connections, through its own proxy."""

from __future__ import annotations

import asyncio
import struct
import time

import pytest

from eip.components.rabbitmq._amqp import Channel, Connection, ConnectionClosedError, connect

from .faultpipe import Frames
from .faultproxy import HEARTBEAT, FaultProxy, blocked_frame
from .test_amqp_helpers import Collector, eventually, requires_broker, unique
from .vhosts import BrokerVhost

pytestmark = requires_broker


async def round_trip(channel: Channel) -> float:
    """Seconds for one RPC to the broker (a server-named exclusive queue declare)."""
    start = time.monotonic()
    await channel.queue_declare("", durable=False, exclusive=True)
    return time.monotonic() - start


async def via(proxy: FaultProxy, vhost: BrokerVhost, heartbeat: int = 60) -> Connection:
    return await connect(
        vhost.url_via(proxy.port), heartbeat=heartbeat, client_name=unique("proxied")
    )


def frame(kind: int, payload: bytes) -> bytes:
    return struct.pack(">BHI", kind, 1, len(payload)) + payload + b"\xce"


def boundaries(stream: bytes, cut: int) -> list[int]:
    """The frame boundaries a tracker reports when ``stream`` arrives in ``cut``-byte reads."""
    tracker, seen = Frames(preamble=8), [0]
    for pos in range(0, len(stream), cut):
        chunk, done = stream[pos : pos + cut], 0
        while True:
            done += tracker.advance(chunk[done:], stop=True)
            if tracker.at_boundary and seen[-1] != pos + done:
                seen.append(pos + done)
            if done >= len(chunk):
                break
            done += tracker.advance(chunk[done : done + 1])  # step over the boundary
    return seen[1:]


def test_frames_finds_every_boundary_however_the_stream_is_cut() -> None:
    frames = [frame(1, b"m" * 5), HEARTBEAT, frame(3, b"b" * 300), blocked_frame("x")]
    expected = [8]
    for f in frames:
        expected.append(expected[-1] + len(f))
    stream = b"AMQP\x00\x00\x09\x01" + b"".join(frames)
    for cut in [*range(1, 40), len(stream)]:  # headers and bodies split everywhere
        assert boundaries(stream, cut) == expected, cut
    broken = Frames()
    broken.advance(frame(1, b"abc")[:-1] + b"\x00")
    assert broken.broken
    assert not broken.at_boundary


async def test_forwards_and_counts(module_vhost: BrokerVhost) -> None:
    async with FaultProxy() as proxy:
        conn = await via(proxy, module_vhost)
        channel = await conn.channel()
        assert await round_trip(channel) < 1.0
        (link,) = await proxy.wait_connections(1, timeout=5)
        assert proxy.accepted == 1
        assert link.client_port == conn._transport.get_extra_info("sockname")[1]  # type: ignore[union-attr]
        assert link.upstream_port is not None
        assert link.bytes_to_broker > 8
        assert link.bytes_to_client > 100
        await conn.close()
        await asyncio.wait_for(link.closed, 5)
        assert proxy.connections == []
        assert proxy.bytes_to_broker == link.bytes_to_broker > 0  # kept after the close
        assert proxy.bytes_to_client == link.bytes_to_client > 0


async def test_reset_fails_the_connection_and_new_ones_still_work(
    module_vhost: BrokerVhost,
) -> None:
    async with FaultProxy() as proxy:
        first, second = await via(proxy, module_vhost), await via(proxy, module_vhost)
        links = await proxy.wait_connections(2, timeout=5)
        assert proxy.reset(connection=links[0]) == 1
        reason = await asyncio.wait_for(first.closed, 5)
        assert isinstance(reason, ConnectionClosedError)
        assert "ConnectionResetError" in reason.text  # an RST, not a polite close
        assert second.is_open
        assert proxy.reset() == 1
        assert isinstance(await asyncio.wait_for(second.closed, 5), ConnectionClosedError)
        third = await via(proxy, module_vhost)
        assert await round_trip(await third.channel()) < 1.0
        assert proxy.accepted == 3
        await third.close()


async def test_freeze_is_a_dead_peer_found_by_heartbeats(module_vhost: BrokerVhost) -> None:
    async with FaultProxy() as proxy:
        conn = await via(proxy, module_vhost, heartbeat=2)
        await proxy.wait_connections(1, timeout=5)
        before = proxy.bytes_to_broker
        start = time.monotonic()
        assert proxy.freeze() == 1
        reason = await asyncio.wait_for(conn.closed, 2 * 2 + 3)
        elapsed = time.monotonic() - start
        assert isinstance(reason, ConnectionClosedError)
        assert "missed heartbeats" in reason.text
        assert 2.5 <= elapsed <= 2 * 2 + 2, elapsed  # found by the heartbeat, not by a close
        assert proxy.bytes_to_broker == before  # nothing was read while frozen


async def test_thaw_in_time_keeps_the_connection(module_vhost: BrokerVhost) -> None:
    async with FaultProxy() as proxy:
        conn = await via(proxy, module_vhost, heartbeat=2)
        channel = await conn.channel()
        await proxy.wait_connections(1, timeout=5)
        proxy.freeze()
        await asyncio.sleep(1.5)
        assert proxy.connections[0].frozen
        assert proxy.thaw() == 1
        await asyncio.sleep(4)  # past the ~3-5 s at which the frozen link would have failed
        assert conn.is_open
        assert not conn.closed.done()
        assert await round_trip(channel) < 1.0
        await conn.close()


async def test_freeze_builds_back_pressure(module_vhost: BrokerVhost) -> None:
    async with FaultProxy() as proxy:
        conn = await via(proxy, module_vhost)
        channel = await conn.channel()
        transport = conn._transport
        assert transport is not None
        await proxy.wait_connections(1, timeout=5)
        proxy.freeze()
        before = proxy.bytes_to_broker
        body = b"x" * 100_000
        for _ in range(200):  # 20 MB, more than the sockets' buffers hold
            channel.publish(body, "", unique("nowhere"))
            await asyncio.sleep(0)
        await asyncio.sleep(0.2)
        assert transport.get_write_buffer_size() > 5_000_000  # stuck in the client
        assert proxy.bytes_to_broker == before
        proxy.thaw()
        await asyncio.wait_for(channel.drain(), 10)
        await eventually(lambda: _async(proxy.bytes_to_broker > before + 20_000_000), timeout=10)
        await conn.close()


async def _async(value: bool) -> bool:
    return value


async def test_block_and_unblock(module_vhost: BrokerVhost) -> None:
    queue = unique("blocked")
    async with FaultProxy() as proxy:
        direct = await connect(module_vhost.url, client_name=unique("direct"))
        check = await direct.channel()
        await check.queue_declare(queue, durable=False)
        conn = await via(proxy, module_vhost, heartbeat=1)
        channel = await conn.channel()
        await proxy.wait_connections(1, timeout=5)
        assert proxy.block("low on memory") == 1
        await eventually(lambda: _async(conn.blocked), timeout=5)
        channel.publish(b"held", "", queue)
        # The broker reads nothing from a blocked client, and would drop it after ~3 s
        # (heartbeat 1) without the heartbeats the proxy sends it meanwhile.
        await asyncio.sleep(4)
        assert conn.is_open
        assert (await check.queue_declare(queue, durable=False))[1] == 0  # not read yet
        assert proxy.unblock() == 1
        await eventually(lambda: _async(not conn.blocked), timeout=5)

        async def arrived() -> bool:
            return (await check.queue_declare(queue, durable=False))[1] == 1

        await eventually(arrived, timeout=5)
        await check.queue_delete(queue)
        await conn.close()
        await direct.close()


async def test_block_lands_between_frames_of_a_large_delivery(module_vhost: BrokerVhost) -> None:
    queue = unique("big")
    body = bytes(range(256)) * 16384  # 4 MB in ~1000 frames of 4 kB
    async with FaultProxy() as proxy:
        conn = await connect(module_vhost.url_via(proxy.port), frame_max=4096)
        channel = await conn.channel()
        await channel.queue_declare(queue, durable=False, auto_delete=True)
        proxy.slow(0, bytes_per_second=4_000_000)  # the body streams for ~1 s
        collector = Collector()
        await channel.basic_consume(queue, collector, no_ack=True)
        sender = await connect(module_vhost.url)
        (await sender.channel()).publish(body, "", queue)
        await asyncio.sleep(0.1)
        proxy.block()
        await eventually(lambda: _async(conn.blocked), timeout=5, interval=0.005)
        assert collector.deliveries == []  # Blocked came in the middle of the body's frames
        proxy.unblock()
        (delivery,) = await collector.wait_for(1, timeout=10)
        assert delivery.body == body
        await eventually(lambda: _async(not conn.blocked), timeout=5)
        await sender.close()
        await conn.close()


async def test_slow_adds_latency_and_caps_bandwidth(module_vhost: BrokerVhost) -> None:
    async with FaultProxy() as proxy:
        conn = await via(proxy, module_vhost)
        channel = await conn.channel(publisher_confirms=True)
        assert await round_trip(channel) < 0.15
        assert proxy.slow(0.2) == 1
        assert 0.4 <= await round_trip(channel) < 1.5  # 0.2 s each way
        proxy.slow(0)
        assert await round_trip(channel) < 0.15
        proxy.slow(0, bytes_per_second=200_000)
        start = time.monotonic()
        seq = channel.publish(b"x" * 100_000, "", unique("nowhere"))
        await asyncio.wait_for(channel.wait_confirm(seq), 5)
        assert 0.4 <= time.monotonic() - start < 3  # 100 kB at 200 kB/s
        proxy.slow(0)
        await conn.close()


async def test_refuse_fails_connects_fast_until_accept(module_vhost: BrokerVhost) -> None:
    async with FaultProxy() as proxy:
        proxy.refuse()
        start = time.monotonic()
        with pytest.raises(ConnectionClosedError):
            await connect(module_vhost.url_via(proxy.port), connect_timeout=5)
        assert time.monotonic() - start < 1.0
        assert (proxy.refused, proxy.accepted) == (1, 0)
        proxy.accept()
        conn = await via(proxy, module_vhost)
        assert conn.is_open
        assert proxy.accepted == 1
        await conn.close()
