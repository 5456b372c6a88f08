"""Per-key ordering across instances with the broker's own means (issue 12, point 1).

- **Single active consumer** (``queue_arguments.x-single-active-consumer=true``): of two
  contexts consuming one queue only the first gets messages; when it stops (gracefully, or its
  connection dies) the other takes over where it left off, so the queue's order is kept.
- **Consistent hash** (``exchange_type=x-consistent-hash``): keys spread over N queues, all
  messages of one key land in one queue, and with one active consumer per queue each key's
  order is kept, across two contexts and across a hand-over from one to the other.

Each context stands for one eip instance. Messages are recorded as each route processes them,
in processing order.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from eip import Context, Exchange, RouteBuilder
from eip.components.base import parse_uri
from eip.components.rabbitmq import RabbitMQSpec, rabbitmq
from eip.components.rabbitmq._amqp import Properties, connect
from eip.components.rabbitmq.spec import check_hashing
from eip.errors import RouteDefinitionError

from .faultproxy import FaultProxy
from .plugins import consistent_hash_exchange
from .support import URL, Broker, unique, until

__all__ = ["consistent_hash_exchange"]  # the fixture, used by name

SAC = {"x-single-active-consumer": True}


class Recorder:
    """What one context processed, in order: (queue, key, seq) of each message, whose body is
    ``b"<key>:<seq>"``."""

    def __init__(self, delay: float = 0.0) -> None:
        self.seen: list[tuple[str, str, int]] = []
        self.delay = delay

    def step(self, queue: str) -> Callable[[Exchange], Awaitable[None]]:
        """The recording step of the route consuming ``queue``."""

        async def record(exchange: Exchange) -> None:
            if self.delay:
                await asyncio.sleep(self.delay)  # slow enough that a stop lands mid-stream
            key, _, seq = exchange.body.decode().partition(":")
            self.seen.append((queue, key, int(seq)))

        return record


def consuming(
    recorder: Recorder, specs: dict[str, Any], standby: frozenset[str] = frozenset()
) -> RouteBuilder:
    """One route per queue (id ``q-<name>``), recording into ``recorder``; the routes named in
    ``standby`` are not started with the context (started later: they queue up behind)."""

    class Consumers(RouteBuilder):
        def configure(self) -> None:
            for name, spec in specs.items():
                (
                    self.from_(spec)
                    .route_id(f"q-{name}")
                    .auto_startup(name not in standby)
                    .process(recorder.step(spec.queue))
                )

    return Consumers()


# -- the spec: what is expressed, and the mistakes that fail at route start ----------------
def test_a_uri_spells_single_active_consumer_and_consistent_hash() -> None:
    uri = (
        "rabbitmq:crm.customer.partitioned?exchange_type=x-consistent-hash"
        "&exchange_arguments.hash-header=customer_id&queue=crm.customer.changed.0"
        "&queue_type=quorum&queue_arguments.x-single-active-consumer=true"
    )
    spec = parse_uri(uri, RabbitMQSpec)
    assert isinstance(spec, RabbitMQSpec)
    assert spec.exchange_type == "x-consistent-hash"
    assert spec.exchange_arguments == {"hash-header": "customer_id"}
    assert spec.bindings == ["1"]  # a weight: each queue gets an equal share of the keys
    assert spec.queue_declare_arguments == {
        "x-single-active-consumer": True,  # a boolean, as the broker wants it
        "x-queue-type": "quorum",
    }
    typed = rabbitmq(
        "crm.customer.partitioned",
        exchange_type="x-consistent-hash",
        exchange_arguments={"hash-header": "customer_id"},
        queue="crm.customer.changed.0",
        queue_type="quorum",
        queue_arguments=SAC,
    )
    assert typed == spec
    assert parse_uri(spec.uri, RabbitMQSpec) == spec  # the canonical URI round-trips
    weighted = rabbitmq("x", exchange_type="x-consistent-hash", binding_keys=["3"])
    assert weighted.bindings == ["3"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"exchange_type": "x-consistent-hash", "binding_keys": ["customer.#"]},
            "binding_keys of a x-consistent-hash exchange are queue weights (positive "
            "integers such as '1'), got 'customer.#'",
        ),
        (
            {"exchange_type": "x-consistent-hash", "binding_keys": ["0"]},
            "are queue weights (positive integers such as '1'), got '0'",
        ),
        (
            {
                "exchange_type": "x-consistent-hash",
                "exchange_arguments": {"hash-header": "customer_id", "hash-property": "message_id"},
            },
            "exchange_arguments.hash-header and hash-property are mutually exclusive",
        ),
        (
            {"exchange_type": "x-consistent-hash", "exchange_arguments": {"hash-property": "id"}},
            "exchange_arguments.hash-property must be one of message_id, correlation_id, "
            "timestamp, got 'id'",
        ),
        (
            {"exchange_type": "x-consistent-hash", "exchange_arguments": {"hash-header": ""}},
            "exchange_arguments.hash-header names a header, got ''",
        ),
    ],
)
def test_consistent_hash_mistakes_name_the_option(options: dict[str, Any], message: str) -> None:
    with pytest.raises(RouteDefinitionError) as caught:
        rabbitmq("crm.customer.partitioned", **options)
    assert "endpoint rabbitmq:crm.customer.partitioned" in str(caught.value)
    assert message in str(caught.value)


def test_hash_arguments_on_another_exchange_type_are_a_mistake() -> None:
    """Checked once the spec is complete (the component's validate, after placeholders are
    resolved): while a spec is built, a placeholder exchange_type stands at its default."""
    spec = rabbitmq("crm.events", exchange_arguments={"hash-header": "customer_id"})
    with pytest.raises(ValueError, match="needs exchange_type") as caught:
        check_hashing(spec)
    assert str(caught.value) == (
        "exchange_arguments.hash-header needs exchange_type=x-consistent-hash (a topic "
        "exchange ignores it)"
    )
    deferred = rabbitmq(
        "crm.customer.partitioned",
        exchange_type="{{crm.exchange_type}}",
        exchange_arguments={"hash-header": "customer_id"},
    )
    check_hashing(deferred)  # nothing to say until the placeholder is resolved
    assert deferred.exchange_arguments == {"hash-header": "customer_id"}


# -- single active consumer ----------------------------------------------------------------
async def publish_sequence(
    channel: Any, exchange: str, routing_key: str, key: str, start: int, count: int
) -> None:
    seq = 0
    for n in range(start, start + count):
        properties = Properties(delivery_mode=2, message_id=f"{key}-{n}")
        seq = channel.publish(f"{key}:{n}".encode(), exchange, routing_key, properties)
    await channel.wait_confirm(seq)


def seqs(recorder: Recorder) -> list[int]:
    return [seq for _, _, seq in recorder.seen]


async def hand_over(queue: str, queue_type: str) -> tuple[list[int], list[int]]:
    """Two contexts on one single-active-consumer queue of 400 messages; the first (active)
    one is stopped gracefully mid-stream. Returns what each processed, in order."""
    spec = rabbitmq(queue=queue, queue_type=queue_type, queue_arguments=SAC, prefetch=10, url=URL)
    first, second = Recorder(delay=0.003), Recorder()
    one, two = Context(), Context()
    one.add_routes(consuming(first, {"sac": spec}))
    two.add_routes(consuming(second, {"sac": spec}))
    await one.start()
    try:
        await two.start()  # registered second: the standby
        connection = await connect(URL)
        channel = await connection.channel(publisher_confirms=True)
        await publish_sequence(channel, "", queue, "k", 0, 400)
        await connection.close()
        await until(lambda: len(first.seen) >= 100, what="the first context under way")
        assert second.seen == [], "the standby received while the active consumer ran"
        await one.stop()  # graceful: what it has taken finishes and is acked
        assert len(first.seen) < 400, "the first context finished before it was stopped"
        await until(lambda: len(first.seen) + len(second.seen) >= 400, what="the take-over")
        await asyncio.sleep(0.2)  # nothing more may come
    finally:
        await one.stop()
        await two.stop()
    return seqs(first), seqs(second)


async def test_single_active_consumer_one_receives_and_the_next_takes_over_in_order(
    broker: Broker,
) -> None:
    """Classic queue: the hand-over at a graceful stop keeps the order exactly."""
    _, queues, _ = broker
    queue = unique("sac-classic")
    queues.append(queue)
    first, second = await hand_over(queue, "classic")
    assert first == list(range(len(first)))
    assert second == list(range(len(first), 400)), "the take-over lost the order"


async def test_a_graceful_hand_over_on_a_quorum_queue_reorders_only_what_was_in_flight(
    broker: Broker,
) -> None:
    """Quorum queue (RabbitMQ 3.10): after Basic.Cancel, the deliveries the queue had already
    sent towards the stopping consumer never reach it; the broker returns them *behind* what
    the new active consumer has by then, so they come late. Nothing is lost or doubled, and
    only those few (at most the prefetch of 10) are out of place; the rest is in order. A
    killed consumer (next test) keeps the order exactly: its unacked messages go back to the
    head of the queue."""
    _, queues, _ = broker
    queue = unique("sac-quorum")
    queues.append(queue)
    first, second = await hand_over(queue, "quorum")
    assert first == list(range(len(first)))
    assert sorted(first + second) == list(range(400)), "lost or doubled in the hand-over"
    late, highest = [], -1
    for n in second:  # the messages that came after a later one
        if n < highest:
            late.append(n)
        highest = max(highest, n)
    rest = [n for n in second if n not in late]
    assert rest == sorted(rest), "reordered beyond the messages in flight at the cancel"
    stopped_at = len(first)
    assert len(late) <= 10, f"more than the prefetch came late: {late}"
    assert all(stopped_at <= n < stopped_at + 10 for n in late), (stopped_at, late)


async def test_single_active_consumer_fails_over_in_order_when_the_active_one_dies(
    broker: Broker,
) -> None:
    """The active context's connection is cut (as when its process is killed): its unacked
    messages go back to the head of the queue, the standby gets them first, in order. They may
    have been processed already (at-least-once); after them, nothing is skipped or reordered.
    The first context reconnects and queues up as the standby."""
    channel, queues, _ = broker
    queue = unique("sac-crash")
    queues.append(queue)
    first, second = Recorder(delay=0.003), Recorder()
    async with FaultProxy() as proxy:
        via_proxy = f"amqp://guest:guest@127.0.0.1:{proxy.port}/"
        spec_one = rabbitmq(
            queue=queue,
            queue_type="quorum",
            queue_arguments=SAC,
            prefetch=10,
            url=via_proxy,
            reconnect_delay=0.1,
        )
        spec_two = rabbitmq(
            queue=queue, queue_type="quorum", queue_arguments=SAC, prefetch=10, url=URL
        )
        one, two = Context(), Context()
        one.add_routes(consuming(first, {"sac": spec_one}))
        two.add_routes(consuming(second, {"sac": spec_two}))
        async with one, two:
            await publish_sequence(channel, "", queue, "k", 0, 300)
            await until(lambda: len(first.seen) >= 80, what="the first context under way")
            assert second.seen == []
            proxy.reset()  # RST: the broker sees the consumer's connection die
            await until(lambda: second.seen and second.seen[-1][2] == 299, what="take-over")
            died_at = len(first.seen)
            resumed = seqs(second)[0]
            assert resumed <= died_at, "the standby skipped messages the first never finished"
            assert seqs(second) == list(range(resumed, 300)), "order lost in the fail-over"
            assert seqs(first)[:resumed] == list(range(resumed))
            redelivered = died_at - resumed
            assert 0 <= redelivered <= 10, "more redelivered than the prefetch held"
            # The first context reconnected; it is now the standby, and the second stays active.
            consumer = one.routes["q-sac"].consumer
            assert consumer is not None
            await until(lambda: consumer.ready, what="the first context reconnected")
            await publish_sequence(channel, "", queue, "k", 300, 50)
            await until(lambda: second.seen[-1][2] == 349, what="the second batch")
            assert len(first.seen) == died_at, "the reconnected standby received"


# -- consistent hash -----------------------------------------------------------------------
async def test_consistent_hash_keeps_each_key_on_one_queue_and_in_order(
    broker: Broker, consistent_hash_exchange: None
) -> None:
    """Four queues on an ``x-consistent-hash`` exchange hashing header ``customer_id``, each
    with a single active consumer. Context one is active on queues 0-1 and the standby on 2-3,
    context two the other way round. Mid-stream context one stops: its queues fail over to
    two. Every customer's messages sit in one queue, the customers spread over all four, and
    each customer's updates were processed in order, before and across the hand-over. (On
    quorum queues a graceful hand-over may deliver a few in-flight messages late, see above;
    the multi-instance test runs this layout on quorum queues with a SIGKILL.)"""
    _, queues, exchanges = broker
    tag = uuid.uuid4().hex[:8]
    exchange = f"eip.test.by-customer.{tag}"
    exchanges.append(exchange)
    names = [f"eip.test.by-customer.{tag}.{n}" for n in range(4)]
    queues.extend(names)
    common = {
        "exchange_type": "x-consistent-hash",
        "exchange_arguments": {"hash-header": "customer_id"},
        "queue_arguments": SAC,  # classic queues: a graceful hand-over keeps the order exactly
        "prefetch": 20,
        "url": URL,
    }
    specs = {str(n): rabbitmq(exchange, queue=name, **common) for n, name in enumerate(names)}
    # as a URI: the template looks producers up by their endpoint, and a spec holding a dict
    # (exchange_arguments) is not hashable
    publisher = rabbitmq(exchange, **{k: v for k, v in common.items() if k.startswith("ex")}).uri
    first, second = Recorder(delay=0.002), Recorder(delay=0.002)
    one, two = Context(), Context()
    one.add_routes(consuming(first, specs, standby=frozenset({"2", "3"})))
    two.add_routes(consuming(second, specs, standby=frozenset({"0", "1"})))
    customers, updates = 40, 15
    async with one, two:
        for context, standby in ((one, ("2", "3")), (two, ("0", "1"))):
            for name in standby:  # behind the other context's active consumer
                await context.start_route(f"q-{name}")
        template = one.template()
        for seq in range(updates):
            for customer in range(customers):
                sent = await template.send(
                    publisher, f"c{customer}:{seq}".encode(), {"customer_id": f"c{customer}"}
                )
                assert sent.exception is None, sent.exception
            if seq == 5:
                await until(lambda: len(first.seen) >= 60, what="context one under way")
                await one.stop()  # its queues fail over to context two, mid-stream
        total = customers * updates
        await until(lambda: len(first.seen) + len(second.seen) >= total, what="all processed")
        await asyncio.sleep(0.2)
    queue_of: dict[str, set[str]] = defaultdict(set)
    order: dict[str, list[int]] = defaultdict(list)
    instances: dict[str, set[str]] = defaultdict(set)
    for who, recorder in (("one", first), ("two", second)):
        for queue, key, _ in recorder.seen:
            queue_of[key].add(queue)
            instances[key].add(who)
    # processing order per key: context one's records all precede the hand-over
    for _, key, seq in first.seen + second.seen:
        order[key].append(seq)
    assert len(first.seen) + len(second.seen) == total, "lost or duplicated messages"
    assert all(len(q) == 1 for q in queue_of.values()), "a customer landed in two queues"
    used = {next(iter(q)) for q in queue_of.values()}
    assert used == set(names), f"keys did not spread over all four queues: {sorted(used)}"
    for key, got in order.items():
        assert got == list(range(updates)), f"customer {key} out of order: {got}"
    moved = [key for key, who in instances.items() if who == {"one", "two"}]
    assert moved, "no customer was handed over from context one to context two"
    assert {w for who in instances.values() for w in who} == {"one", "two"}
