"""Link faults through the fault-injecting proxy, against the real broker: a dead peer, a
relay whose producer link resets mid-stream, a blocked broker, identical bodies through a
broker drop, an attach that fails after a reconnect, and confirms held by a blocked broker on
the confirm-aware fast path.

Each test runs in its own vhost (``broker_vhost``) and breaks only its own proxied
connections. Every wait is bounded.

The contract tests (identical bodies through a drop, an attach that fails after a reconnect)
run on both AMQP clients (``rmq``). Lean-only: the dead-peer timing (it asserts the lean
client's detection within ~2 heartbeats; aiormq allows 3 x (heartbeat + 1) s by design), the
blocked broker (it measures the lean client's own write buffer, and aiormq does not pass on the
broker's reason), and the producer-link resets across two links (the same fault on aio-pika is
``test_rabbitmq_clients``' shared-link drop; kept to one client to bound the suite's time).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from eip import Context, RouteBuilder
from eip.components.rabbitmq._amqp import Channel, Connection, Properties, connect
from eip.components.rabbitmq.consumer import RabbitMQConsumer
from eip.errors import OutcomeUnknownError
from eip.server.management import readiness

from .faultproxy import FaultProxy
from .support import Rmq, depth, depth_at_least, depth_is, drain_ids, fill, unique, until

pytestmark = pytest.mark.rabbitmq


@pytest.fixture
async def admin(broker_vhost: Any) -> AsyncIterator[Channel]:
    connection: Connection = await connect(broker_vhost.url)
    channel = await connection.channel(publisher_confirms=True)
    try:
        yield channel
    finally:
        await connection.close()


@pytest.fixture
async def proxy() -> AsyncIterator[FaultProxy]:
    async with FaultProxy() as running:
        yield running


async def test_dead_peer_is_detected_within_twice_the_heartbeat(
    broker_vhost: Any, admin: Channel, proxy: FaultProxy
) -> None:
    queue = unique("hb")
    await admin.queue_declare(queue)
    url = broker_vhost.url_via(proxy.port)

    class Idle(RouteBuilder):
        def configure(self) -> None:
            self.from_(f"rabbitmq:?queue={queue}&url={url}&heartbeat=2&reconnect_delay=0.1").to(
                "mock:got"
            )

    context = Context()
    context.add_routes(Idle())
    await context.start()
    try:
        assert context.ready
        loop = asyncio.get_running_loop()
        proxy.freeze()
        frozen_at = loop.time()
        problems: dict[str, str] = {}
        while context.ready:  # the outage lasts as long as a reconnect: sample every turn
            assert loop.time() - frozen_at < 8, "the dead peer was never noticed"
            await asyncio.sleep(0.001)
        detected = loop.time() - frozen_at
        _, problems = readiness(context)
        assert 3.0 <= detected <= 5.5, f"detected after {detected:.2f}s with heartbeat 2s"
        assert any("missed heartbeats" in text for text in problems.values()), problems
        # A fresh connection through the proxy works: the link heals by itself.
        await until(lambda: context.ready, timeout=10, what="reconnected")
        admin.publish(b"after", "", queue, Properties(delivery_mode=2))
        await context.mock("got").wait_for(1)
    finally:
        await context.stop()


async def test_relay_across_two_links_loses_nothing_when_the_producer_link_resets(
    broker_vhost: Any, admin: Channel, proxy: FaultProxy
) -> None:
    count = 5_000
    source, target = unique("two.a"), unique("two.b")
    await admin.queue_declare(target)
    through_proxy = broker_vhost.url_via(proxy.port)

    class Relay(RouteBuilder):
        def configure(self) -> None:
            (
                self.from_(
                    f"rabbitmq:?queue={source}&url={broker_vhost.url}&prefetch=200&concurrency=50"
                )
                .route_id("relay")
                .to(f"rabbitmq:?routing_key={target}&url={through_proxy}&reconnect_delay=0.05")
            )

    context = Context(shutdown_timeout=10)
    context.add_routes(Relay())
    await context.start()
    try:
        await fill(admin, source, count)
        resets = 0
        for threshold in (1_000, 2_500, 4_000):
            await until(
                lambda t=threshold: depth_at_least(admin, target, t), timeout=60, what="traffic"
            )
            resets += proxy.reset()
            await asyncio.sleep(0.05)
        assert resets >= 3
        ids = await drain_ids(admin, target, count)
        missing = {f"m{n}" for n in range(count)} - set(ids)
        assert not missing, f"lost {len(missing)} of {count}"
        await until(lambda: depth_is(admin, source, 0), timeout=20, what="source acked")
        link = next(
            link
            for link in context.component("rabbitmq").links.values()  # type: ignore[attr-defined]
            if link.url == through_proxy
        )
        assert link.reconnects >= 3
        print(f"\nproducer link reset 3 times: {len(ids)} delivered for {count}, 0 lost")
    finally:
        await context.stop()


async def test_blocked_broker_bounds_memory_times_out_confirms_and_shows_not_ready(
    broker_vhost: Any, admin: Channel, proxy: FaultProxy, caplog: pytest.LogCaptureFixture
) -> None:
    queue = unique("blocked")
    await admin.queue_declare(queue)
    url = broker_vhost.url_via(proxy.port)
    confirmed = f"rabbitmq:?routing_key={queue}&url={url}&confirm_timeout=1&publish_timeout=1"
    unconfirmed = f"rabbitmq:?routing_key={queue}&url={url}&confirm=false"
    caplog.set_level(logging.WARNING, logger="eip.rabbitmq")
    context = Context()
    await context.start()
    try:
        template = context.template()
        assert (await template.send(confirmed, b"before")).exception is None
        assert (await template.send(unconfirmed, b"started")).exception is None
        proxy.block("low on memory")
        # Written before the client hears of the block: held by the broker, never confirmed.
        caught = await asyncio.wait_for(template.send(confirmed, b"in doubt"), 5)
        assert isinstance(caught.exception, OutcomeUnknownError)
        assert "no publisher confirm within 1.0s" in str(caught.exception)
        await until(lambda: not context.ready, timeout=5, what="readiness false")
        _, problems = readiness(context)
        assert any("blocked by the broker: low on memory" in p for p in problems.values())
        assert any("blocked" in r.getMessage() for r in caplog.records)
        # A send while blocked waits for the broker, bounded by publish_timeout.
        waited = await asyncio.wait_for(template.send(confirmed, b"not sent"), 5)
        assert isinstance(waited.exception, OutcomeUnknownError)
        assert "blocked" in str(waited.exception)
        # 3,000 unconfirmed sends of 100 kB wait instead of filling memory.
        body = b"x" * 100_000
        sends = [asyncio.ensure_future(template.send(unconfirmed, body)) for _ in range(3_000)]
        await asyncio.sleep(1.0)
        producer = next(
            p
            for p in context.component("rabbitmq").producers  # type: ignore[attr-defined]
            if "confirm=false" in p.spec.uri
        )
        connection = producer.channel._conn
        buffered = connection._transport.get_write_buffer_size() + connection._wsize
        assert buffered < 10_000_000, f"{buffered} bytes buffered while blocked"
        assert not any(s.done() for s in sends)
        proxy.unblock()
        await asyncio.wait_for(asyncio.gather(*sends), 60)
        assert all(s.result().exception is None for s in sends)
        await until(lambda: context.ready, timeout=5, what="ready after unblock")
        # "before", "started", maybe "in doubt" (the broker had it), and the 3,000.
        await until(lambda: depth_at_least(admin, queue, 3_002), timeout=30, what="all delivered")
    finally:
        await context.stop()


async def test_identical_bodies_without_ids_through_a_broker_drop_are_not_poison(
    broker_vhost: Any,
    admin: Channel,
    proxy: FaultProxy,
    caplog: pytest.LogCaptureFixture,
    rmq: Rmq,
) -> None:
    count = 3_000
    source, target, dead, dlx = (unique(x) for x in ("same.a", "same.b", "same.dead", "dlx"))
    await admin.exchange_declare(dlx, "fanout")
    await admin.queue_declare(dead)
    await admin.queue_bind(dead, dlx)
    await admin.queue_declare(target)
    await admin.queue_declare(source, arguments={"x-dead-letter-exchange": dlx})
    url = broker_vhost.url_via(proxy.port)

    class Relay(RouteBuilder):
        def configure(self) -> None:
            (
                self.from_(
                    rmq(
                        f"rabbitmq:?queue={source}&url={url}&dead_letter_exchange={dlx}"
                        "&prefetch=200&concurrency=50&reconnect_delay=0.05&max_redeliveries=5"
                    )
                )
                .route_id("relay")
                .to(rmq(f"rabbitmq:?routing_key={target}&url={broker_vhost.url}"))
            )

    caplog.set_level(logging.ERROR)
    context = Context(shutdown_timeout=10)
    context.add_routes(Relay())
    await context.start()
    try:
        await fill(admin, source, count, ids=False, arguments={"x-dead-letter-exchange": dlx})
        for threshold in (500, 1_200, 2_000):
            await until(
                lambda t=threshold: depth_at_least(admin, target, t), timeout=60, what="traffic"
            )
            proxy.reset()
            await asyncio.sleep(0.05)
        await until(lambda: depth_at_least(admin, target, count), timeout=60, what="all relayed")
        await until(lambda: depth_is(admin, source, 0), timeout=20, what="source acked")
        assert await depth(admin, dead) == 0, "healthy messages were rejected as poison"
        assert not [r for r in caplog.records if "times (limit" in r.getMessage()]
    finally:
        await context.stop()


async def test_a_failed_attach_after_a_reconnect_is_retried(
    broker_vhost: Any, admin: Channel, proxy: FaultProxy, rmq: Rmq
) -> None:
    source, target = unique("resume.a"), unique("resume.b")
    await admin.queue_declare(source)
    await admin.queue_declare(target)
    url = broker_vhost.url_via(proxy.port)

    class Relay(RouteBuilder):
        def configure(self) -> None:
            (
                self.from_(
                    rmq(
                        f"rabbitmq:?queue={source}&url={url}&declare=false"
                        "&reconnect_delay=0.05&reconnect_max_delay=0.2"
                    )
                )
                .route_id("relay")
                .to(rmq(f"rabbitmq:?routing_key={target}&url={broker_vhost.url}"))
            )

    context = Context()
    context.add_routes(Relay())
    await context.start()
    try:
        consumer = context.routes["relay"].consumer
        assert consumer is not None
        await admin.queue_delete(source)  # the broker cancels the consumer...
        proxy.reset()  # ... and the connection drops: the attach after it fails (404)
        await until(
            lambda: "NOT_FOUND" in (consumer.problem or ""), timeout=10, what="404 reported"
        )
        await asyncio.sleep(0.5)  # several failed attempts
        assert not context.ready
        await admin.queue_declare(source)
        await until(lambda: context.ready, timeout=10, what="attached again")
        admin.publish(b"x", "", source, Properties(delivery_mode=2))
        await until(lambda: depth_at_least(admin, target, 1), what="relayed after the retry")
    finally:
        await context.stop()


def _relay_consumer(context: Context) -> RabbitMQConsumer:
    consumer = context.routes["relay"].consumer
    assert isinstance(consumer, RabbitMQConsumer)
    return consumer


async def test_fast_path_confirms_that_do_not_come_requeue_and_nothing_is_lost(
    broker_vhost: Any, admin: Channel, proxy: FaultProxy, caplog: pytest.LogCaptureFixture
) -> None:
    """The producer's link is blocked (a memory alarm) mid-stream, by the route itself at
    message 500, so the publishes of that batch are written before the client hears of it:
    they are never confirmed; after ``confirm_timeout`` their sources are requeued (outcome
    unknown), and once unblocked every message arrives."""
    work, out = unique("doubt"), unique("doubt.out")
    count = 2000
    await admin.queue_declare(out)
    await fill(admin, work, count)
    via_proxy = broker_vhost.url_via(proxy.port)
    seen = 0

    def block_at_500(exchange: Any) -> None:
        nonlocal seen
        seen += 1
        if seen == 500:
            proxy.block("low on memory")
            asyncio.get_running_loop().call_later(2.5, proxy.unblock)  # past the timeout

    class Relay(RouteBuilder):
        def configure(self) -> None:
            (
                self.from_(
                    f"rabbitmq:?queue={work}&url={broker_vhost.url}&prefetch=200&concurrency=50"
                )
                .route_id("relay")
                .process(block_at_500)
                .to(
                    f"rabbitmq:?routing_key={out}&url={via_proxy}"
                    "&confirm_timeout=1&publish_timeout=20"
                )
            )

    caplog.set_level(logging.WARNING, logger="eip.rabbitmq")
    context = Context()
    context.add_routes(Relay())
    async with context:
        await until(lambda: depth_is(admin, work, 0), timeout=60, what="work empty")
        ids = await drain_ids(admin, out, count)
        assert _relay_consumer(context).settled_by_confirm > 0
    assert set(ids) == {f"m{n}" for n in range(count)}  # none lost (duplicates allowed)
    assert any("unconfirmed after 1.0s" in r.getMessage() for r in caplog.records)
