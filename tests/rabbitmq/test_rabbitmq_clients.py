"""The ``client`` option (lean or aio-pika) against the real broker: what start refuses, and the
at-least-once rules through a dropped connection on both clients: nothing lost, duplicates
counted, readiness false while it is down, and a delivery of the dead channel never settled on
the channel that replaced it (delivery tags belong to their channel).

The fault tests break only their own proxied connections, in a vhost of this module's own.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest

from eip import Context, Exchange, RouteBuilder, RouteDefinitionError
from eip import headers as H
from eip.components.base import parse_uri
from eip.components.rabbitmq import RabbitMQSpec, rabbitmq
from eip.components.rabbitmq._amqp import Channel, Properties, connect
from eip.components.rabbitmq.consumer import RabbitMQConsumer
from eip.server.management import readiness

from .faultproxy import FaultProxy
from .support import Rmq, depth_at_least, depth_is, drain_ids, fill, routes, unique, until
from .vhosts import BrokerVhost

pytestmark = pytest.mark.rabbitmq


@pytest.fixture
async def admin(module_vhost: BrokerVhost) -> AsyncIterator[Channel]:
    connection = await connect(module_vhost.url)
    channel = await connection.channel(publisher_confirms=True)
    try:
        yield channel
    finally:
        await connection.close()


@pytest.fixture
async def proxy() -> AsyncIterator[FaultProxy]:
    async with FaultProxy() as running:
        yield running


async def start_fails(uri: str) -> str:
    context = Context()
    context.add_routes(routes(lambda r: r.from_(uri).to("log:x")))
    with pytest.raises(RouteDefinitionError) as info:
        await context.start()
    return str(info.value)


# -- the option ---------------------------------------------------------------------------------


async def test_an_unknown_client_fails_at_start_listing_the_valid_ones() -> None:
    text = await start_fails("rabbitmq:?queue=q&client=pika")
    assert "client must be one of 'lean', 'aio-pika', got 'pika'" in text


def test_lean_is_the_default_and_clients_never_share_a_connection() -> None:
    lean = parse_uri("rabbitmq:?queue=q&client=lean", RabbitMQSpec)
    assert lean == rabbitmq(queue="q")
    aio = parse_uri("rabbitmq:?queue=q&client=aio-pika", RabbitMQSpec)
    assert isinstance(aio, RabbitMQSpec)
    assert aio.client == "aio-pika"
    assert aio.connection_key != rabbitmq(queue="q").connection_key


async def test_a_missing_aio_pika_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "aio_pika", None)  # what an install without it looks like
    text = await start_fails("rabbitmq:?queue=q&client=aio-pika")
    assert "client=aio-pika needs the aio-pika package" in text
    assert "pip install 'eip[aio-pika]'" in text


async def test_a_name_aio_pika_cannot_use_fails_at_start_and_lean_takes_it(admin: Channel) -> None:
    queue = unique("kunden-ä")
    text = await start_fails(f"rabbitmq:?queue={queue}&client=aio-pika")
    assert f"client=aio-pika cannot use the queue name {queue!r}" in text
    assert "use client=lean" in text
    assert "exchange" in await start_fails("rabbitmq:crm.événements?queue=q&client=aio-pika")
    context = Context()
    context.add_routes(routes(lambda r: r.from_(f"rabbitmq:?queue={queue}").to("mock:got")))
    async with context:
        admin.publish(b"x", "", queue, Properties(delivery_mode=2))
        await context.mock("got").wait_for(1)
    await admin.queue_delete(queue)


# -- a dropped connection -----------------------------------------------------------------------


async def test_a_dropped_connection_mid_stream_loses_nothing(
    module_vhost: BrokerVhost, admin: Channel, proxy: FaultProxy, rmq: Rmq, client: str
) -> None:
    """Consumer and producer share one proxied connection, which is reset three times while
    messages flow: every message arrives (duplicates allowed and counted), the source is
    acked, and readiness says why it is not ready while the link is down."""
    count = 4_000
    source, target = unique("drop.a"), unique("drop.b")
    await admin.queue_declare(target)
    url = module_vhost.url_via(proxy.port)

    class Relay(RouteBuilder):
        def configure(self) -> None:
            (
                self.from_(
                    rmq(
                        f"rabbitmq:?queue={source}&url={url}&prefetch=200&concurrency=50"
                        "&reconnect_delay=0.05"
                    )
                )
                .route_id("relay")
                .to(rmq(f"rabbitmq:?routing_key={target}&url={url}&reconnect_delay=0.05"))
            )

    context = Context(shutdown_timeout=10)
    context.add_routes(Relay())
    await context.start()
    outages: list[dict[str, str]] = []
    sampling = True

    async def sample() -> None:
        while sampling:
            ready, problems = readiness(context)
            if not ready:
                outages.append(problems)
            await asyncio.sleep(0.002)

    sampler = asyncio.create_task(sample())
    try:
        await fill(admin, source, count)
        for threshold in (1_000, 2_000, 3_000):
            await until(
                lambda t=threshold: depth_at_least(admin, target, t), timeout=60, what="traffic"
            )
            assert proxy.reset() >= 1
            await asyncio.sleep(0.05)
        ids = await drain_ids(admin, target, count)
        await until(lambda: depth_is(admin, source, 0), timeout=30, what="source acked")
        sampling = False
        await sampler
        missing = {f"m{n}" for n in range(count)} - set(ids)
        assert not missing, f"{client}: lost {len(missing)} of {count}"
        assert outages, "readiness never showed the dropped connection"
        assert any(
            "connection lost" in text or "reconnecting" in text
            for problems in outages
            for text in problems.values()
        ), outages[:3]
        link = next(iter(context.component("rabbitmq").links.values()))  # type: ignore[attr-defined]
        assert link.reconnects >= 3
        assert context.ready
        print(
            f"\n{client}: connection reset 3 times mid-stream: {len(ids)} delivered for {count}, "
            f"0 lost, {len(ids) - len(set(ids))} duplicate(s)"
        )
    finally:
        sampling = False
        await sampler
        await context.stop()
        await admin.queue_delete(source)
        await admin.queue_delete(target)


async def test_a_delivery_of_a_dead_channel_is_never_settled_on_the_next_one(
    module_vhost: BrokerVhost, admin: Channel, proxy: FaultProxy, rmq: Rmq
) -> None:
    """Ten deliveries are held in flight while the connection drops, and their redeliveries on
    the new channel (delivery tags 1..10 again) are held too. Then the first ten finish.
    Settling them on the new channel would ack the redeliveries, which are not done: stopping
    the route would then lose them. They must all be back in the queue after the stop."""
    source, target = unique("stale.a"), unique("stale.b")
    await admin.queue_declare(target)
    first, second = asyncio.Event(), asyncio.Event()
    held: dict[bool, list[str]] = {False: [], True: []}

    async def hold(exchange: Exchange) -> None:
        redelivered = bool(exchange.headers["rabbitmq.redelivered"])
        held[redelivered].append(exchange.headers[H.MESSAGE_ID])
        await (second if redelivered else first).wait()

    via_proxy = module_vhost.url_via(proxy.port)

    class Relay(RouteBuilder):
        def configure(self) -> None:
            (
                self.from_(
                    rmq(
                        f"rabbitmq:?queue={source}&url={via_proxy}&prefetch=10&concurrency=20"
                        "&reconnect_delay=0.05"
                    )
                )
                .route_id("relay")
                .process(hold)
                .to(rmq(f"rabbitmq:?routing_key={target}&url={module_vhost.url}"))
            )

    context = Context(shutdown_timeout=1)
    context.add_routes(Relay())
    await context.start()
    try:
        consumer = context.routes["relay"].consumer
        assert isinstance(consumer, RabbitMQConsumer)
        await fill(admin, source, 10)
        await until(lambda: len(held[False]) == 10, what="10 deliveries held")
        dead: Any = consumer.channel
        proxy.reset()
        await until(lambda: len(held[True]) == 10, what="their 10 redeliveries held")
        new: Any = consumer.channel
        assert new is not dead
        first.set()  # the exchanges of the dead channel complete now
        await until(lambda: depth_is(admin, target, 10), what="the first ten relayed")
        await asyncio.sleep(0.3)
        assert new.is_open
        await context.stop()  # the redeliveries are still held: they must go back, unacked
        # (the broker requeues a closed channel's deliveries on its own time: poll)
        await until(
            lambda: depth_is(admin, source, 10),
            timeout=5,
            what="all 10 back in the queue (else a settlement of the dead channel acked them)",
        )
        assert sorted(held[False]) == sorted(held[True]) == sorted(f"m{n}" for n in range(10))
    finally:
        first.set()
        second.set()
        await context.stop()
        await admin.queue_delete(source)
        await admin.queue_delete(target)


async def test_a_blocked_broker_shows_in_readiness(
    module_vhost: BrokerVhost, admin: Channel, proxy: FaultProxy, rmq: Rmq
) -> None:
    """Connection.Blocked (a memory or disk alarm) makes readiness false, naming it, and
    Unblocked makes it true again (the lean client also passes on the broker's reason)."""
    queue = unique("blocked")
    await admin.queue_declare(queue)
    url = module_vhost.url_via(proxy.port)
    context = Context()
    context.add_routes(routes(lambda r: r.from_(rmq(f"rabbitmq:?queue={queue}&url={url}"))))
    await context.start()
    try:
        assert context.ready
        proxy.block("low on memory")
        await until(lambda: not readiness(context)[0], timeout=5, what="readiness false")
        _, problems = readiness(context)
        assert any("blocked by the broker" in text for text in problems.values()), problems
        proxy.unblock()
        await until(lambda: readiness(context)[0], timeout=5, what="ready after unblock")
    finally:
        await context.stop()
        await admin.queue_delete(queue)
