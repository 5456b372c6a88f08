"""Options real deployments need: broker arguments for queues, exchanges, bindings and
consumers, exchange-to-exchange bindings, consumer tag and exclusivity, stream offsets,
connection options, large bodies; unknown options still fail at start naming the valid ones.
"""

from __future__ import annotations

import asyncio
import datetime
import uuid
from typing import Any

import pytest

from eip import Context, RouteDefinitionError
from eip.components.base import parse_uri
from eip.components.rabbitmq import RabbitMQSpec, rabbitmq
from eip.components.rabbitmq._amqp import Properties

from .support import Broker, Rmq, depth, depth_at_least, routes, unique, until

pytestmark = pytest.mark.rabbitmq


def test_arguments_in_uri_form_are_typed_and_canonical() -> None:
    spec = parse_uri(
        "rabbitmq:crm?queue=q&queue_arguments.x-max-priority=10"
        "&queue_arguments.x-overflow=reject-publish&queue_arguments.x-single-active-consumer=true"
        "&consumer_arguments.x-priority=5&exchange_arguments.alternate-exchange=crm.unrouted"
        "&exchange_bindings=crm.events:customer.%23",
        RabbitMQSpec,
    )
    assert isinstance(spec, RabbitMQSpec)
    assert spec.queue_arguments == {
        "x-max-priority": 10,
        "x-overflow": "reject-publish",
        "x-single-active-consumer": True,
    }
    assert spec.consume_arguments == {"x-priority": 5}
    assert spec.source_exchanges == [("crm.events", "customer.#")]
    assert parse_uri(spec.uri, RabbitMQSpec) == spec  # the canonical URI round-trips
    typed = rabbitmq(
        "crm",
        queue="q",
        queue_arguments={
            "x-max-priority": 10,
            "x-overflow": "reject-publish",
            "x-single-active-consumer": True,
        },
        consumer_arguments={"x-priority": 5},
        exchange_arguments={"alternate-exchange": "crm.unrouted"},
        exchange_bindings=["crm.events:customer.#"],
    )
    assert typed == spec


def test_dedicated_options_win_over_the_same_argument() -> None:
    spec = rabbitmq(queue="q", queue_type="quorum", queue_arguments={"x-queue-type": "classic"})
    assert spec.queue_declare_arguments["x-queue-type"] == "quorum"


def test_stream_offsets() -> None:
    assert rabbitmq(queue="s", stream_offset="first").consume_arguments == {
        "x-stream-offset": "first"
    }
    assert rabbitmq(queue="s", stream_offset="42").consume_arguments == {"x-stream-offset": 42}
    moment = rabbitmq(queue="s", stream_offset="2026-12-01T00:00:00").consume_arguments
    assert moment["x-stream-offset"] == datetime.datetime(2026, 12, 1, tzinfo=datetime.UTC)
    assert rabbitmq(queue="s", stream_offset="1h").consume_arguments == {"x-stream-offset": "1h"}


async def test_unknown_and_bad_options_fail_at_start_naming_the_valid_ones() -> None:
    for uri, words in (
        ("rabbitmq:?queue=q&heartbeet=5", ["unknown option 'heartbeet'", "heartbeat"]),
        ("rabbitmq:?queue=q&confirm_timeout=0", ["confirm_timeout must be > 0"]),
        ("rabbitmq:?queue=q&reconnect_jitter=2", ["reconnect_jitter"]),
        ("rabbitmq:?queue=q&ca_file=/x.pem", ["amqps://"]),
        ("rabbitmq:?queue=q&url=amqps://h/&auth_mechanism=EXTERNAL", ["cert_file"]),
        ("rabbitmq:?queue=q&auth_mechanism=KERBEROS", ["auth_mechanism"]),
        ("rabbitmq:x?queue=q&exchange_bindings=:k", ["SOURCE:ROUTING_KEY"]),
    ):
        context = Context()
        context.add_routes(routes(lambda r, uri=uri: r.from_(uri).to("log:x")))
        with pytest.raises(RouteDefinitionError) as info:
            await context.start()
        for word in words:
            assert word in str(info.value), (uri, str(info.value))


