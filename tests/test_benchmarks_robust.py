"""A benchmark round whose broker connection someone else closes is retried once, and says so
(``benchmarks/_robust.py``); a second such failure fails the benchmark with one clear line.

Each test runs in a vhost of its own and has the broker close that vhost's connections
(``rabbitmqctl close_all_connections -p VHOST``, 320 CONNECTION_FORCED), as a shared broker's
operator or a restart would; nothing else on the broker is touched.
"""

from __future__ import annotations

import asyncio
import re
import socket

import aio_pika
import pytest

from benchmarks import _rabbitmq_baselines as B
from benchmarks._crm import make_messages
from benchmarks._report import BenchmarkFailed, Variant, interleave
from benchmarks._robust import NOTE_RE, BrokerRetry, broker_closed
from benchmarks.rabbitmq import _variant
from eip.components.rabbitmq._amqp import ConnectionClosedError, connect
from tests.rabbitmq.vhosts import BrokerVhost, broker_vhost, rabbitmqctl

__all__ = ["broker_vhost"]  # a fixture, used by name

pytestmark = pytest.mark.rabbitmq

REASON = "benchmark robustness test"


async def _vhost_queues(vhost: BrokerVhost) -> dict[str, int]:
    """Queue name -> ready messages in the vhost (one ``rabbitmqctl``, ~1-3 s)."""
    out = await rabbitmqctl("list_queues", "-p", vhost.name, "name", "messages")
    queues = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            queues[parts[0]] = int(parts[1])
    return queues


async def _close_mid_relay(vhost: BrokerVhost, closed: asyncio.Event) -> None:
    """Once the round's queue B is receiving relayed messages, close the vhost's
    connections, once."""
    target = None
    while target is None:  # the round's queues are declared with fresh names: find B
        target = next((q for q in await _vhost_queues(vhost) if q.endswith("-b")), None)
    while True:  # relayed messages arriving: the relay is mid-round
        if (await B.queue_state(vhost.url, target)).messages >= 500:
            break
        await asyncio.sleep(0.05)
    await vhost.close_connections(REASON)
    closed.set()


@pytest.mark.timeout(240)
async def test_a_relay_round_whose_connection_the_broker_closes_is_retried_once(
    broker_vhost: BrokerVhost, capsys: pytest.CaptureFixture[str]
) -> None:
    # The benchmark's own round of the best hand-written aio-pika relay (fill A, relay to B
    # with confirms, check A is empty and B full, delete both), run by interleave as the
    # rabbitmq benchmark runs it, on this test's vhost.
    messages = make_messages(30_000)
    variant = _variant(
        "aio-pika best (a)", B.aio_pika_best, messages, url=broker_vhost.url, persistent=True
    )
    closed = asyncio.Event()
    closer = asyncio.create_task(_close_mid_relay(broker_vhost, closed))
    try:
        results = await interleave(
            [variant], rounds=1, warmup=False, retry=BrokerRetry(broker_vhost.url)
        )
    finally:
        closer.cancel()
        await asyncio.gather(closer, return_exceptions=True)

    assert closed.is_set()  # the connections really were closed during the round
    notes = [line for line in capsys.readouterr().out.splitlines() if NOTE_RE.match(line)]
    assert len(notes) == 1, notes
    assert re.fullmatch(
        rf"round 1, aio-pika best \(a\): the broker closed the connection "
        rf"\(.*320 CONNECTION_FORCED - {REASON}.*\); retrying the round once",
        notes[0],
    ), notes[0]
    measured = results["aio-pika best (a)"]
    assert len(measured.rates) == 1  # the retried round, measured once
    assert measured.rates[0] > 0
    assert await _vhost_queues(broker_vhost) == {}  # both attempts deleted their queues


@pytest.mark.timeout(120)
async def test_a_second_close_in_the_same_round_fails_the_benchmark_in_one_line(
    broker_vhost: BrokerVhost, capsys: pytest.CaptureFixture[str]
) -> None:
    queue = "eip-robust-watched"
    await B.declare_queues(broker_vhost.url, queue)
    watching = asyncio.Event()
    attempts = 0

    async def watch_round() -> float:
        """Polls a queue's depth on one connection, as the benchmarks' watch does, forever."""
        nonlocal attempts
        attempts += 1
        connection = await aio_pika.connect(broker_vhost.url)
        try:
            channel = await connection.channel()
            watching.set()
            while True:
                await channel.declare_queue(queue, passive=True)
                await asyncio.sleep(0.05)
        finally:
            await connection.close()

    async def close_each_attempt() -> None:
        for _ in range(2):
            await watching.wait()
            watching.clear()
            await broker_vhost.close_connections(REASON)

    closer = asyncio.create_task(close_each_attempt())
    with pytest.raises(BenchmarkFailed) as failed:
        await interleave(
            [Variant("watch", watch_round, 1)],
            rounds=2,
            warmup=False,
            retry=BrokerRetry(broker_vhost.url),
        )
    await closer

    assert attempts == 2
    message = str(failed.value)
    assert "\n" not in message
    assert message.startswith("round 1, watch: the broker closed the connection (")
    assert f"320 CONNECTION_FORCED - {REASON}" in message
    assert message.endswith(", again after one retry")
    out = capsys.readouterr().out
    assert [line for line in out.splitlines() if NOTE_RE.match(line)] == [
        message.replace(", again after one retry", "; retrying the round once")
    ]


async def test_errors_of_the_benchmark_itself_are_not_retried() -> None:
    calls = 0

    async def broken_round() -> float:
        nonlocal calls
        calls += 1
        raise AssertionError("eip: 3 left in A")

    with pytest.raises(AssertionError, match="3 left in A"):
        await interleave([Variant("eip", broken_round, 1)], rounds=1, retry=BrokerRetry("x"))
    assert calls == 1
    assert broker_closed(AssertionError("eip: 3 left in A")) is None
    # closed by this process itself: a bug in the benchmark, not the broker
    assert broker_closed(ConnectionClosedError(200, "closed by the client")) is None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_a_refused_connection_counts_and_a_broker_that_stays_away_fails_clearly() -> None:
    url = f"amqp://guest:guest@127.0.0.1:{_free_port()}/"
    with pytest.raises(ConnectionRefusedError) as refused:
        await connect(url, connect_timeout=5)
    reason = broker_closed(refused.value)
    assert reason is not None
    assert reason.startswith("the broker refused the connection (")
    # inside a task group's ExceptionGroup, as anyio-based code raises it
    assert broker_closed(ExceptionGroup("round", [ValueError("x"), refused.value])) == reason

    retry = BrokerRetry(url, wait=1.0)
    with pytest.raises(BenchmarkFailed, match=r"127\.0\.0\.1:\d+/ accepted no connection for 1 s"):
        await retry.until_broker_accepts()
