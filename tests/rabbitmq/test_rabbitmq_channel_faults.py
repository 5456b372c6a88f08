"""Broker faults short of a connection drop: a producer channel closed by the broker (406),
a consumer cancelled because its queue was deleted, a consumer channel closed by the broker.

The tests share a vhost of their own (``module_vhost``: they close only their own channels and
delete only their own queues), so nothing else on the shared broker is touched, and each runs
once per AMQP client (``rmq``): these are the recovery contract. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from eip import Context, EndpointError, RouteBuilder
from eip.components.rabbitmq._amqp import Channel, Connection, Properties, connect
from eip.components.rabbitmq.consumer import RabbitMQConsumer
from eip.errors import OutcomeUnknownError

from .support import Rmq, depth, depth_at_least, depth_is, unique, until

pytestmark = pytest.mark.rabbitmq


@pytest.fixture
async def admin(module_vhost: Any) -> AsyncIterator[tuple[Connection, Channel]]:
    connection = await connect(module_vhost.url)
    channel = await connection.channel(publisher_confirms=True)
    try:
        yield connection, channel
    finally:
        await connection.close()


def rabbitmq_component(context: Context) -> Any:
    return context.component("rabbitmq")


def rabbitmq_consumer(context: Context, route: str) -> RabbitMQConsumer:
    consumer = context.routes[route].consumer
    assert isinstance(consumer, RabbitMQConsumer)
    return consumer


async def test_producer_channel_closed_by_the_broker_is_reopened(
    module_vhost: Any, admin: Any, rmq: Rmq
) -> None:
    _, channel = admin
    queue = unique("406")
    await channel.queue_declare(queue)
    endpoint = rmq(f"rabbitmq:?routing_key={queue}&url={module_vhost.url}")
    context = Context()
    await context.start()
    try:
        template = context.template()
        assert (await template.send(endpoint, b"first")).exception is None
        producer = rabbitmq_component(context).producers[0]
        old = producer.channel
        # An invalid expiration makes the broker close the channel (406 PRECONDITION_FAILED);
        # the publish written right behind it on the same channel is discarded by the broker.
        old.publish(b"bad", "", queue, Properties(expiration="soon"))
        failed = await asyncio.wait_for(template.send(endpoint, b"lost in the close"), 10)
        assert isinstance(failed.exception, OutcomeUnknownError)
        assert "406" in str(failed.exception)
        assert "PRECONDITION_FAILED" in str(failed.exception)
        assert not old.is_open
        # The next send gets a fresh channel and succeeds, within the publish timeout.
        later = await asyncio.wait_for(template.send(endpoint, b"second"), 10)
        assert later.exception is None
        assert producer.channel is not old
        assert producer.channel.is_open
        await until(lambda: depth_is(channel, queue, 2), what="two messages queued")
        assert context.ready
    finally:
        await context.stop()


async def test_invalid_expiration_header_is_a_clear_error_and_keeps_the_channel(
    module_vhost: Any, admin: Any, rmq: Rmq
) -> None:
    _, channel = admin
    queue = unique("expiry")
    await channel.queue_declare(queue)
    endpoint = rmq(f"rabbitmq:?routing_key={queue}&url={module_vhost.url}")
    context = Context()
    await context.start()
    try:
        template = context.template()
        bad = await template.send(endpoint, b"x", {"rabbitmq.expiration": "soon"})
        assert isinstance(bad.exception, EndpointError)
        assert not isinstance(bad.exception, OutcomeUnknownError)
        assert "rabbitmq.expiration" in str(bad.exception)
        assert "'soon'" in str(bad.exception)
        good = await template.send(endpoint, b"y", {"rabbitmq.expiration": 60000})
        assert good.exception is None
        assert rabbitmq_component(context).producers[0].channel.is_open
        assert await depth(channel, queue) == 1
    finally:
        await context.stop()


def relay(rmq: Rmq, source: str, target: str, url: str, extra: str = "") -> RouteBuilder:
    class Relay(RouteBuilder):
        def configure(self) -> None:
            (
                self.from_(rmq(f"rabbitmq:?queue={source}&url={url}&reconnect_delay=0.1{extra}"))
                .route_id("relay")
                .to(rmq(f"rabbitmq:?routing_key={target}&url={url}"))
            )

    return Relay()


async def test_queue_deleted_under_a_declaring_consumer_is_declared_again(
    module_vhost: Any, admin: Any, rmq: Rmq
) -> None:
    _, channel = admin
    source, target = unique("deleted.a"), unique("deleted.b")
    await channel.queue_declare(target)
    context = Context()
    context.add_routes(relay(rmq, source, target, module_vhost.url))
    await context.start()
    try:
        channel.publish(b"1", "", source, Properties(delivery_mode=2))
        await until(lambda: depth_at_least(channel, target, 1), what="first relay")
        consumer = rabbitmq_consumer(context, "relay")
        await channel.queue_delete(source)
        # The broker cancels the consumer; it declares the queue again and consumes on.
        await until(lambda: consumer.ready and consumer._recovery.recoveries >= 1, what="resume")
        await channel.wait_confirm(channel.publish(b"2", "", source, Properties(delivery_mode=2)))
        await until(lambda: depth_is(channel, target, 2), what="the message after the deletion")
        assert context.ready
    finally:
        await context.stop()


async def test_queue_deleted_under_a_passive_consumer_is_reported_gone_then_resumes(
    module_vhost: Any, admin: Any, rmq: Rmq, caplog: pytest.LogCaptureFixture
) -> None:
    _, channel = admin
    source, target = unique("gone.a"), unique("gone.b")
    await channel.queue_declare(source)
    await channel.queue_declare(target)
    context = Context()
    context.add_routes(relay(rmq, source, target, module_vhost.url, "&declare=false"))
    await context.start()
    caplog.set_level(logging.WARNING, logger="eip.rabbitmq")
    try:
        consumer = rabbitmq_consumer(context, "relay")
        assert consumer.ready
        await channel.queue_delete(source)
        await until(lambda: not context.ready, what="readiness false")
        await until(lambda: "NOT_FOUND" in (consumer.problem or ""), what="the reason", timeout=5)
        assert source in (consumer.problem or "")
        assert any("retrying in" in r.getMessage() for r in caplog.records)
        # Whoever owns the topology declares the queue again: the consumer finds it.
        await channel.queue_declare(source)
        await until(lambda: context.ready, timeout=15, what="readiness back")
        await channel.wait_confirm(channel.publish(b"x", "", source, Properties(delivery_mode=2)))
        await until(lambda: depth_is(channel, target, 1), what="relay after resume")
    finally:
        await context.stop()


async def test_consumer_channel_closed_by_the_broker_is_reattached(
    module_vhost: Any, admin: Any, rmq: Rmq
) -> None:
    _, channel = admin
    source, target = unique("chclose.a"), unique("chclose.b")
    await channel.queue_declare(target)
    context = Context()
    context.add_routes(relay(rmq, source, target, module_vhost.url))
    await context.start()
    try:
        consumer = rabbitmq_consumer(context, "relay")
        old = consumer.channel
        assert old is not None
        # Acking a delivery tag the broker never gave makes it close the channel (406), as
        # it does after consumer_timeout: a broker-side channel close, connection untouched.
        old.ack(987654)
        await until(lambda: not old.is_open, what="the channel close")
        await until(lambda: consumer.ready and consumer.channel is not old, what="re-attach")
        link = next(iter(rabbitmq_component(context).links.values()))
        assert link.reconnects == 0, "the connection must not have been touched"
        for n in range(100):
            channel.publish(b"%d" % n, "", source, Properties(delivery_mode=2))
        await until(lambda: depth_is(channel, target, 100), what="100 relayed")
        assert await depth(channel, source) == 0
    finally:
        await context.stop()


async def test_other_routes_on_the_connection_are_not_affected(
    module_vhost: Any, admin: Any, rmq: Rmq
) -> None:
    _, channel = admin
    a, b, out_a, out_b = (unique(x) for x in ("iso.a", "iso.b", "iso.oa", "iso.ob"))
    for q in (out_a, out_b):
        await channel.queue_declare(q)

    class Two(RouteBuilder):
        def configure(self) -> None:
            url = module_vhost.url
            self.from_(rmq(f"rabbitmq:?queue={a}&url={url}")).route_id("a").to(
                rmq(f"rabbitmq:?routing_key={out_a}&url={url}")
            )
            self.from_(rmq(f"rabbitmq:?queue={b}&url={url}")).route_id("b").to(
                rmq(f"rabbitmq:?routing_key={out_b}&url={url}")
            )

    context = Context()
    context.add_routes(Two())
    await context.start()
    try:
        victim = rabbitmq_consumer(context, "a")
        other = rabbitmq_consumer(context, "b")
        other_channel = other.channel
        assert other_channel is not None
        assert victim.channel is not None
        victim.channel.ack(424242)  # close route a's channel from the broker side
        for n in range(50):
            channel.publish(b"%d" % n, "", b, Properties(delivery_mode=2))
        await until(lambda: depth_is(channel, out_b, 50), what="route b flows")
        assert other.channel is other_channel
        assert other_channel.is_open
        await until(lambda: victim.ready, what="route a back")
        channel.publish(b"a", "", a, Properties(delivery_mode=2))
        await until(lambda: depth_is(channel, out_a, 1), what="route a flows")
    finally:
        await context.stop()
