"""Several eip instances on one RabbitMQ and one PostgreSQL: correctness at full size, and the
costs that decide how throughput scales with instances.

``python -m benchmarks multi_instance`` (``--quick``: a fifth of the size, one round each):

1. **deployment** (:func:`tests.multi_instance_support.run_deployment`): three ``eip run``
   processes, six quorum queues behind a consistent-hash exchange, single active consumer,
   500 customers x 40 updates = 20,000 events plus 2,000 duplicates (quick: 500 x 8), one
   instance SIGKILLed at 35% and restarted. Lost, doubled and out-of-order events, groups
   completed once, the time, and the CPU per message of the broker (``beam.smp``), PostgreSQL
   (every ``postgres`` process) and the eip instances, from ``/proc``.
2. **claim stores** (the suite's size, 2,200 messages, each store ``ROUNDS`` times): the same
   deployment with the transactional idempotent repository against the plain
   (lease-based) one, whose claim, effect and confirmation commit separately: what a SIGKILL
   costs each (events lost or doubled, groups left incomplete).
3. **PostgreSQL per claim**: N calls one after another and from 6 concurrent workers (the
   six queues' consumers), interleaved (each round starts with another variant), medians: a
   bare round trip and a bare commit (the two costs everything else is made of), the plain
   claim (``add`` + ``confirm``: two commits), the plain claim with a separate effect (three
   commits), and the transactional claim with its effect (one commit). Milliseconds per call
   and calls/s.
4. **broker per message**: N persistent, confirmed messages published and consumed (raw
   client) through one classic queue, one quorum queue, and the partitioned layout (topic ->
   exchange binding -> consistent hash -> 6 quorum queues with single active consumer),
   consumed fast (prefetch 500, multiple acks), acked one by one, and paced at 200 msgs/s
   (each queue one message at a time, as the deployment consumes); the broker's CPU per
   message less its background rate sampled just before, medians over the rounds.

The broker and PostgreSQL are shared with whatever else runs on the machine, so their CPU
figures are upper bounds; compare them within one run.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from benchmarks._report import table, value_line
from benchmarks._robust import BrokerRetry
from eip.components.rabbitmq._amqp import Delivery, Properties, connect
from eip.stores import PostgresIdempotentRepository, PostgresTransactionalIdempotentRepository
from tests.multi_instance_support import AMQP_URL, PG_DSN, CpuMeter, Plan, Report, run_deployment
from tests.rabbitmq.plugins import ensure_consistent_hash

__all__ = ["run"]

FULL = Plan(customers=500, updates=40, timeout=900.0)
QUICK = Plan(customers=500, updates=8, timeout=300.0)
STORES_PLAN = Plan(customers=500, updates=4, timeout=180.0)
WORKERS = 6
PACE = 200  # msgs/s of the paced broker layout: about what the deployment consumes here
IDLE = 1.0  # seconds of the broker's background CPU sampled before each broker round


def run(quick: bool) -> None:
    asyncio.run(main(quick))


async def main(quick: bool) -> None:
    ensure_consistent_hash()
    results: list[str] = []
    rounds = 1 if quick else 3

    print("== deployment ==")
    with tempfile.TemporaryDirectory() as workdir:
        report = await run_deployment(QUICK if quick else FULL, Path(workdir))
    print(report.summary())
    if report.problems:
        print("PROBLEMS:", report.problems)
    results += deployment_lines("multi-instance", report)

    print("\n== claim stores under a SIGKILL ==")
    rows = []
    for store in ("transactional", "lease"):
        lost = incomplete = 0
        for n in range(rounds):
            with tempfile.TemporaryDirectory() as workdir:
                plan = dataclasses.replace(STORES_PLAN, store=store, seed=1000 + n)
                outcome = await run_deployment(plan, Path(workdir))
            rows.append(store_row(store, outcome))
            lost += len(outcome.lost) + len(outcome.doubled)
            incomplete += plan.groups - outcome.groups_completed
        results.append(value_line(f"multi-instance-{store}-lost-or-doubled", lost, "events"))
        results.append(
            value_line(f"multi-instance-{store}-groups-incomplete", incomplete, "groups")
        )
    print(
        table(
            ["store", "lost", "doubled", "out of order", "groups done", "group inputs lost"],
            rows,
        )
    )

    print("\n== PostgreSQL per claim ==")
    claims = 500 if quick else 2_000
    claim_rows, claim_lines = await claim_costs(claims, rounds)
    print(
        table(["variant", "1 worker ms/claim (rounds)", f"{WORKERS} workers claims/s"], claim_rows)
    )
    results += claim_lines

    print("\n== broker CPU per message ==")
    messages = 5_000 if quick else 20_000
    broker_rows, broker_lines = await broker_costs(messages, rounds)
    print(table(["layout", "broker us/msg", "per-round"], broker_rows))
    results += broker_lines

    print()
    for line in results:
        print(line)


def deployment_lines(name: str, report: Report) -> list[str]:
    rate = report.published / report.processing_seconds if report.processing_seconds else 0.0
    return [
        value_line(f"{name}-msgs-per-s", rate, "msgs/s"),
        value_line(f"{name}-seconds", report.processing_seconds, "s"),
        value_line(f"{name}-lost", len(report.lost), "events"),
        value_line(f"{name}-doubled", len(report.doubled), "events"),
        value_line(f"{name}-order-violations", len(report.order_violations), "customers"),
        value_line(f"{name}-groups-completed-once", report.groups_completed, "groups"),
        value_line(f"{name}-broker-cpu", report.per_message(report.broker_cpu), "us/msg"),
        value_line(f"{name}-broker-cpu-net", report.per_message(report.broker_cpu_net), "us/msg"),
        value_line(f"{name}-postgres-cpu", report.per_message(report.postgres_cpu), "us/msg"),
        value_line(
            f"{name}-postgres-cpu-net", report.per_message(report.postgres_cpu_net), "us/msg"
        ),
        value_line(f"{name}-instances-cpu", report.per_message(report.instances_cpu), "us/msg"),
    ]


def store_row(store: str, report: Report) -> list[str]:
    group_inputs = report.plan.groups * 20
    missing_groups = report.plan.groups - report.groups_completed
    return [
        store,
        str(len(report.lost)),
        str(len(report.doubled)),
        str(len(report.order_violations)),
        f"{report.groups_completed}/{report.plan.groups}",
        f"{missing_groups} groups" if missing_groups else f"0 of {group_inputs}",
    ]


# -- PostgreSQL per claim ----------------------------------------------------------------------
ClaimOnce = Callable[[str], Awaitable[None]]


async def claim_costs(claims: int, rounds: int) -> tuple[list[list[str]], list[str]]:
    uid = uuid.uuid4().hex[:8]
    effects = f"eip_bench_{uid}_effects"
    plain = PostgresIdempotentRepository(PG_DSN, table=f"eip_bench_{uid}_plain")
    transactional = PostgresTransactionalIdempotentRepository(
        PG_DSN, table=f"eip_bench_{uid}_tx", pool_size=WORKERS + 2
    )
    await plain.start()
    await transactional.start()
    insert = f'INSERT INTO "{effects}" (id) VALUES ($1)'
    await plain.pool.execute(f'CREATE TABLE "{effects}" (id text NOT NULL)')

    async def plain_claim(key: str) -> None:
        if await plain.add(key):
            await plain.confirm(key)

    async def plain_with_effect(key: str) -> None:
        if await plain.add(key):
            await plain.pool.execute(insert, key)
            await plain.confirm(key)

    async def transactional_with_effect(key: str) -> None:
        if await transactional.add(key):
            await transactional.connection(key).execute(insert, key)
            await transactional.confirm(key)

    async def round_trip(key: str) -> None:
        await plain.pool.fetchval("SELECT $1::text", key)

    async def one_commit(key: str) -> None:
        await plain.pool.execute(insert, key)

    variants: dict[str, ClaimOnce] = {
        "a round trip (SELECT, no commit)": round_trip,
        "one commit (INSERT, autocommit)": one_commit,
        "plain claim (add + confirm: 2 commits)": plain_claim,
        "plain claim + effect (3 commits)": plain_with_effect,
        "transactional claim + effect (1 commit)": transactional_with_effect,
    }
    sequential: dict[str, list[float]] = {name: [] for name in variants}
    concurrent: dict[str, list[float]] = {name: [] for name in variants}
    try:
        for round_no in range(rounds + 1):  # round 0 warms up
            names = list(variants)
            names = names[round_no % len(names) :] + names[: round_no % len(names)]
            for name in names:  # each round starts with another variant
                once = variants[name]
                keys = [f"{round_no}-{name[:5]}-{n}" for n in range(claims)]
                took = await timed(once, keys, 1)
                if round_no:
                    sequential[name].append(took / claims * 1000)
                keys = [f"{round_no}-{name[:5]}-c{n}" for n in range(claims)]
                took = await timed(once, keys, WORKERS)
                if round_no:
                    concurrent[name].append(claims / took)
    finally:
        await plain.pool.execute(f'DROP TABLE IF EXISTS "{effects}"')
        for repo in (plain, transactional):
            await repo.pool.execute(f'DROP TABLE IF EXISTS "{repo.table}"')
            await repo.stop()
    rows, lines = [], []
    for name in variants:
        ms, rate = statistics.median(sequential[name]), statistics.median(concurrent[name])
        spread = ", ".join(f"{v:.2f}" for v in sequential[name])
        rows.append([name, f"{ms:.2f} ({spread})", f"{rate:,.0f}"])
        slug = name.split(" (")[0].replace(" + ", "-").replace(" ", "-").replace("a-", "")
        lines.append(value_line(f"pg-{slug}-ms", ms, "ms/claim"))
        lines.append(value_line(f"pg-{slug}-{WORKERS}-workers", rate, "claims/s"))
    return rows, lines


async def timed(once: ClaimOnce, keys: list[str], workers: int) -> float:
    async def worker(share: list[str]) -> None:
        for key in share:
            await once(key)

    began = time.perf_counter()
    await asyncio.gather(*(worker(keys[n::workers]) for n in range(workers)))
    return time.perf_counter() - began


# -- the broker per message --------------------------------------------------------------------
async def broker_costs(messages: int, rounds: int) -> tuple[list[list[str]], list[str]]:
    layouts = (
        "one classic queue",
        "one quorum queue",
        "hash over 6 quorum queues + SAC",
        "the same, acked one by one",
        "the same, paced at 200 msgs/s",
    )
    figures: dict[str, list[float]] = {name: [] for name in layouts}
    retry = BrokerRetry(AMQP_URL)  # a round whose connection the broker closed: once more
    for number in range(1, rounds + 1):
        for layout in layouts:
            paced = layout.endswith("msgs/s")  # 10 s a round: fewer messages
            count = min(messages, PACE * 10) if paced else messages
            figures[layout].append(
                await retry(
                    functools.partial(broker_round, layout, count), f"round {number}, {layout}"
                )
            )
    rows, lines = [], []
    for layout, per_round in figures.items():
        median = statistics.median(per_round)
        rows.append([layout, f"{median:.0f}", ", ".join(f"{v:.0f}" for v in per_round)])
        slug = {
            "one classic queue": "classic",
            "one quorum queue": "quorum",
            "hash over 6 quorum queues + SAC": "partitioned",
            "the same, acked one by one": "partitioned-ack-each",
        }.get(layout, "partitioned-paced")
        lines.append(value_line(f"broker-cpu-{slug}", median, "us/msg"))
    return rows, lines


async def broker_round(layout: str, messages: int) -> float:
    """Publish and consume ``messages`` through ``layout``; the broker's CPU per message."""
    tag = uuid.uuid4().hex[:8]
    source, hashed = f"eip.bench.{tag}.events", f"eip.bench.{tag}.partitioned"
    queue_type = "classic" if layout == "one classic queue" else "quorum"
    partitioned = layout.startswith(("hash", "the same"))
    one_by_one = layout.endswith("one by one")
    paced = layout.endswith("msgs/s")  # as the deployment consumes: one at a time per queue
    queues = [f"eip.bench.{tag}.{n}" for n in range(6 if partitioned else 1)]
    connection = await connect(AMQP_URL)
    channel = await connection.channel(publisher_confirms=True)
    try:
        await channel.exchange_declare(source, "topic")
        arguments: dict[str, object] = {}
        if queue_type == "quorum":
            arguments["x-queue-type"] = "quorum"
        if len(queues) > 1:
            arguments["x-single-active-consumer"] = True
            await channel.exchange_declare(
                hashed, "x-consistent-hash", arguments={"hash-header": "customer_id"}
            )
            await channel.exchange_bind(hashed, source, "customer.changed")
        for queue in queues:
            await channel.queue_declare(queue, durable=True, arguments=arguments or None)
            if len(queues) > 1:
                await channel.queue_bind(queue, hashed, "1")
            else:
                await channel.queue_bind(queue, source, "customer.changed")
        received = 0
        done = asyncio.Event()
        consumer = await connection.channel()
        await consumer.basic_qos(50 if one_by_one or paced else 500)
        backlog: dict[str, asyncio.Queue[Delivery]] = {}

        async def pace(pending: asyncio.Queue[Delivery]) -> None:
            while True:
                delivery = await pending.get()
                await asyncio.sleep(len(queues) / PACE)
                consumer.ack(delivery.delivery_tag)
                pending.task_done()

        def on_deliveries(deliveries: list[Delivery]) -> None:
            nonlocal received
            received += len(deliveries)
            if paced:
                for delivery in deliveries:
                    backlog[delivery.consumer_tag].put_nowait(delivery)
            elif one_by_one:
                for delivery in deliveries:
                    consumer.ack(delivery.delivery_tag)
            else:
                consumer.ack(deliveries[-1].delivery_tag, multiple=True)
            if received >= messages:
                done.set()

        meter = CpuMeter("beam.smp")
        meter.start()
        await asyncio.sleep(IDLE)
        idle_rate = meter.stop() / IDLE  # other jobs on the broker: taken off below
        meter.start()
        began = time.monotonic()
        pacers = []
        for queue in queues:
            consumer_tag = await consumer.basic_consume(queue, on_deliveries)
            backlog[consumer_tag] = asyncio.Queue()
            pacers.append(asyncio.create_task(pace(backlog[consumer_tag])))
        body = b'{"customer_id": 1, "name": "Customer", "segment": "b2b"}' * 5
        seq = 0
        for n in range(messages):
            properties = Properties(delivery_mode=2, headers={"customer_id": f"c{n % 500}"})
            seq = channel.publish(body, source, "customer.changed", properties)
            if n % 2000 == 1999:
                await channel.wait_confirm(seq)
        await channel.wait_confirm(seq)
        await asyncio.wait_for(done.wait(), 300)
        await asyncio.gather(*(pending.join() for pending in backlog.values()))
        for pacer in pacers:
            pacer.cancel()
        await consumer.drain()
        await asyncio.sleep(0.3)  # the broker settles the last acks
        used = meter.stop() - idle_rate * (time.monotonic() - began)
        return max(0.0, used) / messages * 1e6
    finally:
        cleanup = await connection.channel()
        for queue in queues:
            await cleanup.queue_delete(queue)
        for exchange in (hashed, source):
            await cleanup.exchange_delete(exchange)
        await connection.close()
