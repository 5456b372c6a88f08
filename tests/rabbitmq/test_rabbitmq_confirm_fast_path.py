"""The confirm-aware fast path (:mod:`eip.components.rabbitmq.confirmed`), against the real
broker: deliveries settled from their publish's confirm, with the same outcomes as the general
path when the broker nacks a publish (default error handling, a dead letter channel, a
redelivery policy). Confirms that never come (held by a blocked broker) are tested with the
other link faults, in ``test_rabbitmq_link_faults``.

Nacks are real: the target queue holds one message and refuses the rest
(``x-overflow=reject-publish``), so the broker nacks every publish after the first. Each
outcome is checked on the fast path (``concurrency`` > 1) and on the general path
(``concurrency=1``, which never takes it). Lean client only: the fast path needs it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from eip import Context, RedeliveryPolicy, RouteBuilder, dead_letter_channel
from eip.components.rabbitmq._amqp import Channel, Properties
from eip.components.rabbitmq.consumer import RabbitMQConsumer
from eip.runtime.step_counters import step_counters

from .support import Broker, dead_letter_setup, depth, depth_is, drain_ids, fill, unique, until

pytestmark = pytest.mark.rabbitmq

FULL_AFTER_ONE = {"x-max-length": 1, "x-overflow": "reject-publish"}


def _consumer(context: Context, route_id: str) -> RabbitMQConsumer:
    consumer = context.routes[route_id].consumer
    assert isinstance(consumer, RabbitMQConsumer)
    return consumer


async def test_fast_path_relays_everything_and_acks_only_confirmed(broker: Broker) -> None:
    channel, queues, _ = broker
    work, out = unique("fast"), unique("fast.out")
    queues += [work, out]
    await channel.queue_declare(out)
    count = 3000
    await fill(channel, work, count)

    class Relay(RouteBuilder):
        def configure(self) -> None:
            (
                self.from_(f"rabbitmq:?queue={work}&prefetch=200&concurrency=20")
                .route_id("relay")
                .transform(lambda ex: ex.body + b"!")
                .to(f"rabbitmq:?routing_key={out}")
            )

    context = Context()
    context.add_routes(Relay())
    async with context:
        consumer = _consumer(context, "relay")
        await until(lambda: depth_is(channel, out, count), timeout=30, what="all relayed")
        await until(lambda: consumer.settled_by_confirm == count, what="all settled")
        assert context.routes["relay"].inflight == 0
    assert await depth(channel, work) == 0  # acked: a channel closed on unacked requeues them
    ids = await drain_ids(channel, out, count)
    assert sorted(ids) == sorted(f"m{n}" for n in range(count))  # the ids went along


async def test_fast_path_is_not_taken_when_a_step_follows_the_send(broker: Broker) -> None:
    channel, queues, _ = broker
    work, out = unique("fast.after"), unique("fast.after.out")
    queues += [work, out]
    await channel.queue_declare(out)
    await fill(channel, work, 50)
    seen: list[bytes] = []

    class Relay(RouteBuilder):
        def configure(self) -> None:
            (
                self.from_(f"rabbitmq:?queue={work}&concurrency=20")
                .route_id("relay")
                .to(f"rabbitmq:?routing_key={out}")
                .process(lambda ex: seen.append(ex.body))  # runs after the confirm
            )

    context = Context()
    context.add_routes(Relay())
    async with context:
        await until(lambda: len(seen) == 50, timeout=30, what="all sent")
        assert _consumer(context, "relay").settled_by_confirm == 0
    assert await depth(channel, work) == 0
    assert await depth(channel, out) == 50
    assert len(seen) == 50


@pytest.mark.parametrize("same", [False, True])
async def test_two_sends_in_a_row_both_confirmed_before_the_ack(broker: Broker, same: bool) -> None:
    """Only the last step's producer takes the fast path: an earlier send waits for its
    confirm before the route goes on. The same producer twice (one URI) meets the fast-path
    exchange at the first send; the delivery is then acked only after both confirms."""
    channel, queues, _ = broker
    work, mid, out = unique("two"), unique("two.mid"), unique("two.out")
    queues += [work, mid, out]
    await channel.queue_declare(mid)
    await channel.queue_declare(out)
    await fill(channel, work, 500)
    first = out if same else mid

    class Relay(RouteBuilder):
        def configure(self) -> None:
            (
                self.from_(f"rabbitmq:?queue={work}&concurrency=20")
                .route_id("relay")
                .to(f"rabbitmq:?routing_key={first}")
                .to(f"rabbitmq:?routing_key={out}")
            )

    context = Context()
    context.add_routes(Relay())
    async with context:
        await until(lambda: depth_is(channel, out, 1000 if same else 500), timeout=30, what="all")
        await until(lambda: context.routes["relay"].inflight == 0, what="all settled")
    assert await depth(channel, work) == 0  # acked: a channel closed on unacked requeues them
    assert await depth(channel, mid) == (0 if same else 500)


@pytest.mark.parametrize("metrics", [False, True])
@pytest.mark.parametrize("concurrency", [1, 20])
async def test_nacked_publishes_are_dead_lettered_as_on_the_general_path(
    broker: Broker, concurrency: int, metrics: bool
) -> None:
    """With metrics on, the send is also counted (``eip run``'s counters): one sent and four
    failed on either path."""
    channel, queues, exchanges = broker
    work, dead, dlx = await dead_letter_setup(channel, queues, exchanges)
    out = unique("full")
    queues.append(out)
    await channel.queue_declare(out, arguments=FULL_AFTER_ONE)

    class Relay(RouteBuilder):
        def configure(self) -> None:
            (
                self.from_(
                    f"rabbitmq:?queue={work}&dead_letter_exchange={dlx}&concurrency={concurrency}"
                )
                .route_id("relay")
                .to(f"rabbitmq:?routing_key={out}")
            )

    context = Context(metrics=metrics)
    context.add_routes(Relay())
    async with context:
        for n in range(5):
            channel.publish(b"%d" % n, "", work, Properties(delivery_mode=2))
        await until(lambda: depth_is(channel, dead, 4), timeout=15, what="4 dead-lettered")
        await until(lambda: context.routes["relay"].inflight == 0, what="all settled")
        assert await depth(channel, out) == 1
        fast = _consumer(context, "relay").settled_by_confirm
        assert fast == (1 if concurrency > 1 else 0)  # the one accepted publish
        if metrics:
            model = context.routes["relay"].model
            (counter,) = step_counters(context).of(model).values()
            assert (counter.sent, counter.failed) == (1, 4)
    assert await depth(channel, work) == 0


@pytest.mark.parametrize("concurrency", [1, 20])
async def test_nacked_publishes_go_through_the_routes_error_handling(
    broker: Broker, concurrency: int
) -> None:
    """A dead letter channel with redelivery: each nacked publish is tried again (nacked
    again), then sent to the dead letter queue, and its source is acked."""
    channel, queues, _ = broker
    work, out, dlq = unique("eh"), unique("eh.full"), unique("eh.dlq")
    queues += [work, out, dlq]
    await channel.queue_declare(work)
    await channel.queue_declare(dlq)
    await channel.queue_declare(out, arguments=FULL_AFTER_ONE)

    class Relay(RouteBuilder):
        def configure(self) -> None:
            (
                self.from_(f"rabbitmq:?queue={work}&concurrency={concurrency}")
                .route_id("relay")
                .error_handler(
                    dead_letter_channel(
                        f"rabbitmq:?routing_key={dlq}",
                        redelivery=RedeliveryPolicy(max_redeliveries=2, delay=0.01),
                    )
                )
                .to(f"rabbitmq:?routing_key={out}")
            )

    context = Context()
    context.add_routes(Relay())
    async with context:
        for n in range(5):
            channel.publish(b"%d" % n, "", work, Properties(delivery_mode=2, message_id=f"m{n}"))
        await until(lambda: depth_is(channel, dlq, 4), timeout=15, what="4 in the dlq")
        await until(lambda: context.routes["relay"].inflight == 0, what="all settled")
        assert await depth(channel, out) == 1
        failed = context.routes["relay"].exchanges_failed
        assert failed == 0  # handled by the dead letter channel
    assert await depth(channel, work) == 0  # acked
    dead = await _bodies(channel, dlq, 4)
    assert all(
        d.properties.headers and d.properties.headers.get("eip.exception.type") for d in dead
    )
    assert all("nacked" in str(d.properties.headers["eip.exception.message"]) for d in dead)


async def _bodies(channel: Channel, queue: str, expected: int) -> list[Any]:
    got: list[Any] = []
    enough = asyncio.Event()

    def take(deliveries: list[Any]) -> None:
        got.extend(deliveries)
        if len(got) >= expected:
            enough.set()

    tag = await channel.basic_consume(queue, take, no_ack=True)
    await asyncio.wait_for(enough.wait(), 10)
    await channel.basic_cancel(tag)
    return got
