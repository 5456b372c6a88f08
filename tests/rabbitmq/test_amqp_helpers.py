"""Shared helpers for the AMQP client tests (no tests here).

The tests run against the real RabbitMQ on 127.0.0.1:5672 (guest/guest). Every test uses
queue and exchange names with a fresh uuid and deletes them afterwards, so that they can run
next to other tests sharing the broker. Without a broker they fail: CI starts RabbitMQ
(``.ci/run``), and a green run must mean the client was really exercised.
"""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from eip.components.rabbitmq._amqp import Channel, Connection, Delivery, connect

URL = "amqp://guest:guest@127.0.0.1:5672/"


#: Marks the tests that talk to the real broker (they fail, never skip, when it is down).
requires_broker = pytest.mark.rabbitmq


def unique(prefix: str = "amqp-test") -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


@pytest.fixture
async def conn() -> AsyncIterator[Connection]:
    connection = await connect(URL, client_name=unique("eip-amqp-test"))
    try:
        yield connection
    finally:
        await connection.close()


@pytest.fixture
async def queue(conn: Connection) -> AsyncIterator[str]:
    """A fresh non-durable queue, deleted afterwards (on its own channel)."""
    name = unique()
    channel = await conn.channel()
    await channel.queue_declare(name, durable=False)
    await channel.close()
    try:
        yield name
    finally:
        await delete_queues(name)


async def delete_queues(*names: str) -> None:
    connection = await connect(URL, client_name="eip-amqp-test-cleanup")
    try:
        channel = await connection.channel()
        for name in names:
            await channel.queue_delete(name)
    finally:
        await connection.close()


class Collector:
    """An ``on_deliveries`` callback that keeps every batch and can wait for a count."""

    def __init__(self, ack: bool = False, channel: Channel | None = None) -> None:
        self.deliveries: list[Delivery] = []
        self.batches: list[int] = []
        self._channel = channel
        self._ack = ack
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    def __call__(self, batch: list[Delivery]) -> None:
        self.deliveries.extend(batch)
        self.batches.append(len(batch))
        if self._ack and self._channel is not None:
            self._channel.ack(batch[-1].delivery_tag, multiple=True)
        for count, future in self._waiters:
            if len(self.deliveries) >= count and not future.done():
                future.set_result(None)

    async def wait_for(self, count: int, timeout: float = 20.0) -> list[Delivery]:
        if len(self.deliveries) < count:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append((count, future))
            await asyncio.wait_for(future, timeout)
        return self.deliveries


async def eventually(
    check: Callable[[], Awaitable[bool]], timeout: float = 10.0, interval: float = 0.05
) -> None:
    for _ in range(int(timeout / interval)):
        if await check():
            return
        await asyncio.sleep(interval)
    raise TimeoutError(f"condition not met within {timeout} s")


def close_broker_side(connection: Connection, reason: str = "closed by test") -> None:
    """Close ``connection`` from the broker with ``rabbitmqctl close_connection``; only this
    connection (found by its local port), never the others sharing the broker."""
    transport = connection._transport
    assert transport is not None
    port = transport.get_extra_info("sockname")[1]
    listing = subprocess.run(
        ["rabbitmqctl", "-q", "list_connections", "--no-table-headers", "pid", "name"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    for line in listing.splitlines():
        pid, _, name = line.partition("\t")
        if name.startswith(f"127.0.0.1:{port} ->"):
            subprocess.run(
                ["rabbitmqctl", "-q", "close_connection", pid, reason],
                capture_output=True,
                check=True,
                timeout=30,
            )
            return
    raise AssertionError(f"connection from port {port} not found in {listing!r}")
