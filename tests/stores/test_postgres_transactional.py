"""PostgresTransactionalIdempotentRepository: the claim is a transaction the effect joins.

Against the real PostgreSQL (database ``test``), each test in tables of its own. What it must
show: key and effect commit together or not at all; a claim of an open key waits for the
holder's outcome; a process killed holding a claim leaves the key free at once (no lease to
wait out) and no effect behind; and, in a route, the idempotent consumer drives it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from eip import Context, Exchange, RouteBuilder, body
from eip.clock import ManualClock
from eip.stores import PostgresTransactionalIdempotentRepository, StoreError
from tests.stores.backends import PG_DSN, drop_pg_tables

ROOT = Path(__file__).resolve().parents[2]


class Tables:
    """A claims table and an effects table of this test's own."""

    def __init__(self) -> None:
        uid = uuid.uuid4().hex[:10]
        self.claims = f"eip_test_{uid}_claims"
        self.effects = f"eip_test_{uid}_effects"
        self.insert = f'INSERT INTO "{self.effects}" (id, note) VALUES ($1, $2)'


@pytest.fixture
async def tables() -> AsyncIterator[Tables]:
    found = Tables()
    conn = await asyncpg.connect(PG_DSN)
    try:
        await conn.execute(f'CREATE TABLE "{found.effects}" (id text NOT NULL, note text)')
    finally:
        await conn.close()
    try:
        yield found
    finally:
        await drop_pg_tables([found.claims, found.effects])


async def effects(tables: Tables) -> list[str]:
    conn = await asyncpg.connect(PG_DSN)
    try:
        rows = await conn.fetch(f'SELECT id FROM "{tables.effects}" ORDER BY id')
    finally:
        await conn.close()
    return [row["id"] for row in rows]


async def started(
    tables: Tables, ttl: float | None = None, clock: ManualClock | None = None
) -> PostgresTransactionalIdempotentRepository:
    repo = PostgresTransactionalIdempotentRepository(
        PG_DSN, table=tables.claims, ttl=ttl, clock=clock
    )
    await repo.start()
    return repo


async def test_the_key_and_the_effect_commit_together(tables: Tables) -> None:
    repo = await started(tables)
    try:
        assert await repo.add("evt-1") is True
        await repo.connection("evt-1").execute(tables.insert, "evt-1", "applied")
        assert not await repo.contains("evt-1"), "visible before its commit"
        assert await effects(tables) == []
        await repo.confirm("evt-1")
        assert await repo.contains("evt-1")
        assert await effects(tables) == ["evt-1"]
        assert await repo.add("evt-1") is False  # a duplicate now
        assert repo.open_claims == 0
    finally:
        await repo.stop()


async def test_a_failure_rolls_back_the_key_and_the_effect(tables: Tables) -> None:
    repo = await started(tables)
    try:
        assert await repo.add("evt-1")
        await repo.connection("evt-1").execute(tables.insert, "evt-1", "half done")
        await repo.remove("evt-1")
        assert await effects(tables) == []
        assert not await repo.contains("evt-1")
        assert await repo.add("evt-1") is True  # a retry can claim it
        await repo.remove("evt-1")
        await repo.confirm("recorded")  # not claimed here: recorded as processed
        assert await repo.add("recorded") is False
        await repo.remove("recorded")  # not claimed here: forgotten
        assert await repo.add("recorded") is True
        await repo.remove("recorded")
    finally:
        await repo.stop()


async def test_a_claim_of_an_open_key_waits_for_its_outcome(tables: Tables) -> None:
    """Two instances (two repositories, two pools): the second claim of a key held open
    waits, then follows the holder: a duplicate after a commit, its own after a rollback."""
    one, two = await started(tables), await started(tables)
    try:
        assert await one.add("committed")
        waiting = asyncio.create_task(two.add("committed"))
        await asyncio.sleep(0.3)
        assert not waiting.done(), "the second claim did not wait for the open one"
        await one.confirm("committed")
        assert await asyncio.wait_for(waiting, 5) is False

        assert await one.add("rolled-back")
        waiting = asyncio.create_task(two.add("rolled-back"))
        await asyncio.sleep(0.3)
        assert not waiting.done()
        await one.remove("rolled-back")
        assert await asyncio.wait_for(waiting, 5) is True
        await two.confirm("rolled-back")
        assert await one.add("rolled-back") is False
    finally:
        await one.stop()
        await two.stop()


HOLDER = """
import asyncio, sys
from eip.stores import PostgresTransactionalIdempotentRepository

async def main(dsn, table, effects):
    repo = PostgresTransactionalIdempotentRepository(dsn, table=table)
    await repo.start()
    assert await repo.add("evt-1")
    await repo.connection("evt-1").execute(
        f'INSERT INTO "{effects}" (id, note) VALUES ($1, $2)', "evt-1", "never committed")
    print("holding", flush=True)
    await asyncio.sleep(60)  # killed long before

asyncio.run(main(*sys.argv[1:4]))
"""


