"""RabbitMQ end to end, at-least-once: eip against hand-written aio-pika and FastStream.

Every variant does the same work on the same broker, interleaved round by round: consume N
messages (~330 B of CRM customer JSON) from queue A, decode into the ``Customer`` Struct, map
to ``ErpCustomer``, encode, publish to queue B **persistent, with publisher confirms**, and ack
A only once that publish is confirmed. Queue A is filled before the clock starts; the run ends
when B holds N messages. Fresh queues each round.

- **eip**: ``from_("rabbitmq:?queue=A&prefetch=1000&concurrency=500").unmarshal(json(Customer))
  .transform(to_erp).marshal(json()).to("rabbitmq:?routing_key=B")``;
- **own client**: the limit in the same run, a hand-written relay on eip's own AMQP client with
  no engine (batched consume, pipelined confirms, multiple acks; see
  ``benchmarks/_rabbitmq_own_client.py``): ``rabbitmq-vs-own-client``;
- **quorum**: eip and the own-client relay again on quorum queues (``x-queue-type=quorum``;
  eip's consumer declares A with ``queue_type=quorum``): ``rabbitmq-quorum-vs-own-client``;
- **aio-pika (a)**: the best hand-written aio-pika relay (batches of 500, pipelined confirms,
  one multiple-ack per batch; see ``benchmarks/_rabbitmq_baselines.py``);
- **FastStream (b)**: FastStream 0.7 with its best settings (prefetch 100, msgspec decoder,
  confirms on, ack after the handler);
- informational: the naive aio-pika callback consumer, and **eip on aio-pika**: the same
  route with ``client=aio-pika`` on both endpoints (eip's consumer, settlement and producer on
  aio-pika's ``connect_robust`` instead of eip's own AMQP client), against the best
  hand-written aio-pika relay: what the engine costs over the library it then runs on.
"""

from __future__ import annotations

import asyncio
import cProfile
import pstats
import time
from typing import Any

import msgspec

from benchmarks import _rabbitmq_baselines as B
from benchmarks._crm import Customer, make_messages, to_erp
from benchmarks._rabbitmq_own_client import own_client_relay
from benchmarks._report import Variant, interleave, result_line, table
from benchmarks._robust import BrokerRetry
from eip import Context, RouteBuilder
from eip.dataformats import json

__all__ = ["eip_relay", "profile", "run"]

URL = "amqp://guest:guest@127.0.0.1:5672/"


class Relay(RouteBuilder):
    def __init__(
        self,
        source: str,
        target: str,
        client: str = "lean",
        url: str = URL,
        queue_type: str = "classic",
    ) -> None:
        super().__init__()
        self.source, self.target = source, target
        self.option = "" if client == "lean" else f"&client={client}"
        if url != URL:  # another vhost (a test's own)
            self.option += f"&url={url}"
        self.source_option = "" if queue_type == "classic" else f"&queue_type={queue_type}"

    def configure(self) -> None:
        (
            self.from_(
                f"rabbitmq:?queue={self.source}&prefetch=1000&concurrency=500"
                f"{self.option}{self.source_option}"
            )
            .route_id("relay")
            .unmarshal(json(Customer))
            .transform(lambda ex: to_erp(ex.body))
            .marshal(json())
            .to(f"rabbitmq:?routing_key={self.target}{self.option}")
        )


async def eip_relay(
    url: str, a: str, b: str, n: int, client: str = "lean", queue_type: str = "classic"
) -> float:
    context = Context(shutdown_timeout=30)
    context.add_routes(Relay(a, b, client, url, queue_type))
    # B's depth is watched as for the baselines: one passive declare per 50 ms on a connection
    # of its own, opened before the clock starts (a connection per look cost eip's side ~20
    # AMQP handshakes a second, on the client and on the broker, that the baselines did not pay)
    watch = await B._Watch.open(url)
    try:
        began = time.perf_counter()
        await context.start()  # the clock includes eip's start: compile, connect, declare
        elapsed = await watch.until(b, n, began, B.DEFAULT_TIMEOUT)
        await context.stop()
    finally:
        await watch.close()
    return elapsed


