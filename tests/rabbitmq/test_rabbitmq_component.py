"""The rabbitmq: component against the real broker (127.0.0.1:5672)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from eip import (
    Context,
    EndpointError,
    Exchange,
    ExchangeTimeoutError,
    LifecycleError,
    RedeliveryPolicy,
    RouteDefinitionError,
    default_error_handler,
)
from eip import headers as H
from eip.components.rabbitmq._amqp import Channel, Properties, connect

from .support import (
    URL,
    Broker,
    Rmq,
    dead_letter_setup,
    depth,
    depth_at_least,
    routes,
    unique,
    until,
)


async def test_round_trip_and_headers_mapping(broker: Broker, rmq: Rmq) -> None:
    channel, queues, _ = broker
    inbox, outbox = unique("in"), unique("out")
    queues += [inbox, outbox]
    await channel.queue_declare(outbox)
    context = Context()
    context.add_routes(
        routes(
            lambda b: (
                b.from_(rmq(f"rabbitmq:?queue={inbox}"))
                .route_id("relay")
                .to("mock:seen")
                .transform(lambda ex: ex.body.upper())
                .set_header("x-stage", "relayed")
                .to(rmq(f"rabbitmq:?routing_key={outbox}"))
            )
        )
    )
    async with context:
        properties = Properties(
            message_id="m-1",
            correlation_id="c-1",
            content_type="text/plain",
            headers={"x-tenant": "acme", "x-count": 3},
        )
        channel.publish(b"hello", "", inbox, properties)
        await until(lambda: depth_at_least(channel, outbox, 1), what=f"{outbox} holding 1 message")
    seen = context.mock("seen").received[0]
    assert seen.body == b"hello"
    assert seen.headers["x-tenant"] == "acme"
    assert seen.headers["x-count"] == 3
    assert seen.headers["rabbitmq.message_id"] == "m-1"
    assert seen.headers["rabbitmq.correlation_id"] == "c-1"
    assert seen.headers["rabbitmq.content_type"] == "text/plain"
    assert seen.headers["rabbitmq.routing_key"] == inbox
    assert seen.headers[H.MESSAGE_ID] == "m-1"

    received: list[Any] = []
    done = asyncio.Event()

    def on_deliveries(deliveries: list[Any]) -> None:
        received.extend(deliveries)
        done.set()

    await channel.basic_consume(outbox, on_deliveries, no_ack=True)
    await asyncio.wait_for(done.wait(), 5)
    (message,) = received
    assert message.body == b"HELLO"
    assert message.properties.message_id == "m-1"  # survives the hop
    assert message.properties.correlation_id == "c-1"
    assert message.properties.delivery_mode == 2  # persistent by default
    assert message.properties.headers["x-tenant"] == "acme"
    assert message.properties.headers["x-stage"] == "relayed"
    assert not any(k.startswith(("rabbitmq.", "eip.")) for k in message.properties.headers)
    assert await depth(channel, inbox) == 0


async def test_topic_routing(broker: Broker, rmq: Rmq) -> None:
    _, queues, exchanges = broker
    events = unique("events")
    orders, customers = unique("orders"), unique("customers")
    queues += [orders, customers]
    exchanges.append(events)
    context = Context()
    context.add_routes(
        routes(
            lambda b: (
                b.from_(rmq(f"rabbitmq:{events}?queue={orders}&binding_keys=order.*"))
                .route_id("orders")
                .to("mock:orders"),
                b.from_(rmq(f"rabbitmq:{events}?queue={customers}&binding_keys=customer.#"))
                .route_id("customers")
                .to("mock:customers"),
            )
        )
    )
    async with context:
        template = context.template()
        for key in ["order.placed", "customer.changed.address", "order.cancelled", "lead.new"]:
            exchange = Exchange(key.encode(), {"key": key})
            await template.send_exchange(rmq(f"rabbitmq:{events}?routing_key_header=key"), exchange)
            assert exchange.exception is None
        await context.mock("orders").wait_for(2)
        await context.mock("customers").wait_for(1)
    assert sorted(context.mock("orders").received_bodies) == [b"order.cancelled", b"order.placed"]
    assert context.mock("customers").received_bodies == [b"customer.changed.address"]


async def test_request_reply(broker: Broker, rmq: Rmq) -> None:
    _, queues, _ = broker
    service = unique("service")
    queues.append(service)
    context = Context()
    context.add_routes(
        routes(
            lambda b: (
                b.from_(rmq(f"rabbitmq:?queue={service}"))
                .route_id("service")
                .transform(lambda ex: b"credit ok for " + ex.body)
            )
        )
    )
    async with context:
        reply = await context.template().request(rmq(f"rabbitmq:?routing_key={service}"), b"c-42")
        assert reply == b"credit ok for c-42"


async def test_request_timeout(broker: Broker, rmq: Rmq) -> None:
    channel, queues, _ = broker
    nobody = unique("nobody")
    queues.append(nobody)
    await channel.queue_declare(nobody)
    context = Context()
    context.add_routes(routes(lambda b: b.from_("direct:x").to("mock:x")))
    async with context:
        with pytest.raises(ExchangeTimeoutError, match=r"no reply within 0\.2s"):
            await context.template().request(
                rmq(f"rabbitmq:?routing_key={nobody}&request_timeout=0.2"), b"?"
            )


async def test_unroutable_mandatory_publish_is_a_clear_error(broker: Broker, rmq: Rmq) -> None:
    _, _, exchanges = broker
    events = unique("empty")
    exchanges.append(events)
    context = Context()
    context.add_routes(routes(lambda b: b.from_("direct:x").to("mock:x")))
    async with context:
        exchange = await context.template().send(
            rmq(f"rabbitmq:{events}?routing_key=nowhere&mandatory=true"), b"lost?"
        )
    assert isinstance(exchange.exception, EndpointError)
    text = str(exchange.exception)
    assert "nowhere" in text
    assert "NO_ROUTE" in text or "312" in text or "unroutable" in text.lower()


async def test_failing_message_goes_to_dlx_and_the_rest_flow(broker: Broker, rmq: Rmq) -> None:
    channel, queues, exchanges = broker
    work, dead, dlx = await dead_letter_setup(channel, queues, exchanges)

    def process(exchange: Exchange) -> None:
        if exchange.body == b"poison":
            raise ValueError("cannot parse")

    context = Context()
    context.add_routes(
        routes(
            lambda b: (
                b.from_(rmq(f"rabbitmq:?queue={work}&dead_letter_exchange={dlx}"))
                .route_id("work")
                .error_handler(
                    default_error_handler(RedeliveryPolicy(max_redeliveries=2, delay=0.01))
                )
                .process(process)
                .to("mock:ok")
            )
        )
    )
    async with context:
        for body in [b"a", b"poison", b"b", b"c"]:
            channel.publish(body, "", work, Properties(delivery_mode=2))
        await context.mock("ok").wait_for(3)
        await until(lambda: depth_at_least(channel, dead, 1), what=f"{dead} holding 1 message")
    assert sorted(context.mock("ok").received_bodies) == [b"a", b"b", b"c"]
    assert await depth(channel, work) == 0


async def test_poison_redelivery_limit_on_a_quorum_queue(broker: Broker, rmq: Rmq) -> None:
    channel, queues, exchanges = broker
    work, dead, dlx = await dead_letter_setup(
        channel, queues, exchanges, ("quorum", "qdead", "qdlx")
    )
    await channel.queue_declare(
        work, arguments={"x-queue-type": "quorum", "x-dead-letter-exchange": dlx}
    )
    # A message already delivered too often (as if earlier consumers crashed on it).
    channel.publish(b"crash", "", work, Properties(delivery_mode=2, message_id="p"))
    for _ in range(3):  # the broker counts deliveries: consume and requeue three times
        got = asyncio.Event()
        consumer = await connect(URL)
        ch = await consumer.channel()

        def requeue(deliveries: list[Any], ch: Channel = ch, got: asyncio.Event = got) -> None:
            for d in deliveries:
                ch.nack(d.delivery_tag, requeue=True)
            got.set()

        await ch.basic_consume(work, requeue)
        await asyncio.wait_for(got.wait(), 5)
        await consumer.close()
    context = Context()
    context.add_routes(
        routes(
            lambda b: (
                b.from_(
                    rmq(
                        f"rabbitmq:?queue={work}&queue_type=quorum&dead_letter_exchange={dlx}"
                        "&max_redeliveries=2"
                    )
                )
                .route_id("quorum")
                .to("mock:processed")
            )
        )
    )
    async with context:
        await until(lambda: depth_at_least(channel, dead, 1), what=f"{dead} holding 1 message")
    assert context.mock("processed").count == 0


async def test_shutdown_during_traffic_leaves_nothing_unacked(broker: Broker, rmq: Rmq) -> None:
    channel, queues, _ = broker
    work = unique("busy")
    queues.append(work)
    await channel.queue_declare(work)
    for n in range(500):
        seq = channel.publish(str(n).encode(), "", work, Properties(delivery_mode=2))
    await channel.wait_confirm(seq)

    async def slow(exchange: Exchange) -> None:
        await asyncio.sleep(0.001)

    context = Context(shutdown_timeout=10)
    context.add_routes(
        routes(
            lambda b: (
                b.from_(rmq(f"rabbitmq:?queue={work}&prefetch=50&concurrency=10"))
                .route_id("busy")
                .process(slow)
                .to("mock:done")
            )
        )
    )
    await context.start()
    await context.mock("done").wait_for(100)
    await context.stop()
    processed = context.mock("done").count
    remaining = await depth(channel, work)  # ready messages: unacked ones went back on close
    assert processed + remaining == 500  # each message either processed and acked, or queued
    assert len(set(context.mock("done").received_bodies)) == processed


async def test_unknown_option_and_bad_values_fail_at_start() -> None:
    for uri, message in [
        ("rabbitmq:x?prefech=10", "unknown option 'prefech'"),
        ("rabbitmq:x?prefetch=0", "prefetch must be between 1 and 65535"),
        ("rabbitmq:x?exchange_type=fan", "exchange_type"),
        ("rabbitmq:x?url=http://h", "url must start with amqp://"),
    ]:
        context = Context()
        context.add_routes(routes(lambda b, uri=uri: b.from_(uri).to("mock:x")))
        with pytest.raises(RouteDefinitionError, match=message):
            await context.start()


async def test_unreachable_broker_fails_start_clearly(rmq: Rmq) -> None:
    context = Context()
    context.add_routes(
        routes(
            lambda b: (
                b.from_(rmq("rabbitmq:?queue=q&url=amqp://guest:secret@127.0.0.1:1/"))
                .route_id("down")
                .to("mock:x")
            )
        )
    )
    with pytest.raises(LifecycleError) as info:
        await context.start()
    text = str(info.value)
    assert "cannot connect to RabbitMQ at amqp://guest:***@127.0.0.1:1/" in text
    assert "secret" not in text


async def test_trace_spans_producer_broker_consumer(broker: Broker, rmq: Rmq) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    _, queues, _ = broker
    queue = unique("traced")
    queues.append(queue)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    context = Context(tracer_provider=provider)
    context.add_routes(
        routes(
            lambda b: (
                b.from_("direct:start").route_id("front").to(rmq(f"rabbitmq:?routing_key={queue}")),
                b.from_(rmq(f"rabbitmq:?queue={queue}")).route_id("back").to("mock:end"),
            )
        )
    )
    async with context:
        await context.template().send("direct:start", b"traced")
        await context.mock("end").wait_for(1)
    spans = {span.name: span for span in exporter.get_finished_spans()}
    send = spans["send rabbitmq:"]  # the default exchange
    back = spans["back"]
    assert back.context.trace_id == spans["front"].context.trace_id
    assert back.parent is not None
    assert back.parent.span_id == send.context.span_id
    assert back.parent.is_remote
    assert "traceparent" not in context.mock("end").received[0].headers