async def test_a_killed_holder_leaves_the_key_free_and_no_effect(tables: Tables) -> None:
    """A process claims a key, writes its effect and is SIGKILLed: PostgreSQL ends its
    transaction, so the claim waiting behind it wins at once (no lease to wait out), and the
    effect is gone with it."""
    repo = await started(tables)
    await repo.add("warm-up")  # creates the table before the child starts
    await repo.remove("warm-up")
    holder = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        HOLDER,
        PG_DSN,
        tables.claims,
        tables.effects,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None
        assert holder.stderr is not None
        line = await asyncio.wait_for(holder.stdout.readline(), 30)
        assert line.strip() == b"holding", (await holder.stderr.read()).decode()
        waiting = asyncio.create_task(repo.add("evt-1"))
        await asyncio.sleep(0.3)
        assert not waiting.done(), "claimed while the holder was alive"
        holder.send_signal(signal.SIGKILL)
        loop = asyncio.get_running_loop()
        began = loop.time()
        assert await asyncio.wait_for(waiting, 10) is True
        assert loop.time() - began < 5, "the key came free only after a timeout"
        assert await effects(tables) == [], "the killed holder's effect survived"
        await repo.connection("evt-1").execute(tables.insert, "evt-1", "applied once")
        await repo.confirm("evt-1")
        assert await effects(tables) == ["evt-1"]
    finally:
        if holder.returncode is None:
            holder.kill()
        await asyncio.wait_for(holder.wait(), 10)
        await repo.stop()


async def test_the_effect_needs_an_open_claim(tables: Tables) -> None:
    repo = await started(tables)
    try:
        with pytest.raises(StoreError) as caught:
            repo.connection("evt-9")
        assert str(caught.value) == (
            f"PostgresTransactionalIdempotentRepository ({tables.claims}): no open claim of key "
            "'evt-9'; write the effect after idempotent_consumer(...) with this repository, in "
            "the exchange that claimed the key"
        )
        assert await repo.add("evt-9")
        assert repo.open_claims == 1
    finally:
        await repo.stop()  # rolls the open claim back
    repo = await started(tables)
    try:
        assert await repo.add("evt-9") is True, "stop left the claim committed"
        await repo.remove("evt-9")
    finally:
        await repo.stop()
    with pytest.raises(ValueError, match="pool_size must be >= 1, got 0"):
        PostgresTransactionalIdempotentRepository(PG_DSN, table=tables.claims, pool_size=0)


async def test_a_confirmed_key_expires_after_its_ttl(tables: Tables) -> None:
    clock = ManualClock(start=1_000_000.0)
    repo = await started(tables, ttl=60.0, clock=clock)
    try:
        assert await repo.add("evt-1")
        await repo.confirm("evt-1")
        await clock.advance(59)
        assert await repo.add("evt-1") is False
        await clock.advance(2)
        assert await repo.add("evt-1") is True
        await repo.confirm("evt-1")
    finally:
        await repo.stop()


async def test_in_a_route_the_idempotent_consumer_commits_or_rolls_back(tables: Tables) -> None:
    """``idempotent_consumer`` claims, the route writes through the claim's connection, the
    exchange's completion commits; a failure later in the route rolls the effect back, so the
    retry applies it (once)."""
    repo = PostgresTransactionalIdempotentRepository(PG_DSN, table=tables.claims)
    failing = {"evt-2"}

    async def apply(exchange: Exchange) -> None:
        event_id = exchange.body["id"]
        await repo.connection(event_id).execute(tables.insert, event_id, "applied")

    def after(exchange: Exchange) -> None:
        if exchange.body["id"] in failing:
            raise RuntimeError("the step after the effect failed")

    class Events(RouteBuilder):
        def configure(self) -> None:
            (
                self.from_("direct:events")
                .route_id("events")
                .idempotent_consumer(body("id"), repo)
                .process(apply)
                .process(after)
            )

    context = Context()
    context.add_routes(Events())
    async with context:
        template = context.template()
        for event_id in ("evt-1", "evt-2", "evt-1", "evt-3"):
            await template.send("direct:events", {"id": event_id})
        assert await effects(tables) == ["evt-1", "evt-3"]  # evt-2 rolled back, evt-1 once
        failing.clear()
        retried = await template.send("direct:events", {"id": "evt-2"})
        assert retried.exception is None
        assert await effects(tables) == ["evt-1", "evt-2", "evt-3"]
        assert repo.open_claims == 0
