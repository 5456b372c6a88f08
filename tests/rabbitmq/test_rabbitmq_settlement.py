"""Outcome-aware settlement against the real broker: failed vs unknown outcome, the poison
limit for requeued messages, a slow message that must not stall its queue, and failure logs
that can be matched to the dead-letter queue."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from eip import Context, Exchange, RedeliveryPolicy, RouteBuilder, default_error_handler
from eip.components.rabbitmq._amqp import Properties
from eip.errors import OutcomeUnknownError

from .support import Broker, Rmq, dead_letter_setup, depth, depth_at_least, depth_is, unique, until

pytestmark = pytest.mark.rabbitmq


def one_route(uri: str, process: Any, redelivery: RedeliveryPolicy | None = None) -> RouteBuilder:
    class R(RouteBuilder):
        def configure(self) -> None:
            route = self.from_(uri).route_id("work")
            if redelivery is not None:
                route.error_handler(default_error_handler(redelivery))
            route.process(process).to("mock:done")

    return R()


async def test_unknown_outcome_requeues_and_the_message_is_not_lost(
    broker: Broker, rmq: Rmq
) -> None:
    channel, queues, exchanges = broker
    work, dead, dlx = await dead_letter_setup(channel, queues, exchanges)
    attempts: dict[bytes, int] = {}

    def flaky_send(exchange: Exchange) -> None:
        attempts[exchange.body] = attempts.get(exchange.body, 0) + 1
        if exchange.body == b"unlucky" and attempts[exchange.body] <= 2:
            raise OutcomeUnknownError("connection lost before the confirm")

    context = Context()
    context.add_routes(
        one_route(rmq(f"rabbitmq:?queue={work}&dead_letter_exchange={dlx}"), flaky_send)
    )
    async with context:
        for body in (b"a", b"unlucky", b"b"):
            channel.publish(body, "", work, Properties(delivery_mode=2))
        await context.mock("done").wait_for(3)
    assert sorted(context.mock("done").received_bodies) == [b"a", b"b", b"unlucky"]
    assert attempts[b"unlucky"] == 3  # requeued twice by the consumer, then done
    assert await depth(channel, dead) == 0
    assert await depth(channel, work) == 0


async def test_unknown_outcome_for_ever_is_bounded_by_the_poison_limit(
    broker: Broker,
    caplog: pytest.LogCaptureFixture,
    rmq: Rmq,
) -> None:
    channel, queues, exchanges = broker
    work, dead, dlx = await dead_letter_setup(channel, queues, exchanges)
    attempts = 0

    def always_unknown(exchange: Exchange) -> None:
        nonlocal attempts
        attempts += 1
        raise OutcomeUnknownError("confirm timed out")

    caplog.set_level(logging.ERROR, logger="eip.route.failures")
    context = Context()
    context.add_routes(
        one_route(
            rmq(f"rabbitmq:?queue={work}&dead_letter_exchange={dlx}&max_redeliveries=3"),
            always_unknown,
        )
    )
    async with context:
        channel.publish(b"x", "", work, Properties(delivery_mode=2, message_id="m-77"))
        await until(lambda: depth_at_least(channel, dead, 1), what="dead-lettered")
    assert attempts == 4  # the first delivery and 3 requeues
    lines = [r.getMessage() for r in caplog.records]
    assert sum("requeued" in line for line in lines) == 3
    assert any(
        "message id m-77" in line and f"rejected to dead letter exchange {dlx!r}" in line
        for line in lines
    )


async def test_a_failure_without_a_dead_letter_exchange_says_it_is_dropped(
    broker: Broker,
    caplog: pytest.LogCaptureFixture,
    rmq: Rmq,
) -> None:
    channel, queues, _ = broker
    work = unique("nodlx")
    queues.append(work)

    def fail(exchange: Exchange) -> None:
        raise ValueError("cannot map")

    caplog.set_level(logging.ERROR, logger="eip.route.failures")
    context = Context()
    context.add_routes(one_route(rmq(f"rabbitmq:?queue={work}"), fail))
    async with context:
        channel.publish(b"x", "", work, Properties(delivery_mode=2, message_id="id-9"))
        await until(
            lambda: any("id-9" in r.getMessage() for r in caplog.records), what="failure log"
        )
    line = next(r.getMessage() for r in caplog.records if "id-9" in r.getMessage())
    assert "ValueError: cannot map" in line
    assert "delivery 1 of queue" in line
    assert "no dead letter exchange" in line
    assert "dead letter exchange '" not in line


async def test_a_message_in_long_backoff_does_not_stall_its_queue(
    broker: Broker, rmq: Rmq, client: str
) -> None:
    # Far more than the prefetch window (200) either way; fewer on aio-pika, whose speed
    # (~1,000 msgs/s here) must still get them all past the poison's 3.6 s of backoff.
    count = 3000 if client == "lean" else 1500
    channel, queues, _ = broker
    work, out = unique("stall"), unique("stall.out")
    queues += [work, out]
    await channel.queue_declare(out)
    retries = 0

    def poison(exchange: Exchange) -> None:
        nonlocal retries
        if exchange.body == b"poison":
            retries += 1
            raise ValueError("always fails")

    class Relay(RouteBuilder):
        def configure(self) -> None:
            (
                self.from_(rmq(f"rabbitmq:?queue={work}&prefetch=200&concurrency=50"))
                .route_id("work")
                .error_handler(
                    default_error_handler(RedeliveryPolicy(max_redeliveries=6, delay=0.6))
                )
                .process(poison)
                .to(rmq(f"rabbitmq:?routing_key={out}"))
            )

    context = Context()
    context.add_routes(Relay())
    async with context:
        channel.publish(b"poison", "", work, Properties(delivery_mode=2))
        for n in range(count):
            channel.publish(b"%d" % n, "", work, Properties(delivery_mode=2))
        await channel.wait_confirm(count + 1)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await until(lambda: depth_at_least(channel, out, count), timeout=30, what="all out")
        elapsed = loop.time() - started
        # The poison message needs 6 x 0.6 s of backoff; everything else went past it.
        assert retries < 7, f"the others waited for the poison message ({elapsed:.1f}s)"
        await until(lambda: retries == 7, timeout=10, what="the poison message gives up")
        await until(lambda: depth_is(channel, work, 0), what="queue empty")
