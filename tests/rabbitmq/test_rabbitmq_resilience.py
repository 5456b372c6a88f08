"""At-least-once under SIGKILL and under connections closed by the broker.

The broker's close runs on both AMQP clients. The SIGKILL test runs the lean client only: what
it checks is the broker's redelivery of what a killed process left unacked, in which the
client plays no part, and its 10,000 messages through a subprocess are the suite's longest.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from eip import Context, RouteBuilder
from eip.components.rabbitmq._amqp import connect

from .support import URL, Rmq, depth, drain_ids, fill, unique
from .vhosts import BrokerVhost

ROOT = Path(__file__).resolve().parent.parent.parent


async def test_sigkill_mid_stream_loses_nothing(tmp_path: Path) -> None:
    count = 10_000
    source, target = unique("kill.a"), unique("kill.b")
    connection = await connect(URL)
    channel = await connection.channel(publisher_confirms=True)
    try:
        await channel.queue_declare(target)
        await fill(channel, source, count)

        def start() -> subprocess.Popen[bytes]:
            ready = tmp_path / f"ready-{uuid.uuid4().hex}"
            child = subprocess.Popen(
                [sys.executable, "-m", "tests.rabbitmq.relay_child", source, target, str(ready)],
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
                stderr=subprocess.DEVNULL,
            )
            deadline = time.monotonic() + 20
            while not ready.exists():
                assert child.poll() is None, "the relay child died at start"
                assert time.monotonic() < deadline
                time.sleep(0.02)
            return child

        first = start()
        while await depth(channel, target) < 3_000:
            assert first.poll() is None
            await asyncio.sleep(0.01)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        relayed_before = await depth(channel, target)
        assert relayed_before < count, "the kill must happen mid-stream"

        second = start()
        try:
            ids = await drain_ids(channel, target, count)
            for _ in range(200):  # every source message acked once its copy is confirmed
                if await depth(channel, source) == 0:
                    break
                await asyncio.sleep(0.05)
            assert await depth(channel, source) == 0
        finally:
            second.send_signal(signal.SIGTERM)
            assert second.wait(20) == 0
        missing = {f"m{n}" for n in range(count)} - set(ids)
        assert not missing, f"lost {len(missing)} messages"
        duplicates = len(ids) - len(set(ids))
        print(
            f"\nSIGKILL after ~{relayed_before} relayed: {len(ids)} delivered, 0 lost, "
            f"{duplicates} duplicate(s)"
        )
    finally:
        cleanup = await connection.channel()
        await cleanup.queue_delete(source)
        await cleanup.queue_delete(target)
        await connection.close()


async def test_broker_closes_connections_engine_recovers(
    broker_vhost: BrokerVhost, rmq: Rmq
) -> None:
    """The broker closes every connection of the test's own vhost (never the shared ``/``),
    on both AMQP clients."""
    count = 5_000
    url = broker_vhost.url
    source, target = unique("drop.a"), unique("drop.b")

    class Relay(RouteBuilder):
        def configure(self) -> None:
            (
                self.from_(rmq(f"rabbitmq:?queue={source}&prefetch=200&concurrency=50&url={url}"))
                .route_id("relay")
                .to(rmq(f"rabbitmq:?routing_key={target}&url={url}"))
            )

    context = Context(shutdown_timeout=10)
    context.add_routes(Relay())
    await context.start()
    assert context.ready
    filler = await connect(url)
    try:
        channel = await filler.channel(publisher_confirms=True)
        await channel.queue_declare(target)
        await fill(channel, source, count)
        await asyncio.sleep(0.05)  # traffic flows
        readiness: list[bool] = []
        sampling = True

        async def sample() -> None:
            while sampling:
                readiness.append(context.ready)
                await asyncio.sleep(0.001)

        sampler = asyncio.create_task(sample())
        await broker_vhost.close_connections("eip resilience test")
        await asyncio.sleep(0.5)
        sampling = False
        await sampler
        assert False in readiness, "readiness never showed the outage"
        for _ in range(1000):
            if context.ready:
                break
            await asyncio.sleep(0.02)
        assert context.ready, "the engine did not reconnect"
        checker = await connect(url)
        check = await checker.channel()
        ids = await drain_ids(check, target, count)
        assert {f"m{n}" for n in range(count)} <= set(ids)
        link = next(iter(context.component("rabbitmq").links.values()))  # type: ignore[attr-defined]
        assert link.reconnects >= 1
        await check.queue_delete(source)
        await check.queue_delete(target)
        await checker.close()
    finally:
        await context.stop()
        if filler.is_open:
            await filler.close()
