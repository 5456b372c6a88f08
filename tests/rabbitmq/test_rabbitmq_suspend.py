"""Suspend and resume a RabbitMQ route through the control API while 2,000 messages flow: it
stops consuming, the other route on the same connection goes on, nothing is lost or doubled on
resume, and a shutdown while suspended releases the shared connection once, not twice."""

from __future__ import annotations

import asyncio
import collections
import logging

import httpx
import pytest

from eip import Context
from eip.components.rabbitmq._amqp import Delivery
from eip.server.management import ManagementServer

from .support import Broker, depth, fill, routes, unique, until

COUNT = 2_000
TOKEN = "rabbit-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def test_suspend_and_resume_a_rabbitmq_route_under_load(
    broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    channel, queues, _ = broker
    inbox, outbox, side = unique("suspend.in"), unique("suspend.out"), unique("suspend.side")
    queues += [inbox, outbox, side]
    for queue in (inbox, outbox, side):
        await channel.queue_declare(queue)
    seen: collections.Counter[str] = collections.Counter()

    def take(deliveries: list[Delivery]) -> None:
        for delivery in deliveries:
            seen[str(delivery.properties.message_id)] += 1

    tag = await channel.basic_consume(outbox, take, no_ack=True)
    context = Context(shutdown_timeout=10, metrics=True)
    context.add_routes(
        routes(
            lambda r: (
                r.from_(f"rabbitmq:?queue={inbox}&prefetch=50")
                .route_id("relay")
                .to(f"rabbitmq:?routing_key={outbox}"),
                r.from_(f"rabbitmq:?queue={side}").route_id("side").to("mock:side"),
            )
        )
    )
    server = ManagementServer(context, "127.0.0.1", 0, token=TOKEN)
    await server.start()
    caplog.set_level(logging.WARNING)
    try:
        await context.start()
        (link,) = context.component("rabbitmq").links.values()  # type: ignore[attr-defined]
        users = link._users  # both consumers and the producer share the connection
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
            filling = asyncio.create_task(fill(channel, inbox, COUNT))
            await until(lambda: len(seen) >= 300, what="300 relayed")
            suspended = await client.post("/routes/relay/suspend", headers=AUTH)
            assert suspended.json() == {"id": "relay", "status": "suspended"}
            await filling
            relayed = len(seen)
            assert relayed < COUNT
            await asyncio.sleep(0.5)
            assert len(seen) == relayed  # no message taken while suspended
            assert await depth(channel, inbox) == COUNT - relayed  # they wait in the queue
            # the other route on the same connection is untouched
            await fill(channel, side, 5)
            await context.mock("side").wait_for(5)
            status = (await client.get("/routes/relay")).json()
            assert (status["status"], status["problem"]) == ("suspended", "route suspended")
            resumed = await client.post("/routes/relay/resume", headers=AUTH)
            assert resumed.json() == {"id": "relay", "status": "started"}
            await until(lambda: len(seen) == COUNT, timeout=30, what="all relayed")
            await asyncio.sleep(0.3)  # a duplicate would still be on its way
            assert set(seen) == {f"m{n}" for n in range(COUNT)}  # none lost
            assert sum(seen.values()) == COUNT  # none relayed twice
            # suspended again, the route is shut down with the rest: the shared connection is
            # released once (a second stop would release it twice, under the side route)
            assert (await client.post("/routes/relay/suspend", headers=AUTH)).status_code == 200
        assert link._users == users - 1  # the suspended consumer gave its share back
        await context.stop()
        assert link._users == 0
        problems = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert problems == []
    finally:
        await context.stop()
        await server.stop()
        await channel.basic_cancel(tag)