async def test_priority_queue_and_consumer_tag(broker: Broker, rmq: Rmq) -> None:
    channel, queues, _ = broker
    queue, out = unique("prio"), unique("prio.out")
    queues += [queue, out]
    await channel.queue_declare(out)
    # The queue is declared by the endpoint with x-max-priority; fill it before consuming.
    await channel.queue_declare(queue, arguments={"x-max-priority": 10})
    for n, priority in enumerate((1, 9, 5)):
        channel.publish(b"%d" % n, "", queue, Properties(delivery_mode=2, priority=priority))
    await channel.wait_confirm(3)
    got: list[bytes] = []
    tag = f"eip-test-{uuid.uuid4().hex[:6]}"
    context = Context()
    context.add_routes(
        routes(
            lambda r: (
                r.from_(
                    rmq(
                        f"rabbitmq:?queue={queue}&queue_arguments.x-max-priority=10&prefetch=1"
                        f"&consumer_tag={tag}"
                    )
                )
                .route_id("prio")
                .process(lambda ex: got.append(ex.body))
            )
        )
    )
    await context.start()
    try:
        for _ in range(200):
            if len(got) == 3:
                break
            await asyncio.sleep(0.02)
        assert got == [b"1", b"2", b"0"]  # priority 9, 5, 1
        consumer = context.routes["prio"].consumer
        assert consumer is not None
        assert consumer._consumer_tag == tag  # type: ignore[attr-defined]
    finally:
        await context.stop()


async def test_exclusive_consumer_keeps_others_out(broker: Broker, rmq: Rmq) -> None:
    channel, queues, _ = broker
    queue = unique("excl")
    queues.append(queue)
    context = Context()
    context.add_routes(
        routes(
            lambda r: r.from_(rmq(f"rabbitmq:?queue={queue}&exclusive_consumer=true")).to("log:x")
        )
    )
    await context.start()
    try:
        other = await channel._conn.channel()
        with pytest.raises(Exception, match="ACCESS_REFUSED"):
            await other.basic_consume(queue, lambda batch: None)
    finally:
        await context.stop()


async def test_exchange_to_exchange_binding_and_headers_match(broker: Broker, rmq: Rmq) -> None:
    channel, queues, exchanges = broker
    source, dest = unique("e2e.src"), unique("e2e.dst")
    queue = unique("e2e.q")
    exchanges += [source, dest]
    queues.append(queue)
    await channel.exchange_declare(source, "topic")
    got: list[bytes] = []
    uri = rmq(
        f"rabbitmq:{dest}?exchange_type=headers&queue={queue}"
        f"&exchange_bindings={source}:customer.%23"
        "&binding_arguments.x-match=all&binding_arguments.region=CN"
    )
    context = Context()
    context.add_routes(routes(lambda r: r.from_(uri).process(lambda ex: got.append(ex.body))))
    await context.start()
    try:
        channel.publish(b"cn", source, "customer.changed", Properties(headers={"region": "CN"}))
        channel.publish(b"us", source, "customer.changed", Properties(headers={"region": "US"}))
        channel.publish(b"lead", source, "lead.new", Properties(headers={"region": "CN"}))
        await channel.wait_confirm(3)
        for _ in range(100):
            if got:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)
        assert got == [b"cn"]
    finally:
        await context.stop()


async def test_stream_queue_from_the_first_offset(broker: Broker, rmq: Rmq) -> None:
    channel, queues, _ = broker
    stream = unique("stream")
    queues.append(stream)
    await channel.queue_declare(stream, arguments={"x-queue-type": "stream"})
    for n in range(3):
        channel.publish(b"%d" % n, "", stream, Properties(delivery_mode=2))
    await channel.wait_confirm(3)
    got: list[bytes] = []
    context = Context()
    context.add_routes(
        routes(
            lambda r: r.from_(
                rmq(f"rabbitmq:?queue={stream}&queue_type=stream&stream_offset=first&prefetch=10")
            ).process(lambda ex: got.append(ex.body))
        )
    )
    await context.start()
    try:
        for _ in range(200):
            if len(got) == 3:
                break
            await asyncio.sleep(0.02)
        assert got == [b"0", b"1", b"2"]
    finally:
        await context.stop()


@pytest.mark.parametrize("megabytes", [5, 50])
async def test_large_bodies_relay_intact(broker: Broker, megabytes: int, rmq: Rmq) -> None:
    channel, queues, _ = broker
    source, target = unique("big.a"), unique("big.b")
    queues += [source, target]
    await channel.queue_declare(source)
    await channel.queue_declare(target)
    body = (uuid.uuid4().bytes * (megabytes * 65536))[: megabytes << 20]
    context = Context()
    context.add_routes(
        routes(
            lambda r: r.from_(rmq(f"rabbitmq:?queue={source}")).to(
                rmq(f"rabbitmq:?routing_key={target}")
            )
        )
    )
    await context.start()
    try:
        await channel.wait_confirm(channel.publish(body, "", source, Properties(delivery_mode=2)))
        await until(
            lambda: depth_at_least(channel, target, 1),
            timeout=30,
            what=f"{target} holding the body",
        )
        received: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

        def take(batch: list[Any]) -> None:
            if not received.done():
                received.set_result(batch[0].body)

        await channel.basic_consume(target, take, no_ack=True)
        relayed = await asyncio.wait_for(received, 30)
        assert len(relayed) == len(body)
        assert relayed == body
        assert await depth(channel, source) == 0
    finally:
        await context.stop()
