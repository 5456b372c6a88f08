"""Fixtures for the RabbitMQ tests: a vhost of their own (see :mod:`.vhosts`), ``broker``, a
raw channel on the shared broker for setup and checks (helpers in :mod:`.support`), and
``client`` / ``rmq``: a contract test that takes ``rmq`` runs once per AMQP client, with its
endpoint URIs written ``rmq(f"rabbitmq:?queue={q}")``.

Tests outside this package import the vhost fixtures from ``tests.rabbitmq.vhosts`` instead."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from pytest_asyncio import fixture as async_fixture

from eip.components.rabbitmq._amqp import connect

from .support import CLIENTS, URL, Broker, Rmq, with_client
from .vhosts import broker_vhost, module_vhost

__all__ = ["broker", "broker_vhost", "client", "module_vhost", "rmq"]


@pytest.fixture(params=CLIENTS)
def client(request: pytest.FixtureRequest) -> str:
    """The AMQP client the endpoints under test run on: each test that uses it runs once
    per client (``test_x[lean]``, ``test_x[aio-pika]``)."""
    return str(request.param)


@pytest.fixture
def rmq(client: str) -> Rmq:
    """Puts the test's client on a ``rabbitmq:`` endpoint URI."""
    return lambda uri: with_client(uri, client)


@async_fixture
async def broker() -> AsyncIterator[Broker]:
    """A confirm channel on the default vhost, and lists the test appends its queue and
    exchange names to: they are deleted afterwards (on a fresh channel, since a test may have
    had the broker close this one)."""
    connection = await connect(URL)
    channel = await connection.channel(publisher_confirms=True)
    queues: list[str] = []
    exchanges: list[str] = []
    try:
        yield channel, queues, exchanges
    finally:
        cleanup = await connection.channel()
        for queue in queues:
            await cleanup.queue_delete(queue)
        for exchange in exchanges:
            await cleanup.exchange_delete(exchange)
        await connection.close()
