"""``PostgresScheduleStore``: the schedule rows of :mod:`eip.stores.schedules` in PostgreSQL,
shared by every instance that runs the same ``cron:`` schedule.

Each change is one transaction that locks the schedule's row (``SELECT ... FOR UPDATE``),
decides with the pure planners of :mod:`eip.stores.schedules` and writes the row and the
history row before it commits: two instances that wake at the same fire time queue on the
row lock, the first claims the time, the second sees it taken. The history's unique index on
``(name, due)`` refuses a second claim of a time even if the row were rewound. Nothing is
held between transactions: no session-bound advisory lock that a connection pool could hand
to another task, and nothing for a dead instance to keep but its run lease, which expires.

On the pool, error mapping and schema lock of the other PostgreSQL stores
(:mod:`eip.stores.postgres`). Needs the ``postgres`` extra (``pip install eip[postgres]``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from eip.redaction import redact_uri
from eip.stores._common import validate_identifier
from eip.stores.base import StoreError
from eip.stores.postgres import _PostgresStore, _quote
from eip.stores.schedules import (
    FIRE_COLUMNS,
    KEEP_HISTORY,
    STATE_COLUMNS,
    Claim,
    FireRecord,
    Plan,
    ScheduleState,
    ScheduleStore,
    fire_from_row,
    fire_values,
    state_from_row,
    state_values,
)

__all__ = ["PostgresScheduleStore"]


class PostgresScheduleStore(_PostgresStore, ScheduleStore):
    """Schedules in tables ``table`` and ``table_fires`` (``schema.table`` allowed), from
    ``dsn`` or ``pool``."""

    def __init__(
        self,
        dsn: str | None = None,
        table: str = "eip_schedules",
        pool: Any = None,
        *,
        keep_history: float = KEEP_HISTORY,
    ) -> None:
        super().__init__(dsn, pool, None)
        self.table = validate_identifier(table)
        self.fires = validate_identifier(f"{table}_fires")
        self.keep_history = keep_history
        self._lock_name = self.table
        t, f = _quote(self.table), _quote(self.fires)
        columns = ", ".join(STATE_COLUMNS)
        self._sql_get = f"SELECT {columns} FROM {t} WHERE name = $1 FOR UPDATE"
        self._sql_create = (
            f"INSERT INTO {t} (name, schedule, last_due, updated_at) VALUES ($1, $2, $3, $3) "
            "ON CONFLICT (name) DO NOTHING"
        )
        self._sql_rename = f"UPDATE {t} SET schedule = $2 WHERE name = $1"
        sets = ", ".join(f"{c} = ${n}" for n, c in enumerate(STATE_COLUMNS, 2))
        at = len(STATE_COLUMNS) + 2
        self._sql_write = f"UPDATE {t} SET {sets}, updated_at = ${at} WHERE name = $1"
        marks = ", ".join(f"${n}" for n in range(1, len(FIRE_COLUMNS) + 1))
        self._sql_fire = (
            f"INSERT INTO {f} ({', '.join(FIRE_COLUMNS)}) VALUES ({marks}) ON CONFLICT DO NOTHING"
        )
        self._sql_finished = (
            f"UPDATE {f} SET finished_at = $3, ok = $4 WHERE name = $1 AND run_id = $2"
        )
        self._sql_prune = f"DELETE FROM {f} WHERE name = $1 AND claimed_at < $2"
        self._sql_history = (
            f"SELECT {', '.join(FIRE_COLUMNS)} FROM {f} WHERE name = $1 "
            "ORDER BY due DESC, claimed_at DESC LIMIT $2"
        )

    @property
    def name(self) -> str:
        return redact_uri(self.dsn) if self.dsn else f"postgresql (pool, table {self.table})"

    def _schema(self) -> list[str]:
        t, f = _quote(self.table), _quote(self.fires)
        index = self.fires.rsplit(".", 1)[-1]
        return [
            f"CREATE TABLE IF NOT EXISTS {t} (name text PRIMARY KEY, schedule text NOT NULL, "
            "last_due double precision NOT NULL, last_run double precision, run_id text, "
            "run_owner text, run_since double precision, run_until double precision, "
            "run_due double precision, run_previous double precision, "
            "updated_at double precision NOT NULL)",
            f"CREATE TABLE IF NOT EXISTS {f} (name text NOT NULL, due double precision NOT NULL, "
            "outcome text NOT NULL, owner text NOT NULL, previous double precision, "
            "claimed_at double precision NOT NULL, run_id text, "
            "finished_at double precision, ok boolean, note text)",
            # each fire time is claimed once (a recovery re-runs one: it is a row of its own)
            f'CREATE UNIQUE INDEX IF NOT EXISTS "{index}_once" ON {f} (name, due) '
            "WHERE outcome <> 'recovered'",
            f'CREATE INDEX IF NOT EXISTS "{index}_run" ON {f} (run_id)',
        ]

    async def open(self, name: str, schedule: str, now: float) -> ScheduleState:
        with self._mapped():
            async with self.pool.acquire() as conn, conn.transaction():
                await conn.execute(self._sql_create, name, schedule, now)
                row = await conn.fetchrow(self._sql_get, name)
                await conn.execute(self._sql_rename, name, schedule)
        return state_from_row(name, row)

    async def apply(self, name: str, planner: Callable[[ScheduleState], Plan]) -> Claim:
        with self._mapped():
            async with self.pool.acquire() as conn, conn.transaction():
                row = await conn.fetchrow(self._sql_get, name)
                if row is None:
                    raise StoreError(
                        f"schedule store {self.name}: no row for schedule {name!r} in table "
                        f"{self.table} (was it deleted while the route ran?)"
                    )
                plan = planner(state_from_row(name, row))
                await self._write(conn, name, plan)
        return plan.claim

    async def _write(self, conn: Any, name: str, plan: Plan) -> None:
        if plan.state is not None:
            await conn.execute(self._sql_write, name, *state_values(plan.state), plan.at)
        fire = plan.fire
        if fire is not None:
            status = await conn.execute(self._sql_fire, *fire_values(fire))
            if status.rsplit(" ", 1)[-1] != "1":  # raising rolls the claim back
                raise StoreError(
                    f"schedule store {self.name}: fire time {fire.due} of {name!r} is in "
                    f"{self.fires} already, but not in {self.table}'s last_due"
                )
            await conn.execute(self._sql_prune, name, fire.claimed_at - self.keep_history)
        if plan.finished is not None:
            run_id, at, ok = plan.finished
            await conn.execute(self._sql_finished, name, run_id, at, ok)

    async def history(self, name: str, limit: int = 100) -> list[FireRecord]:
        with self._mapped():
            rows = await self.pool.fetch(self._sql_history, name, limit)
        return [fire_from_row(row) for row in rows]
