"""The store implementations under test, built the same way in the test process and in the
worker processes of the cross-process tests (which is why this is a module, not conftest).

PostgreSQL and Redis are real services (CI starts them); if one is down, its tests fail.
Each backend object owns a private namespace (a table, a key prefix, a file) and removes it
in ``cleanup``, so tests never see each other's data.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from eip.clock import ManualClock
from eip.stores import (
    AggregationRepository,
    IdempotentRepository,
    MemoryAggregationRepository,
    MemoryIdempotentRepository,
    PostgresAggregationRepository,
    PostgresIdempotentRepository,
    RedisIdempotentRepository,
    SqliteAggregationRepository,
    SqliteIdempotentRepository,
)

PG_DSN = os.environ.get("EIP_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("EIP_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

IDEMPOTENT_KINDS = ["memory", "sqlite", "postgres", "redis"]
AGGREGATION_KINDS = ["memory", "sqlite", "postgres"]


def build_idempotent(kind: str, options: dict[str, Any], clock: Any = None) -> IdempotentRepository:
    """A repository of ``kind``; ``options`` are constructor arguments (picklable)."""
    if kind == "memory":
        return MemoryIdempotentRepository(clock=clock, **options)
    if kind == "sqlite":
        return SqliteIdempotentRepository(clock=clock, **options)
    if kind == "postgres":
        return PostgresIdempotentRepository(clock=clock, **options)
    if kind == "redis":
        return RedisIdempotentRepository(**options)  # server-side time: no clock
    raise ValueError(kind)


async def drop_pg_tables(tables: list[str]) -> None:
    conn = await asyncpg.connect(PG_DSN)
    try:
        for table in tables:
            await conn.execute(f'DROP TABLE IF EXISTS "{table}"')
    finally:
        await conn.close()


async def delete_redis_prefix(prefix: str) -> None:
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        names = [name async for name in client.scan_iter(match=prefix + "*", count=500)]
        if names:
            await client.delete(*names)
    finally:
        await client.aclose()


class IdempotentBackend:
    """Makes started repositories of one kind and moves their time forward.

    ``unit`` is a lease-sized duration for expiry tests: a minute on the manual clock, a tenth
    of a second of real time for Redis (whose expiry runs on the server's clock).
    """

    def __init__(self, kind: str, tmp_path: Path) -> None:
        self.kind = kind
        self.clock: ManualClock | None = None if kind == "redis" else ManualClock()
        self.unit = 0.1 if kind == "redis" else 60.0
        self._uid = uuid.uuid4().hex[:12]
        self._tmp_path = tmp_path
        self._repos: list[IdempotentRepository] = []
        self._tables: set[str] = set()

    def options(self, namespace: str = "main") -> dict[str, Any]:
        """Constructor arguments naming this test's private table/prefix/file."""
        if self.kind == "sqlite":
            return {"path": self._tmp_path / "state" / "idem.db", "table": f"idem_{namespace}"}
        if self.kind == "postgres":
            table = f"eip_test_{self._uid}_{namespace}"
            self._tables.add(table)
            return {"dsn": PG_DSN, "table": table}
        if self.kind == "redis":
            return {"url": REDIS_URL, "prefix": f"eip:test:{self._uid}:{namespace}:"}
        return {}

    async def make(
        self, *, ttl: float | None = None, lease: float = 60.0, namespace: str = "main"
    ) -> IdempotentRepository:
        options = {**self.options(namespace), "ttl": ttl, "lease": lease}
        repo = build_idempotent(self.kind, options, self.clock)
        await repo.start()
        self._repos.append(repo)
        return repo

    def build(self, namespace: str = "main") -> IdempotentRepository:
        """A repository that is not started (a context starts and stops it)."""
        return build_idempotent(self.kind, self.options(namespace), self.clock)

    async def advance(self, seconds: float) -> None:
        if self.clock is not None:
            await self.clock.advance(seconds)
        else:
            await asyncio.sleep(seconds)

    async def cleanup(self) -> None:
        for repo in self._repos:
            await repo.stop()
        if self._tables:
            await drop_pg_tables(sorted(self._tables))
        if self.kind == "redis":
            await delete_redis_prefix(f"eip:test:{self._uid}:")


class AggregationBackend:
    """Makes started aggregation repositories of one kind, all sharing one namespace."""

    def __init__(self, kind: str, tmp_path: Path) -> None:
        self.kind = kind
        self.clock = ManualClock()
        self._prefix = f"eip_test_{uuid.uuid4().hex[:12]}"
        self._path = tmp_path / "state" / "aggregation.db"
        self._repos: list[AggregationRepository] = []

    async def make(self, name: str = "default") -> AggregationRepository:
        repo = self.build(name)
        await repo.start()
        self._repos.append(repo)
        return repo

    def build(self, name: str = "default") -> AggregationRepository:
        """A repository that is not started (a context starts and stops it)."""
        repo: AggregationRepository
        if self.kind == "memory":
            repo = MemoryAggregationRepository(clock=self.clock)
        elif self.kind == "sqlite":
            repo = SqliteAggregationRepository(self._path, name, clock=self.clock)
        else:
            repo = PostgresAggregationRepository(
                PG_DSN, name, table_prefix=self._prefix, clock=self.clock
            )
        return repo

    async def cleanup(self) -> None:
        for repo in self._repos:
            await repo.stop()
        if self.kind == "postgres":
            suffixes = ("open", "completed", "closed", "inputs")
            await drop_pg_tables([f"{self._prefix}_{suffix}" for suffix in suffixes])
