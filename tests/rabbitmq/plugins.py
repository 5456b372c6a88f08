"""Broker plugins the tests need, enabled by the suite itself when the broker lacks them.

The consistent-hash exchange (``x-consistent-hash``) comes with RabbitMQ but is off by default
(plugin ``rabbitmq_consistent_hash_exchange``). :func:`consistent_hash_exchange`, a session
fixture, declares a throwaway exchange of that type; if the broker does not know the type (it
closes the connection with 503 COMMAND_INVALID "unknown exchange type"), it runs
``rabbitmq-plugins enable rabbitmq_consistent_hash_exchange`` (~5 s, once; the broker keeps it
enabled across restarts) and checks again. CI runs the same command up front (``.ci/run``), so
the fixture normally costs one declaration.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import subprocess
import uuid

import pytest

from eip.components.rabbitmq._amqp import AmqpError, connect

__all__ = ["CONSISTENT_HASH_PLUGIN", "consistent_hash_exchange", "ensure_consistent_hash"]

URL = "amqp://guest:guest@127.0.0.1:5672/"
CONSISTENT_HASH_PLUGIN = "rabbitmq_consistent_hash_exchange"


async def _knows_consistent_hash(url: str) -> bool:
    """Declare (and delete) a throwaway x-consistent-hash exchange; False if the type is
    unknown. The broker answers an unknown type by closing the connection, so it is ours."""
    connection = await connect(url, client_name="eip-test-plugin-check")
    name = f"eip.test.plugin-check.{uuid.uuid4().hex[:8]}"
    try:
        channel = await connection.channel()
        await channel.exchange_declare(name, "x-consistent-hash", durable=False)
        await channel.exchange_delete(name)
        return True
    except AmqpError as exc:
        if "unknown exchange type" in str(exc):
            return False
        raise
    finally:
        if connection.is_open:
            await connection.close()


def _check(url: str) -> bool:
    # In a thread of its own: the caller may be inside a running event loop.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, _knows_consistent_hash(url)).result(timeout=30)


def ensure_consistent_hash(url: str = URL) -> None:
    """Make sure the broker has the consistent-hash exchange type, enabling its plugin if not."""
    if _check(url):
        return
    result = subprocess.run(
        ["rabbitmq-plugins", "enable", CONSISTENT_HASH_PLUGIN],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"rabbitmq-plugins enable {CONSISTENT_HASH_PLUGIN} failed ({result.returncode}): "
            f"{result.stderr.strip() or result.stdout.strip()}"
        )
    if not _check(url):
        raise RuntimeError(
            f"{CONSISTENT_HASH_PLUGIN} is enabled but the broker still does not know "
            "x-consistent-hash"
        )


@pytest.fixture(scope="session")
def consistent_hash_exchange() -> None:
    """The broker knows ``x-consistent-hash`` (its plugin enabled if it was not)."""
    ensure_consistent_hash()
