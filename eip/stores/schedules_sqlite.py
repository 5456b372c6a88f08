"""``SqliteScheduleStore``: the schedule rows of :mod:`eip.stores.schedules` in a local file.

On the connection, worker thread and durability of the other SQLite stores
(:mod:`eip.stores.sqlite`: WAL, ``synchronous=NORMAL``, so a claimed fire time survives a
SIGKILL). Every change runs in ``BEGIN IMMEDIATE``: the write lock is taken before the row is
read, so processes that share the file (several instances on one host) claim each fire time
once. Tables: ``<table>`` (one row per schedule) and ``<table>_fires`` (the history).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from os import PathLike
from typing import Any

from eip.stores._common import validate_identifier
from eip.stores.base import StoreError
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
from eip.stores.sqlite import Synchronous, _immediate, _SqliteStore

__all__ = ["SqliteScheduleStore"]


class SqliteScheduleStore(_SqliteStore, ScheduleStore):
    """Schedules in tables ``table`` and ``table_fires`` of the SQLite file ``path``."""

    def __init__(
        self,
        path: str | PathLike[str],
        table: str = "eip_schedules",
        *,
        synchronous: Synchronous = "NORMAL",
        keep_history: float = KEEP_HISTORY,
    ) -> None:
        super().__init__(path, synchronous, None)
        self.table = validate_identifier(table, qualified=False)
        self.fires = validate_identifier(f"{table}_fires", qualified=False)
        self.keep_history = keep_history
        t, f = self.table, self.fires
        columns = ", ".join(STATE_COLUMNS)
        self._sql_get = f"SELECT {columns} FROM {t} WHERE name = ?"
        self._sql_create = (
            f"INSERT INTO {t} (name, schedule, last_due, updated_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (name) DO NOTHING"
        )
        self._sql_rename = f"UPDATE {t} SET schedule = ? WHERE name = ?"
        sets = ", ".join(f"{c} = ?" for c in STATE_COLUMNS)
        self._sql_write = f"UPDATE {t} SET {sets}, updated_at = ? WHERE name = ?"
        marks = ", ".join("?" for _ in FIRE_COLUMNS)
        self._sql_fire = f"INSERT INTO {f} ({', '.join(FIRE_COLUMNS)}) VALUES ({marks})"
        self._sql_finished = f"UPDATE {f} SET finished_at = ?, ok = ? WHERE name = ? AND run_id = ?"
        self._sql_prune = f"DELETE FROM {f} WHERE name = ? AND claimed_at < ?"
        self._sql_history = (
            f"SELECT {', '.join(FIRE_COLUMNS)} FROM {f} WHERE name = ? "
            "ORDER BY due DESC, claimed_at DESC LIMIT ?"
        )

    @property
    def name(self) -> str:
        return f"sqlite:{self.path}"

    def _schema(self) -> list[str]:
        t, f = self.table, self.fires
        return [
            f"CREATE TABLE IF NOT EXISTS {t} (name TEXT PRIMARY KEY, schedule TEXT NOT NULL, "
            "last_due REAL NOT NULL, last_run REAL, run_id TEXT, run_owner TEXT, "
            "run_since REAL, run_until REAL, run_due REAL, run_previous REAL, "
            "updated_at REAL NOT NULL)",
            f"CREATE TABLE IF NOT EXISTS {f} (name TEXT NOT NULL, due REAL NOT NULL, "
            "outcome TEXT NOT NULL, owner TEXT NOT NULL, previous REAL, "
            "claimed_at REAL NOT NULL, run_id TEXT, finished_at REAL, ok INTEGER, note TEXT)",
            # each fire time is claimed once (a recovery re-runs one: it is a row of its own)
            f"CREATE UNIQUE INDEX IF NOT EXISTS {f}_once ON {f} (name, due) "
            "WHERE outcome <> 'recovered'",
            f"CREATE INDEX IF NOT EXISTS {f}_run ON {f} (run_id)",
        ]

    async def open(self, name: str, schedule: str, now: float) -> ScheduleState:
        return await self._run(self._open_row, name, schedule, now)

    async def apply(self, name: str, planner: Callable[[ScheduleState], Plan]) -> Claim:
        return await self._run(self._apply, name, planner)

    async def history(self, name: str, limit: int = 100) -> list[FireRecord]:
        rows = await self._run(self._fetch, self._sql_history, (name, limit))
        return [fire_from_row(row) for row in rows]

    # -- in the worker thread ---------------------------------------------------------------
    def _open_row(self, name: str, schedule: str, now: float) -> ScheduleState:
        db = self._db
        with _immediate(db):
            db.execute(self._sql_create, (name, schedule, now, now))
            row = db.execute(self._sql_get, (name,)).fetchone()
            db.execute(self._sql_rename, (schedule, name))
        return state_from_row(name, row)

    def _apply(self, name: str, planner: Callable[[ScheduleState], Plan]) -> Claim:
        db = self._db
        with _immediate(db):
            row = db.execute(self._sql_get, (name,)).fetchone()
            if row is None:
                raise StoreError(
                    f"schedule store {self.name}: no row for schedule {name!r} in table "
                    f"{self.table} (was it deleted while the route ran?)"
                )
            plan = planner(state_from_row(name, row))
            if plan.state is not None:
                db.execute(self._sql_write, (*state_values(plan.state), plan.at, name))
            if plan.fire is not None:
                try:
                    db.execute(self._sql_fire, fire_values(plan.fire))
                except sqlite3.IntegrityError as exc:
                    raise StoreError(
                        f"schedule store {self.name}: fire time {plan.fire.due} of {name!r} "
                        f"is in {self.fires} already, but not in {self.table}'s last_due"
                    ) from exc
                db.execute(self._sql_prune, (name, plan.fire.claimed_at - self.keep_history))
            if plan.finished is not None:
                run_id, at, ok = plan.finished
                db.execute(self._sql_finished, (at, ok, name, run_id))
        return plan.claim

    def _fetch(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        return self._db.execute(sql, params).fetchall()
