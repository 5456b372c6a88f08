"""Reload a RabbitMQ route while 10,000 messages flow through it: none lost, duplicates counted.

The route file is rewritten mid-stream (the header it stamps goes from v1 to v2) and reloaded
into the running context: the relay drains and is swapped, while a second RabbitMQ route in
another file, unchanged, keeps its consumer and its connection.
"""

from __future__ import annotations

import asyncio
import collections
import functools
from pathlib import Path

from eip.cli import _context_for
from eip.components.rabbitmq._amqp import Delivery, Properties
from eip.routefiles import route_roots
from eip.runtime.reload import Reloader

from .support import Broker, fill, unique, until

COUNT = 10_000

RELAY = """
from eip import RouteBuilder

VERSION = "{version}"


class Relay(RouteBuilder):
    def configure(self) -> None:
        (
            self.from_("rabbitmq:?queue={inbox}&prefetch=200")
            .route_id("relay")
            .set_header("version", VERSION)
            .to("rabbitmq:?routing_key={outbox}")
        )
"""

BYSTANDER = """
from eip import RouteBuilder


class Bystander(RouteBuilder):
    def configure(self) -> None:
        self.from_("rabbitmq:?queue={side_in}").route_id("bystander").to(
            "rabbitmq:?routing_key={side_out}"
        )
"""


async def test_reloading_a_rabbitmq_route_under_load_loses_nothing(
    broker: Broker, tmp_path: Path
) -> None:
    channel, queues, _ = broker
    inbox, outbox, side_in, side_out = (unique(n) for n in ("in", "out", "side.in", "side.out"))
    queues += [inbox, outbox, side_in, side_out]
    for queue in (inbox, outbox, side_in, side_out):
        await channel.queue_declare(queue)
    routes = tmp_path / "reload_routes"
    routes.mkdir()
    relay = routes / "relay.py"
    relay.write_text(RELAY.format(version="v1", inbox=inbox, outbox=outbox))
    (routes / "bystander.py").write_text(BYSTANDER.format(side_in=side_in, side_out=side_out))
    paths = [str(routes)]
    context = _context_for(paths, shutdown_timeout=10.0)
    reloader = Reloader(context, functools.partial(_context_for, paths, 10.0), route_roots(paths))
    seen: collections.Counter[str] = collections.Counter()
    versions: collections.Counter[str] = collections.Counter()

    def take(deliveries: list[Delivery]) -> None:
        for delivery in deliveries:
            props = delivery.properties
            seen[str(props.message_id)] += 1
            versions[(props.headers or {}).get("version", "none")] += 1

    tag = await channel.basic_consume(outbox, take, no_ack=True)
    async with context:
        bystander = context.routes["bystander"]
        bystander_consumer = bystander.consumer
        bystander_connection = bystander_consumer.link.connection  # type: ignore[union-attr]
        feeding = asyncio.create_task(fill(channel, inbox, COUNT))
        await until(lambda: len(seen) >= COUNT // 4, timeout=60, what="a quarter relayed")
        relay.write_text(RELAY.format(version="v2", inbox=inbox, outbox=outbox))
        report = await reloader.reload()
        assert report.ok, report.error
        assert report.changed == ["relay"]
        assert report.unchanged == ["bystander"]
        assert report.added == report.removed == []
        await feeding
        await until(lambda: len(seen) >= COUNT, timeout=90, what="every message relayed")
        await asyncio.sleep(0.5)  # a late duplicate would arrive now
        assert context.routes["bystander"] is bystander
        assert bystander.consumer is bystander_consumer
        assert bystander_consumer.link.connection is bystander_connection  # type: ignore[union-attr]
        channel.publish(b"side", "", side_in, Properties(message_id="side-1"))
        await until(
            lambda: _depth(channel, side_out, 1), timeout=10, what="the bystander still relays"
        )
    await channel.basic_cancel(tag)
    lost = [f"m{n}" for n in range(COUNT) if f"m{n}" not in seen]
    duplicates = sum(seen.values()) - len(seen)
    aborted = sum(report.aborted.values())
    print(
        f"reload under load: {COUNT} sent, {len(lost)} lost, {duplicates} duplicates, "
        f"{aborted} aborted, versions {dict(versions)}, swap {report.seconds:.2f}s"
    )
    assert lost == []
    assert duplicates <= aborted  # only an exchange aborted at the drain deadline comes twice
    assert versions["v1"] > 0  # swapped mid-stream
    assert versions["v2"] > 0
    assert set(versions) == {"v1", "v2"}


async def _depth(channel: object, queue: str, count: int) -> bool:
    found = await channel.queue_declare(queue, passive=True)  # type: ignore[attr-defined]
    return bool(found[1] >= count)
