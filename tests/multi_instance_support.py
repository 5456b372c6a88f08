"""A deployment in miniature: several ``eip run`` processes on one RabbitMQ and one PostgreSQL.

:func:`run_deployment` sets up the broker topology and the tables of one run, starts the
instances (real ``python -m eip.cli run tests.multi_instance_routes`` processes, see that
module for the route and the layout), registers the standby consumers through each
instance's control API, publishes the CRM events (with duplicates), SIGKILLs one instance
mid-stream and starts it again, waits until every event is applied and every group complete,
stops the instances (SIGTERM) and reads back what happened into a :class:`Report`: the checks
(lost, doubled, out of order, groups), the timings and the CPU the broker, PostgreSQL and the
instances spent. ``tests/test_multi_instance.py`` runs a small plan in the suite,
``python -m benchmarks multi_instance`` the full one.

Everything a run creates is named after one random id (queues, exchanges, tables) and
removed afterwards. CPU is read from ``/proc/<pid>/stat`` (user + system time): the broker's
``beam.smp``, every ``postgres`` process, and the instances. The broker and PostgreSQL are
shared with whatever else runs on the machine, so their figures are upper bounds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from eip.components.rabbitmq._amqp import Properties, connect
from tests.multi_instance_routes import CUSTOMERS_PER_TERRITORY, ROUND, group_key

__all__ = ["Plan", "Report", "cpu_seconds", "run_deployment"]

ROOT = Path(__file__).resolve().parent.parent
PG_DSN = os.environ.get("EIP_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
TOKEN = "multi-instance-test"
STALL = 5.0  # seconds without progress, queues empty: the run is over (something was lost)
IDLE_SAMPLE = 3.0  # seconds of background CPU sampled before publishing
CLOCK_TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Plan:
    """What one run does. ``updates`` per customer is a multiple of the aggregation round."""

    customers: int = 500
    updates: int = 40
    duplicate_share: float = 0.10
    queues: int = 6
    instances: int = 3
    kill_at: float = 0.35  # share of the events applied when the victim is killed
    victim: int = 1
    store: str = "transactional"
    seed: int = 20261123
    timeout: float = 120.0

    @property
    def unique(self) -> int:
        return self.customers * self.updates

    @property
    def duplicates(self) -> int:
        return round(self.unique * self.duplicate_share)

    @property
    def groups(self) -> int:
        territories = max(1, self.customers // CUSTOMERS_PER_TERRITORY)
        return territories * (self.updates // ROUND)


@dataclass
class Report:
    """What a run did and measured; :attr:`problems` lists what went wrong (empty: none)."""

    plan: Plan
    published: int = 0
    applied_rows: int = 0
    lost: list[str] = field(default_factory=list)
    doubled: list[str] = field(default_factory=list)
    order_violations: dict[int, list[int]] = field(default_factory=dict)
    out_of_order_counted: int = 0
    groups_completed: int = 0
    groups_completed_twice: list[str] = field(default_factory=list)
    groups_wrong_members: list[str] = field(default_factory=list)
    group_deliveries: int = 0
    groups_across_instances: int = 0
    applied_by: dict[str, int] = field(default_factory=dict)
    dead_lettered: int = 0
    failures_logged: list[str] = field(default_factory=list)
    exit_codes: dict[str, int | None] = field(default_factory=dict)
    applied_at_kill: int = 0
    stalled: bool = False  # ended with events or groups missing and nothing left to consume
    killed_after: float = 0.0
    restart_seconds: float = 0.0
    timeline: list[tuple[float, int]] = field(default_factory=list)
    startup_seconds: float = 0.0
    processing_seconds: float = 0.0
    broker_cpu: float = 0.0  # CPU seconds from the first publish until all was done
    postgres_cpu: float = 0.0
    instances_cpu: float = 0.0
    broker_idle_rate: float = 0.0  # CPU seconds per second with the instances up and idle
    postgres_idle_rate: float = 0.0
    measured_seconds: float = 0.0  # the window broker_cpu and postgres_cpu cover

    @property
    def problems(self) -> list[str]:
        found = []
        if self.lost:
            found.append(f"{len(self.lost)} events never applied, e.g. {self.lost[:3]}")
        if self.doubled:
            found.append(f"{len(self.doubled)} events applied twice, e.g. {self.doubled[:3]}")
        if self.order_violations:
            sample = dict(list(self.order_violations.items())[:2])
            found.append(f"{len(self.order_violations)} customers out of order, e.g. {sample}")
        if self.out_of_order_counted:
            found.append(f"{self.out_of_order_counted} updates applied out of order (counted)")
        if self.groups_completed != self.plan.groups:
            found.append(f"{self.groups_completed} of {self.plan.groups} groups completed")
        if self.groups_completed_twice:
            found.append(f"groups completed twice: {self.groups_completed_twice[:3]}")
        if self.groups_wrong_members:
            found.append(f"groups with wrong members: {self.groups_wrong_members[:3]}")
        if self.dead_lettered:
            found.append(f"{self.dead_lettered} events dead-lettered")
        if self.failures_logged:
            found.append(f"failures logged: {self.failures_logged[:3]}")
        bad_exits = {k: v for k, v in self.exit_codes.items() if v != 0}
        if bad_exits:
            found.append(f"instances that did not stop cleanly: {bad_exits}")
        return found

    def per_message(self, seconds: float) -> float:
        """Microseconds per published message."""
        return seconds / max(1, self.published) * 1e6

    @property
    def broker_cpu_net(self) -> float:
        """Broker CPU of the run less its idle rate over the run's window (an estimate)."""
        return max(0.0, self.broker_cpu - self.broker_idle_rate * self.measured_seconds)

    @property
    def postgres_cpu_net(self) -> float:
        return max(0.0, self.postgres_cpu - self.postgres_idle_rate * self.measured_seconds)

    def summary(self) -> str:
        p = self.plan
        rate = self.published / self.processing_seconds if self.processing_seconds else 0.0
        lines = [
            f"{p.instances} instances, {p.queues} queues (consistent hash, single active "
            f"consumer, quorum), store={p.store}",
            f"{self.published:,} messages: {p.unique:,} events of {p.customers} customers + "
            f"{p.duplicates:,} duplicates; instance {p.victim} SIGKILLed at "
            f"{self.applied_at_kill:,} applied ({self.killed_after:.1f} s in), restarted in "
            f"{self.restart_seconds:.1f} s",
            f"processed in {self.processing_seconds:.1f} s ({rate:,.0f} msgs/s), instances "
            f"started in {self.startup_seconds:.1f} s",
            f"applied: {self.applied_rows:,} rows, lost {len(self.lost)}, doubled "
            f"{len(self.doubled)}, customers out of order {len(self.order_violations)}; by "
            f"instance {dict(sorted(self.applied_by.items()))}",
            f"groups: {self.groups_completed:,} of {p.groups:,} completed once, "
            f"{self.group_deliveries:,} deliveries "
            f"({self.group_deliveries - self.groups_completed} redelivered), "
            f"{self.groups_across_instances:,} fed by more than one instance",
            f"CPU per message: broker {self.per_message(self.broker_cpu):.0f} us "
            f"({self.per_message(self.broker_cpu_net):.0f} over its idle rate of "
            f"{self.broker_idle_rate * 100:.0f}% of a core), PostgreSQL "
            f"{self.per_message(self.postgres_cpu):.0f} us "
            f"({self.per_message(self.postgres_cpu_net):.0f} over "
            f"{self.postgres_idle_rate * 100:.0f}%), eip instances "
            f"{self.per_message(self.instances_cpu):.0f} us",
        ]
        return "\n".join(lines)


