"""The error path of RabbitMQ routes against the real broker: a dead-lettered message's
idempotent key is released, a request-reply caller whose message is dead-lettered gets its own
outcome (the dead letter goes one way), a dead letter channel that fails does not loop, and an
unknown outcome is never dead-lettered."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from eip import Context, Exchange, RouteBuilder, dead_letter_channel
from eip.components.rabbitmq._amqp import Properties
from eip.errors import OutcomeUnknownError
from eip.stores import SqliteIdempotentRepository

from .support import Broker, Rmq, depth, depth_is, unique, until

pytestmark = pytest.mark.rabbitmq


async def test_a_dead_lettered_message_id_runs_again_when_it_comes_back(
    broker: Broker,
    tmp_path: Path,
    rmq: Rmq,
) -> None:
    channel, queues, _ = broker
    work, dead = unique("idem"), unique("idem.dead")
    queues += [work, dead]
    await channel.queue_declare(dead)
    runs: list[str] = []

    def erp(exchange: Exchange) -> None:
        runs.append(exchange.body.decode())
        if exchange.body == b"2":
            raise ValueError("the ERP refused customer 2")

    repository = SqliteIdempotentRepository(str(tmp_path / "idem.db"))

    class Sync(RouteBuilder):
        def configure(self) -> None:
            self.error_handler(dead_letter_channel(rmq(f"rabbitmq:?routing_key={dead}")))
            (
                self.from_(rmq(f"rabbitmq:?queue={work}"))
                .route_id("sync")
                .idempotent_consumer(lambda ex: ex.body.decode(), repository)
                .process(erp)
            )

    context = Context()
    context.add_routes(Sync())
    async with context:
        for body in (b"1", b"2", b"1", b"2", b"1", b"3"):
            channel.publish(body, "", work, Properties(delivery_mode=2))
        await until(lambda: depth_is(channel, dead, 2), what="2 dead-lettered twice")
        await until(lambda: depth_is(channel, work, 0), what="all consumed")
    # 1 runs once (its copies are duplicates); 2 fails, is dead-lettered, and its second copy
    # runs again and is dead-lettered again (as Camel does); 3 runs.
    assert runs == ["1", "2", "2", "3"]


async def test_a_request_reply_caller_whose_message_is_dead_lettered_gets_its_own_outcome(
    broker: Broker,
    rmq: Rmq,
) -> None:
    channel, queues, _ = broker
    work, dead = unique("rr"), unique("rr.dead")
    queues += [work, dead]
    await channel.queue_declare(dead)

    def fail(exchange: Exchange) -> None:
        raise ValueError("no such customer")

    class Service(RouteBuilder):
        def configure(self) -> None:
            (
                self.from_(rmq(f"rabbitmq:?queue={work}"))
                .route_id("service")
                .error_handler(dead_letter_channel(rmq(f"rabbitmq:?routing_key={dead}")))
                .process(fail)
            )

    context = Context()
    context.add_routes(Service())
    async with context:
        # The caller asks over RabbitMQ (request-reply); the service's dead letter channel is a
        # rabbitmq: endpoint, which must publish the dead letter one way, not ask it a question.
        answer = await asyncio.wait_for(
            context.template().request_exchange(
                rmq(f"rabbitmq:?routing_key={work}&request_timeout=5"), b"customer 9"
            ),
            10,
        )
        assert answer.exception is None
        assert answer.body == b"customer 9"  # the handled exchange itself, not a DLQ reply
        await until(lambda: depth_is(channel, dead, 1), what="dead letter published")
    received: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    def take(batch: list[Any]) -> None:
        if not received.done():
            received.set_result(batch[0])

    await channel.basic_consume(dead, take, no_ack=True)
    letter = await asyncio.wait_for(received, 5)
    assert letter.body == b"customer 9"
    assert letter.properties.reply_to is None  # sent one way
    assert letter.properties.headers["eip.exception.type"] == "builtins.ValueError"
    assert letter.properties.headers["eip.exception.message"] == "no such customer"
    assert letter.properties.headers["eip.failure.route"] == "service"


async def test_a_failing_dead_letter_route_does_not_loop(broker: Broker, rmq: Rmq) -> None:
    channel, queues, _ = broker
    work, dead = unique("dlloop"), unique("dlloop.dead")
    queues.append(work)
    await channel.queue_declare(dead)
    queues.append(dead)
    dead_letter_attempts = 0

    def refuse(exchange: Exchange) -> None:
        nonlocal dead_letter_attempts
        dead_letter_attempts += 1
        raise OSError("the dead letter store is full")

    class Routes(RouteBuilder):
        def configure(self) -> None:
            # Builder-wide: it covers the dead letter route too (the crm_webhook trap).
            self.error_handler(dead_letter_channel("direct:dead"))
            (
                self.from_(rmq(f"rabbitmq:?queue={work}&dead_letter_exchange="))
                .route_id("work")
                .process(lambda ex: (_ for _ in ()).throw(ValueError("bad record")))
            )
            self.from_("direct:dead").route_id("dead").process(refuse)

    context = Context(shutdown_timeout=5)
    context.add_routes(Routes())
    async with context:
        channel.publish(b"x", "", work, Properties(delivery_mode=2, message_id="loop-1"))
        await until(lambda: depth_is(channel, work, 0), what="settled")
        await asyncio.sleep(0.3)
        assert dead_letter_attempts == 1
        assert context.routes["work"].inflight == 0
        assert context.routes["dead"].inflight == 0


async def test_an_unknown_outcome_is_requeued_not_dead_lettered(broker: Broker, rmq: Rmq) -> None:
    channel, queues, _ = broker
    work, dead = unique("unk"), unique("unk.dead")
    queues += [work, dead]
    await channel.queue_declare(dead)
    attempts = 0

    def flaky(exchange: Exchange) -> None:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise OutcomeUnknownError("the connection died before the confirm")

    class Relay(RouteBuilder):
        def configure(self) -> None:
            (
                self.from_(rmq(f"rabbitmq:?queue={work}"))
                .route_id("relay")
                .error_handler(dead_letter_channel(rmq(f"rabbitmq:?routing_key={dead}")))
                .process(flaky)
                .to("mock:done")
            )

    context = Context()
    context.add_routes(Relay())
    async with context:
        channel.publish(b"x", "", work, Properties(delivery_mode=2))
        await context.mock("done").wait_for(1)
    assert attempts == 2
    assert await depth(channel, dead) == 0