def _variant(
    name: str,
    relay: Any,
    messages: list[bytes],
    url: str = URL,
    declare_as: str = "classic",
    **options: Any,
) -> Variant:
    n = len(messages)

    async def one_round() -> float:
        a, b = B.unique_queue_names(2)
        await B.declare_queues(url, a, b, queue_type=declare_as)
        try:
            await B.fill_queue(url, a, messages)
            seconds: float = await relay(url, a, b, n, **options)
            state = await B.queue_state(url, a)
            assert state.messages == 0, f"{name}: {state.messages} left in A"
            assert (await B.queue_state(url, b)).messages >= n
            return seconds
        finally:
            await B.delete_queues(url, a, b)

    return Variant(name, one_round, n)


async def measure(quick: bool) -> dict[str, Any]:
    n = 10_000 if quick else 50_000
    messages = make_messages(n)
    assert all(isinstance(msgspec.json.decode(m, type=Customer), Customer) for m in messages[:10])
    variants = [
        _variant("eip", eip_relay, messages),
        _variant("own client", own_client_relay, messages, persistent=True),
        _variant("aio-pika best (a)", B.aio_pika_best, messages, persistent=True),
        _variant("FastStream best (b)", B.faststream_best, messages, persistent=True),
        _variant("aio-pika naive", B.aio_pika_naive, messages, persistent=True),
        _variant("eip on aio-pika", eip_relay, messages, client="aio-pika"),
        _variant("eip, quorum", eip_relay, messages, declare_as="quorum", queue_type="quorum"),
        _variant(
            "own client, quorum", own_client_relay, messages, declare_as="quorum", persistent=True
        ),
    ]
    # a round whose connection the (shared) broker closed is run once more, and said so
    return await interleave(
        variants, rounds=2 if quick else 3, warmup=False, retry=BrokerRetry(URL)
    )


def run(quick: bool) -> None:
    results = asyncio.run(measure(quick))
    eip = results["eip"].median
    rows = [
        [m.name, f"{m.median:,.0f}", f"{m.low:,.0f}..{m.high:,.0f}", f"{eip / m.median:.2f}"]
        for m in results.values()
    ]
    print("rabbitmq: consume A -> decode/map/encode -> publish B (persistent, confirmed) -> ack A")
    print(table(["variant", "msgs/s", "range", "eip / this"], rows))
    print()
    print(result_line("rabbitmq-vs-own-client", eip, results["own client"].median))
    print(result_line("rabbitmq-vs-aio-pika", eip, results["aio-pika best (a)"].median))
    print(result_line("rabbitmq-vs-faststream", eip, results["FastStream best (b)"].median))
    # informational: eip's route on client=aio-pika vs the best hand-written aio-pika relay
    print(
        result_line(
            "rabbitmq-aio-pika-client-vs-aio-pika",
            results["eip on aio-pika"].median,
            results["aio-pika best (a)"].median,
        )
    )
    print(
        result_line(
            "rabbitmq-quorum-vs-own-client",
            results["eip, quorum"].median,
            results["own client, quorum"].median,
        )
    )


def profile(quick: bool) -> None:
    """cProfile of eip's relay (the client process only), top 25 by own time: where eip's
    time goes per message, beside the broker's."""
    n = 10_000 if quick else 30_000

    async def main() -> cProfile.Profile:
        a, b = B.unique_queue_names(2)
        await B.declare_queues(URL, a, b)
        try:
            await B.fill_queue(URL, a, make_messages(n))
            profiler = cProfile.Profile()
            profiler.enable()
            seconds = await eip_relay(URL, a, b, n)
            profiler.disable()
        finally:
            await B.delete_queues(URL, a, b)
        print(f"cProfile of eip's rabbitmq relay, {n:,} messages: {n / seconds:,.0f} msgs/s")
        return profiler

    pstats.Stats(asyncio.run(main())).sort_stats("tottime").print_stats(25)
