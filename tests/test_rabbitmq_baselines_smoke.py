"""Smoke test of the RabbitMQ baselines against the real broker (no timing assertions).

Each baseline relays 500 messages from a fresh queue A to a fresh queue B. Afterwards every
message must be on B, and A must hold nothing: no ready messages and no consumer. Unacked
messages are requeued when the relay's channel closes, so an empty A (looked at a few times)
means every message was acked. The queues are deleted afterwards. Without a broker it fails
(CI starts RabbitMQ).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable

import aio_pika
import msgspec
import pytest
from aiormq.exceptions import ChannelNotFoundEntity

from benchmarks import _rabbitmq_baselines as rb
from benchmarks._crm import Customer, ErpCustomer, make_messages, to_erp
from benchmarks._rabbitmq_own_client import own_client_relay

URL = os.environ.get("EIP_AMQP_URL", rb.DEFAULT_URL)
N = 500

Baseline = Callable[[str, str, str, int], Awaitable[float]]


@pytest.fixture
async def queues() -> AsyncIterator[tuple[str, str]]:
    a, b = rb.unique_queue_names()
    await rb.declare_queues(URL, a, b)
    try:
        yield a, b
    finally:
        await rb.delete_queues(URL, a, b)
    for name in (a, b):
        with pytest.raises(ChannelNotFoundEntity):
            await rb.queue_state(URL, name)


async def _drain(queue: str) -> list[bytes]:
    """Every message on ``queue`` (consumed with auto-ack), in order."""
    connection = await aio_pika.connect(URL)
    try:
        channel = await connection.channel()
        q = await channel.declare_queue(queue, passive=True)
        bodies = []
        while (message := await q.get(no_ack=True, fail=False)) is not None:
            bodies.append(message.body)
        return bodies
    finally:
        await connection.close()


@pytest.mark.parametrize(
    "baseline",
    [rb.aio_pika_naive, rb.aio_pika_best, rb.faststream_best, own_client_relay],
    ids=["aio_pika_naive", "aio_pika_best", "faststream_best", "own_client_relay"],
)
async def test_baseline_relays_every_message_and_acks_all(
    baseline: Baseline, queues: tuple[str, str]
) -> None:
    a, b = queues
    messages = make_messages(N)
    await rb.fill_queue(URL, a, messages)
    assert (await rb.queue_state(URL, a)).messages == N

    seconds = await baseline(URL, a, b, N)
    assert seconds > 0

    assert (await rb.queue_state(URL, b)) == rb.QueueState(messages=N, consumers=0)
    for _ in range(5):  # an unacked message would come back to A once the channel is gone
        assert (await rb.queue_state(URL, a)) == rb.QueueState(messages=0, consumers=0)
        await asyncio.sleep(0.05)

    decode = msgspec.json.Decoder(Customer).decode
    expected = sorted(msgspec.json.encode(to_erp(decode(m))) for m in messages)
    relayed = await _drain(b)
    assert sorted(relayed) == expected
    assert msgspec.json.decode(relayed[0], type=ErpCustomer).customer_no.startswith("C")