# -- CPU from /proc --------------------------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    """User + system CPU of process ``pid`` so far (0.0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICK  # utime, stime


def pids_named(name: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if Path(f"/proc/{entry}/comm").read_text().strip() == name:
                    found.append(int(entry))
    return found


class CpuMeter:
    """CPU spent by every process of one name between :meth:`start` and :meth:`stop`;
    processes that start meanwhile count from zero (those that end are missed)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._before: dict[int, float] = {}

    def start(self) -> None:
        self._before = {pid: cpu_seconds(pid) for pid in pids_named(self.name)}

    def stop(self) -> float:
        now = {pid: cpu_seconds(pid) for pid in pids_named(self.name)}
        return sum(max(0.0, cpu - self._before.get(pid, 0.0)) for pid, cpu in now.items())


# -- the events ------------------------------------------------------------------------------
def make_events(plan: Plan, uid: str) -> list[tuple[str, int, bytes]]:
    """(event id, customer, body) in publishing order: round by round over the customers
    (shuffled each round), each duplicate re-published 1 to 300 messages after its original."""
    rng = random.Random(plan.seed)
    slots: list[tuple[float, str, int, bytes]] = []
    position = 0
    for seq in range(plan.updates):
        customers = list(range(plan.customers))
        rng.shuffle(customers)
        for customer in customers:
            event_id = f"{uid}-c{customer:04d}-{seq:03d}"
            body = json.dumps(
                {
                    "event_id": event_id,
                    "customer_id": customer,
                    "seq": seq,
                    "name": f"Customer {customer}",
                    "email": f"customer{customer}@example.com",
                    "segment": "b2b",
                    "changed_at": f"2026-11-23T06:{seq // 60:02d}:{seq % 60:02d}Z",
                }
            ).encode()
            slots.append((float(position), event_id, customer, body))
            position += 1
    for index in rng.sample(range(len(slots)), plan.duplicates):
        _, event_id, customer, body = slots[index]
        slots.append((slots[index][0] + rng.uniform(1.0, 300.0), event_id, customer, body))
    slots.sort()
    return [(event_id, customer, body) for _, event_id, customer, body in slots]


# -- the instances ---------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Instance:
    """One ``eip run`` process and its control API."""

    def __init__(self, index: int, name: str, env: dict[str, str], workdir: Path) -> None:
        self.index = index
        self.name = name
        self.port = free_port()
        self.log = workdir / f"{name}.log"
        self.env = {**env, "MULTI_INDEX": str(index), "MULTI_NAME": name}
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None
        self.cpu_at_ready = 0.0
        self.cpu_used = 0.0

    def start(self) -> None:
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "eip.cli",
                    "run",
                    "tests.multi_instance_routes",
                    "--management-host",
                    "127.0.0.1",
                    "--management-port",
                    str(self.port),
                    "--shutdown-timeout",
                    "10",
                    "--fail-fast",
                ],
                cwd=self.workdir,  # no eip.toml here: nothing but the environment configures it
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    async def wait_ready(self, client: httpx.AsyncClient, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"instance {self.name} exited with {self.process.returncode}:\n"
                    f"{self.output()[-3000:]}"
                )
            with contextlib.suppress(httpx.HTTPError):
                answer = await client.get(f"http://127.0.0.1:{self.port}/health/ready")
                if answer.status_code == 200:
                    self.cpu_at_ready = cpu_seconds(self.pid)
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"instance {self.name} not ready in {timeout} s")
            await asyncio.sleep(0.1)

    async def start_route(self, client: httpx.AsyncClient, route_id: str) -> None:
        answer = await client.post(
            f"http://127.0.0.1:{self.port}/routes/{route_id}/start",
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        if answer.status_code != 200 or answer.json().get("status") != "started":
            raise RuntimeError(
                f"{self.name}: starting {route_id}: {answer.status_code} {answer.text}"
            )

    def kill(self) -> None:
        self.cpu_used += cpu_seconds(self.pid) - self.cpu_at_ready
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def terminate(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.cpu_used += cpu_seconds(self.pid) - self.cpu_at_ready
        self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> int | None:
        if self.process is None:
            return None
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
            return None


def standby_order(queue: int, plan: Plan) -> list[int]:
    """The instances that stand by for ``queue``, first in line first: rotated per queue, so
    the queues of a dead instance fail over to different survivors."""
    owner = queue % plan.instances
    others = [i for i in range(plan.instances) if i != owner]
    shift = (queue // plan.instances) % len(others)
    return others[shift:] + others[:shift]


# -- the run ---------------------------------------------------------------------------------
class Deployment:
    def __init__(self, plan: Plan, workdir: Path) -> None:
        self.plan = plan
        self.workdir = workdir
        self.uid = uuid.uuid4().hex[:10]
        self.prefix = f"mi{self.uid}."
        self.tables = f"eip_mi_{self.uid}"
        self.queue_names = [f"{self.prefix}crm.customer.changed.{n}" for n in range(plan.queues)]
        self.env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "EIP_MANAGEMENT_TOKEN": TOKEN,
            "MULTI_PREFIX": self.prefix,
            "MULTI_DSN": PG_DSN,
            "MULTI_TABLES": self.tables,
            "MULTI_QUEUES": str(plan.queues),
            "MULTI_INSTANCES": str(plan.instances),
            "MULTI_CUSTOMERS": str(plan.customers),
            "MULTI_STORE": plan.store,
        }
        self.instances: list[Instance] = []
        self.retired: list[Instance] = []

    @property
    def table_names(self) -> list[str]:
        t = self.tables
        own = [f"{t}_effects", f"{t}_customers", f"{t}_groups", f"{t}_seen"]
        return own + [f"{t}_agg_{part}" for part in ("open", "completed", "closed", "inputs")]

    async def setup(self) -> None:
        t = self.tables
        conn = await asyncpg.connect(PG_DSN)
        try:
            await conn.execute(
                f'CREATE TABLE "{t}_effects" (id bigserial PRIMARY KEY, event_id text NOT NULL, '
                "customer_id integer NOT NULL, seq integer NOT NULL, instance text NOT NULL)"
            )
            await conn.execute(
                f'CREATE TABLE "{t}_customers" (customer_id integer PRIMARY KEY, '
                "last_seq integer NOT NULL, applied integer NOT NULL, "
                "out_of_order integer NOT NULL)"
            )
            await conn.execute(
                f'CREATE TABLE "{t}_groups" (id bigserial PRIMARY KEY, key text NOT NULL, '
                "completed_id text NOT NULL, size integer NOT NULL, events text[] NOT NULL, "
                "instance text NOT NULL, redelivered boolean NOT NULL)"
            )
        finally:
            await conn.close()
        connection = await connect(AMQP_URL)
        try:
            channel = await connection.channel()
            p = self.prefix
            await channel.exchange_declare(f"{p}crm.events", "topic", durable=True)
            await channel.exchange_declare(f"{p}crm.dlx", "fanout", durable=True)
            await channel.queue_declare(f"{p}crm.dead", durable=True)
            await channel.queue_bind(f"{p}crm.dead", f"{p}crm.dlx", "")
        finally:
            await connection.close()

    async def cleanup(self) -> None:
        for instance in self.instances + self.retired:
            if instance.process is not None and instance.process.poll() is None:
                instance.process.kill()
                instance.process.wait(10)
        conn = await asyncpg.connect(PG_DSN)
        try:
            for table in self.table_names:
                await conn.execute(f'DROP TABLE IF EXISTS "{table}"')
        finally:
            await conn.close()
        connection = await connect(AMQP_URL)
        try:
            channel = await connection.channel()
            p = self.prefix
            for queue in [*self.queue_names, f"{p}crm.dead"]:
                await channel.queue_delete(queue)
            for exchange in ("crm.customer.partitioned", "crm.events", "crm.dlx"):
                await channel.exchange_delete(f"{p}{exchange}")
        finally:
            await connection.close()

    def instance(self, index: int, name: str) -> Instance:
        return Instance(index, name, self.env, self.workdir)

    async def start_all(self, client: httpx.AsyncClient) -> None:
        self.instances = [self.instance(i, f"i{i}") for i in range(self.plan.instances)]
        for instance in self.instances:
            instance.start()
        for instance in self.instances:
            await instance.wait_ready(client)
        for queue in range(self.plan.queues):
            for index in standby_order(queue, self.plan):
                await self.instances[index].start_route(client, f"crm-events-{queue}")

    async def restart(self, client: httpx.AsyncClient, index: int) -> None:
        old = self.instances[index]
        self.retired.append(old)
        new = self.instance(index, f"i{index}-restarted")
        self.instances[index] = new
        new.start()
        await new.wait_ready(client)  # its own queues: now behind the survivors
        for queue in range(self.plan.queues):
            if queue % self.plan.instances != index:
                await new.start_route(client, f"crm-events-{queue}")

    async def publish(self, events: list[tuple[str, int, bytes]]) -> None:
        connection = await connect(AMQP_URL)
        try:
            channel = await connection.channel(publisher_confirms=True)
            seq = 0
            for n, (event_id, customer, body) in enumerate(events):
                properties = Properties(
                    delivery_mode=2,
                    message_id=event_id,
                    content_type="application/json",
                    headers={"customer_id": str(customer)},
                )
                seq = channel.publish(
                    body, f"{self.prefix}crm.events", "customer.changed", properties
                )
                if n % 2000 == 1999:
                    await channel.wait_confirm(seq)
            await channel.wait_confirm(seq)
        finally:
            await connection.close()

    async def applied(self, conn: Any) -> int:
        return int(await conn.fetchval(f'SELECT count(*) FROM "{self.tables}_effects"'))

    async def groups_done(self, conn: Any) -> int:
        return int(await conn.fetchval(f'SELECT count(DISTINCT key) FROM "{self.tables}_groups"'))

    async def queues_empty(self) -> bool:
        connection = await connect(AMQP_URL)
        try:
            channel = await connection.channel()
            for queue in self.queue_names:
                _, ready, _ = await channel.queue_declare(queue, passive=True)
                if ready:
                    return False
            return True
        finally:
            await connection.close()

    async def dead_letters(self) -> int:
        connection = await connect(AMQP_URL)
        try:
            channel = await connection.channel()
            return int((await channel.queue_declare(f"{self.prefix}crm.dead", passive=True))[1])
        finally:
            await connection.close()

    def check_running(self) -> None:
        for instance in self.instances:
            assert instance.process is not None
            if instance.process.poll() is not None:
                raise RuntimeError(
                    f"instance {instance.name} exited with {instance.process.returncode}:\n"
                    f"{instance.output()[-3000:]}"
                )

    async def wait_until(self, condition: Any, what: str, deadline: float) -> None:
        while not await condition():
            self.check_running()
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting for {what}")
            await asyncio.sleep(0.1)


async def run_deployment(plan: Plan, workdir: Path) -> Report:
    """One run of ``plan`` (see the module docstring); raises only when it cannot finish."""
    deployment = Deployment(plan, workdir)
    report = Report(plan)
    events = make_events(plan, deployment.uid)
    report.published = len(events)
    broker, postgres = CpuMeter("beam.smp"), CpuMeter("postgres")
    sampler: asyncio.Task[None] | None = None
    await deployment.setup()
    try:
        conn = await asyncpg.connect(PG_DSN)
        try:
            async with httpx.AsyncClient(timeout=30) as client:
                began = time.monotonic()
                await deployment.start_all(client)
                report.startup_seconds = time.monotonic() - began
                deadline = time.monotonic() + plan.timeout
                # What the broker and PostgreSQL burn with the instances up and idle (other
                # jobs on the machine, heartbeats, the aggregators' recovery polls): taken off
                # the run's figures as a rate, to estimate what the messages cost.
                broker.start()
                postgres.start()
                await asyncio.sleep(IDLE_SAMPLE)
                report.broker_idle_rate = broker.stop() / IDLE_SAMPLE
                report.postgres_idle_rate = postgres.stop() / IDLE_SAMPLE
                broker.start()
                postgres.start()
                began = time.monotonic()
                await deployment.publish(events)
                kill_at = int(plan.unique * plan.kill_at)

                async def reached_kill_point() -> bool:
                    return await deployment.applied(conn) >= kill_at

                sampler = asyncio.create_task(sample(deployment, began, report.timeline))
                await deployment.wait_until(reached_kill_point, "the kill point", deadline)
                deployment.instances[plan.victim].kill()
                report.killed_after = time.monotonic() - began
                report.applied_at_kill = await deployment.applied(conn)
                await deployment.restart(client, plan.victim)
                report.restart_seconds = time.monotonic() - began - report.killed_after

                progress: list[tuple[float, int, int]] = []

                async def finished() -> bool:
                    """Every event applied and every group done, or nothing moving for
                    STALL seconds with the queues empty (what is missing then is lost)."""
                    applied, groups = (
                        await deployment.applied(conn),
                        await deployment.groups_done(conn),
                    )
                    if applied >= plan.unique and groups >= plan.groups:
                        return await deployment.queues_empty()
                    now = time.monotonic()
                    if not progress or progress[-1][1:] != (applied, groups):
                        progress.append((now, applied, groups))
                        return False
                    if now - progress[-1][0] < STALL:
                        return False
                    report.stalled = await deployment.queues_empty()
                    return report.stalled

                await deployment.wait_until(finished, "every event and group", deadline)
                report.processing_seconds = time.monotonic() - began
                await asyncio.sleep(1.0)  # a late redelivery or duplicate would land now
                report.broker_cpu = broker.stop()
                report.postgres_cpu = postgres.stop()
                report.measured_seconds = time.monotonic() - began
                for instance in deployment.instances:
                    instance.terminate()
                for instance in deployment.instances:
                    report.exit_codes[instance.name] = await asyncio.to_thread(instance.wait, 30)
                report.instances_cpu = sum(
                    i.cpu_used for i in deployment.instances + deployment.retired
                )
            report.dead_lettered = await deployment.dead_letters()
            await read_results(deployment, conn, events, report)
        finally:
            await conn.close()
    finally:
        if sampler is not None:
            sampler.cancel()
            await asyncio.gather(sampler, return_exceptions=True)
        for instance in deployment.instances + deployment.retired:
            report.failures_logged += failures_in(instance.output())
        await deployment.cleanup()
    return report


async def sample(deployment: Deployment, began: float, into: list[tuple[float, int]]) -> None:
    """(seconds, events applied) every quarter of a second, for the report."""
    conn = await asyncpg.connect(PG_DSN)
    try:
        while True:
            into.append((time.monotonic() - began, await deployment.applied(conn)))
            await asyncio.sleep(0.25)
    finally:
        await conn.close()


def failures_in(output: str) -> list[str]:
    """Lines where an exchange failed or the engine logged an error."""
    return [
        line
        for line in output.splitlines()
        if " failed exchange " in line or " ERROR " in line or "Traceback" in line
    ]


async def read_results(
    deployment: Deployment, conn: Any, events: list[tuple[str, int, bytes]], report: Report
) -> None:
    plan, t = deployment.plan, deployment.tables
    rows = await conn.fetch(
        f'SELECT event_id, customer_id, seq, instance FROM "{t}_effects" ORDER BY id'
    )
    report.applied_rows = len(rows)
    counts = Counter(row["event_id"] for row in rows)
    expected = {event_id for event_id, _, _ in events}
    report.lost = sorted(expected - set(counts))
    report.doubled = sorted(key for key, n in counts.items() if n > 1)
    order: dict[int, list[int]] = defaultdict(list)
    applied_by: Counter[str] = Counter()
    instance_of: dict[str, str] = {}
    for row in rows:
        order[row["customer_id"]].append(row["seq"])
        applied_by[row["instance"]] += 1
        instance_of[row["event_id"]] = row["instance"]
    report.applied_by = dict(applied_by)
    report.order_violations = {
        customer: seqs for customer, seqs in order.items() if seqs != sorted(seqs)
    }
    report.out_of_order_counted = int(
        await conn.fetchval(f'SELECT coalesce(sum(out_of_order), 0) FROM "{t}_customers"')
    )
    territories = max(1, plan.customers // CUSTOMERS_PER_TERRITORY)
    members: dict[str, set[str]] = defaultdict(set)
    for event_id, customer, _ in events:
        seq = int(event_id.rsplit("-", 1)[1])
        members[group_key(customer, seq, territories)].add(event_id)
    groups = await conn.fetch(f'SELECT key, completed_id, events FROM "{t}_groups"')
    report.group_deliveries = len(groups)
    completed: dict[str, set[str]] = defaultdict(set)
    for row in groups:
        completed[row["key"]].add(row["completed_id"])
        if set(row["events"]) != members[row["key"]] or len(row["events"]) != len(
            members[row["key"]]
        ):
            report.groups_wrong_members.append(row["key"])
    report.groups_completed = sum(1 for key in completed if key in members)
    report.groups_completed_twice = sorted(k for k, ids in completed.items() if len(ids) > 1)
    report.groups_across_instances = sum(
        1 for ids in members.values() if len({instance_of.get(i) for i in ids} - {None}) > 1
    )
