"""Helpers shared by the rabbitmq: component tests (no tests here).

The tests set up and check queues over a raw channel of our own AMQP client (the ``broker``
fixture in ``conftest.py`` gives one), wait for the engine to move messages, and look at queue
depths. These helpers do that one way, so a test reads as what it checks::

    async def test_x(broker: Broker) -> None:
        channel, queues, _ = broker
        queue = unique("x")
        queues.append(queue)  # deleted after the test
        ...
        await until(lambda: depth_is(channel, queue, 0), what="all consumed")

Every wait is bounded: :func:`until` fails the test with ``what`` when its time is up.
"""

from __future__ import annotations

import asyncio
import inspect
import uuid
from collections.abc import Callable
from typing import Any

from eip import RouteBuilder
from eip.components.rabbitmq._amqp import Channel, Properties

__all__ = [
    "CLIENTS",
    "URL",
    "Broker",
    "Rmq",
    "dead_letter_setup",
    "depth",
    "depth_at_least",
    "depth_is",
    "drain_ids",
    "fill",
    "routes",
    "unique",
    "until",
    "with_client",
]

#: The shared broker's default vhost (tests that fault connections use their own vhost).
URL = "amqp://guest:guest@127.0.0.1:5672/"

#: What the ``broker`` fixture yields: a confirm channel, and the queues and exchanges the
#: test names there, deleted after it.
Broker = tuple[Channel, list[str], list[str]]


#: The AMQP clients the contract tests run on (the ``client`` fixture's parameters).
CLIENTS = ("lean", "aio-pika")

#: What the ``rmq`` fixture is: puts the test's client on a ``rabbitmq:`` URI.
Rmq = Callable[[str], str]


def with_client(uri: str, client: str) -> str:
    """``uri`` on ``client``: the lean client is the default, so its URIs stay as written
    (the form users write); any other gets ``client=...``."""
    if client == "lean":
        return uri
    return f"{uri}{'&' if '?' in uri else '?'}client={client}"


def unique(name: str) -> str:
    """``eip.test.<name>.<8 hex>``: a queue or exchange name no other test run uses."""
    return f"eip.test.{name}.{uuid.uuid4().hex[:8]}"


def routes(configure: Callable[..., object]) -> RouteBuilder:
    """A builder whose ``configure`` is ``configure(builder)``: a test's routes in a lambda
    (typed loosely: a lambda binding a loop variable by default argument has no exact type)."""

    class Inline(RouteBuilder):
        def configure(self) -> None:
            configure(self)

    return Inline()


async def depth(channel: Channel, queue: str) -> int:
    """How many ready messages ``queue`` holds (unacked ones are not counted)."""
    return (await channel.queue_declare(queue, passive=True))[1]


async def depth_is(channel: Channel, queue: str, count: int) -> bool:
    """Whether ``queue`` holds exactly ``count`` ready messages: a check for :func:`until`."""
    return await depth(channel, queue) == count


async def depth_at_least(channel: Channel, queue: str, count: int) -> bool:
    """Whether ``queue`` holds ``count`` ready messages or more: a check for :func:`until`."""
    return await depth(channel, queue) >= count


async def until(
    check: Callable[..., object], timeout: float = 10.0, what: str = "condition"
) -> None:
    """Poll ``check()`` (a plain function, or one returning an awaitable) every 20 ms until it
    is true; fail with ``what`` after ``timeout`` seconds, so no wait is unbounded. (Typed
    loosely, like :func:`routes`, for lambdas that bind a loop variable by default argument.)"""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        assert loop.time() < deadline, f"{what} not reached within {timeout}s"
        await asyncio.sleep(0.02)


async def dead_letter_setup(
    channel: Channel,
    queues: list[str],
    exchanges: list[str],
    names: tuple[str, str, str] = ("work", "dead", "dlx"),
) -> tuple[str, str, str]:
    """Unique ``(work, dead, dlx)`` names from ``names``, with fanout exchange ``dlx`` bound
    to queue ``dead``; the work queue is left to the test (or its endpoint) to declare. All
    three go on the ``broker`` fixture's lists, to be deleted after the test."""
    work, dead, dlx = (unique(name) for name in names)
    queues += [work, dead]
    exchanges.append(dlx)
    await channel.exchange_declare(dlx, "fanout")
    await channel.queue_declare(dead)
    await channel.queue_bind(dead, dlx)
    return work, dead, dlx


async def fill(
    channel: Channel,
    queue: str,
    count: int,
    ids: bool = True,
    arguments: dict[str, Any] | None = None,
) -> None:
    """Declare ``queue`` and publish ``count`` persistent messages, confirmed. With ``ids``
    message ``n`` is body ``b"n"`` with id ``m<n>``; without, every body is the same and none
    has an id (what a broker drop must not turn into poison)."""
    await channel.queue_declare(queue, arguments=arguments)
    seq = 0
    for n in range(count):
        properties = Properties(delivery_mode=2, message_id=f"m{n}" if ids else None)
        seq = channel.publish(b"%d" % n if ids else b"same body", "", queue, properties)
        if n % 1000 == 999:  # keep the confirms window bounded
            await channel.wait_confirm(seq)
    await channel.wait_confirm(seq)


async def drain_ids(channel: Channel, queue: str, expected: int, timeout: float = 60) -> list[str]:
    """Every message id in ``queue`` (consumed with no ack), once ``expected`` distinct ones
    came, duplicates included; the messages must carry ids (see :func:`fill`)."""
    ids: list[str] = []
    seen: set[str] = set()
    enough = asyncio.Event()

    def take(deliveries: list[Any]) -> None:
        for delivery in deliveries:
            ids.append(delivery.properties.message_id)
            seen.add(delivery.properties.message_id)
        if len(seen) >= expected:
            enough.set()

    tag = await channel.basic_consume(queue, take, no_ack=True)
    await asyncio.wait_for(enough.wait(), timeout)
    await asyncio.sleep(0.3)  # a duplicate may still be on its way
    await channel.basic_cancel(tag)
    return ids
