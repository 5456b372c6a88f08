"""Schedule stores: what a ``cron:`` endpoint remembers between runs and shares between instances.

One row per schedule (its ``name``) holds:

- ``last_due``: the last fire time accounted for (run, or skipped on purpose). At start, a
  fire time after it that has passed was missed while no instance was up: the misfire policy
  decides (:mod:`eip.components.cron`). The row is created at the first start with
  ``last_due`` = that start, so nothing before the schedule existed counts as missed;
- ``last_run``: the fire time of the last run started, which the next run reports as its
  previous time (a run covers the fire times in ``(previous, scheduled]``);
- the **run lease**: the run going on now (run id, owner, since, until, the fire time it is
  for). Its owner renews it while the run lasts; it is cleared when the run ends. A lease that
  expired without being cleared is a run whose instance died.

and a history table records each fire time once, with its outcome (:data:`OUTCOMES`), who
claimed it, what it covered and when its run finished.

**A fire time is claimed once.** Every instance that wakes at a fire time calls
:meth:`ScheduleStore.claim`; under the row's lock, the claim succeeds only for a time after
``last_due`` and moves ``last_due`` to it, so of any number of instances exactly one claims
each fire time, and the others see ``taken``. A claim to run while another run's lease is
live records the time as ``overlap`` instead: no run starts while one is going, on any
instance. The history's ``(name, due)`` is unique (recovery runs aside), a second guard.

The decisions are pure functions of the row (:func:`plan_claim`, :func:`plan_recover`, ...);
each store applies one under its row lock (a dict here, ``BEGIN IMMEDIATE`` in SQLite,
``SELECT ... FOR UPDATE`` in PostgreSQL), so all three stores behave the same.

Times are the caller's (the context clock), so tests drive leases with a manual clock;
instances that share a store should keep their clocks in sync (NTP).

========================  ===========================  ====================================
Store, named as           Survives                     Shared between
========================  ===========================  ====================================
``memory`` (no store)     nothing: a restart forgets   nothing (one consumer)
``sqlite:PATH``           process crash                processes on one host
``postgresql://...``      the server's durability      any number of instances
========================  ===========================  ====================================

``sqlite`` alone is ``sqlite:$EIP_DATA_DIR/schedules.db`` (``./data`` by default).
"""

from __future__ import annotations

import abc
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, Literal

import msgspec

from eip.redaction import redact_uri

__all__ = [
    "OUTCOMES",
    "RUNS",
    "Claim",
    "FireRecord",
    "Plan",
    "RunLease",
    "ScheduleState",
    "ScheduleStore",
    "default_store_uri",
    "open_schedule_store",
    "plan_claim",
    "plan_finish",
    "plan_manual",
    "plan_recover",
    "plan_renew",
]

Outcome = Literal["fired", "misfire", "recovered", "overlap", "missed", "suspended", "taken"]
#: What became of a fire time: ``fired`` ran on time (within the misfire threshold);
#: ``misfire`` ran late, once, for the times missed while no instance was up
#: (``misfire=run_once``); ``recovered`` ran again the times of a run whose instance died
#: mid-run; ``overlap`` skipped, a run was still going; ``missed`` skipped, missed while down
#: (``misfire=skip``); ``suspended`` skipped, the route was suspended. ``taken`` is a claim's
#: answer only: another instance (or an earlier claim) had it.
OUTCOMES: Final = ("fired", "misfire", "recovered", "overlap", "missed", "suspended", "taken")
#: The outcomes that start a run.
RUNS: Final = frozenset({"fired", "misfire", "recovered"})
KEEP_HISTORY = 7 * 86400.0  # seconds of history rows kept per schedule


class RunLease(msgspec.Struct, frozen=True):
    """A run going on: renewed by ``owner`` until it ends; expired, its instance is gone."""

    run_id: str
    owner: str
    since: float
    until: float
    due: float | None  # the fire time it runs for; None for a manual trigger
    previous: float | None  # the run before it: it covers (previous, due]


class ScheduleState(msgspec.Struct, frozen=True):
    name: str
    schedule: str
    last_due: float
    last_run: float | None = None
    running: RunLease | None = None


class FireRecord(msgspec.Struct, frozen=True):
    """One row of the history: a fire time and what became of it."""

    name: str
    due: float
    outcome: str
    owner: str
    previous: float | None
    claimed_at: float
    run_id: str | None = None
    finished_at: float | None = None
    ok: bool | None = None
    note: str | None = None


class Claim(msgspec.Struct, frozen=True):
    """A store's answer: the outcome, the state after it, and the lease that blocked a run
    (``overlap``), or of the dead run that a recovery (or a run covering it) replaced."""

    outcome: str
    state: ScheduleState
    lease: RunLease | None = None
    previous: float | None = None  # what the run covers from (runs only)


class Plan(msgspec.Struct, frozen=True):
    """What to write under the row lock: the new state (None: unchanged), a history row to
    add, and a run to mark finished."""

    claim: Claim
    state: ScheduleState | None = None
    fire: FireRecord | None = None
    finished: tuple[str, float, bool] | None = None  # run id, finished at, ok
    at: float = 0.0  # when (the caller's clock): the row's updated_at


#: The schedule row's columns after ``name``, in the order of :func:`state_values`.
STATE_COLUMNS: Final = (
    "schedule",
    "last_due",
    "last_run",
    "run_id",
    "run_owner",
    "run_since",
    "run_until",
    "run_due",
    "run_previous",
)
#: The history row's columns, in the order of :class:`FireRecord`'s fields.
FIRE_COLUMNS: Final = tuple(FireRecord.__struct_fields__)


def state_values(state: ScheduleState) -> tuple[Any, ...]:
    """The row of ``state``, in :data:`STATE_COLUMNS` order (for the SQL stores)."""
    lease = state.running
    if lease is None:
        return (state.schedule, state.last_due, state.last_run, *([None] * 6))
    return (
        state.schedule,
        state.last_due,
        state.last_run,
        lease.run_id,
        lease.owner,
        lease.since,
        lease.until,
        lease.due,
        lease.previous,
    )


def state_from_row(name: str, row: Any) -> ScheduleState:
    """The state of a row read in :data:`STATE_COLUMNS` order."""
    schedule, last_due, last_run, run_id, owner, since, until, due, previous = tuple(row)
    lease = None if run_id is None else RunLease(run_id, owner, since, until, due, previous)
    return ScheduleState(name, schedule, last_due, last_run, lease)


def fire_values(fire: FireRecord) -> tuple[Any, ...]:
    return tuple(getattr(fire, f) for f in FIRE_COLUMNS)


def fire_from_row(row: Any) -> FireRecord:
    values = dict(zip(FIRE_COLUMNS, tuple(row), strict=True))
    if values["ok"] is not None:
        values["ok"] = bool(values["ok"])
    return FireRecord(**values)


def _live(lease: RunLease | None, now: float) -> bool:
    return lease is not None and lease.until > now


def plan_claim(
    state: ScheduleState,
    due: float,
    wanted: str,
    *,
    owner: str,
    now: float,
    lease_ttl: float,
    run_id: str,
    recover: bool,
) -> Plan:
    """Claim fire time ``due`` for outcome ``wanted``. Taken when ``due`` is accounted for
    already; ``overlap`` when ``wanted`` runs but another run's lease is live. A run after a
    run that died (its lease expired) covers that run's times too when ``recover``."""
    if due <= state.last_due:
        return Plan(Claim("taken", state))
    lease = state.running
    outcome = "overlap" if wanted in RUNS and _live(lease, now) else wanted
    note, covered = None, None
    if outcome in RUNS:
        previous = state.last_run
        dead = lease if lease is not None and not _live(lease, now) and lease.due else None
        if dead is not None and recover:
            previous, covered = dead.previous, dead
            note = f"covers the run of {dead.due} by {dead.owner}, which did not finish"
        running: RunLease | None = RunLease(run_id, owner, now, now + lease_ttl, due, previous)
        new = msgspec.structs.replace(state, last_due=due, last_run=due, running=running)
    else:
        previous, running = None, None
        new = msgspec.structs.replace(state, last_due=due)
    fire = FireRecord(
        state.name,
        due,
        outcome,
        owner,
        previous,
        now,
        running.run_id if running else None,
        note=note,
    )
    shown = lease if outcome == "overlap" else covered
    return Plan(Claim(outcome, new, shown, previous), new, fire, at=now)


def plan_recover(
    state: ScheduleState,
    dead_run: str,
    *,
    owner: str,
    now: float,
    lease_ttl: float,
    run_id: str,
    run: bool,
) -> Plan:
    """Act on run ``dead_run`` whose lease was seen expiring: ``recovered`` (run again, once,
    the times it and the overlaps since stood for), ``missed`` (cleared, not run: ``run`` is
    False or it was a manual run) or ``taken`` (it finished, was renewed, or someone else
    recovered it; the claim's lease is what runs now)."""
    lease = state.running
    if lease is None or lease.run_id != dead_run or _live(lease, now):
        return Plan(Claim("taken", state, lease))
    if not run or lease.due is None:
        new = msgspec.structs.replace(state, running=None)
        return Plan(Claim("missed", new, lease), new, at=now)
    running = RunLease(run_id, owner, now, now + lease_ttl, state.last_due, lease.previous)
    new = msgspec.structs.replace(state, last_run=state.last_due, running=running)
    note = f"recovers the run of {lease.due} by {lease.owner}, which did not finish"
    fire = FireRecord(
        state.name, state.last_due, "recovered", owner, lease.previous, now, run_id, note=note
    )
    return Plan(Claim("recovered", new, lease, lease.previous), new, fire, at=now)


def plan_manual(
    state: ScheduleState, *, owner: str, now: float, lease_ttl: float, run_id: str
) -> Plan:
    """A manual trigger: a run lease unless a run is live (``overlap``). It claims no fire
    time, so misfire bookkeeping (``last_due``, ``last_run``) stays as it was."""
    if _live(state.running, now):
        return Plan(Claim("overlap", state, state.running))
    running = RunLease(run_id, owner, now, now + lease_ttl, None, None)
    new = msgspec.structs.replace(state, running=running)
    return Plan(Claim("fired", new), new, at=now)


def plan_renew(state: ScheduleState, run_id: str, *, now: float, lease_ttl: float) -> Plan:
    """Extend run ``run_id``'s lease; ``taken`` when it is not that run's any more."""
    lease = state.running
    if lease is None or lease.run_id != run_id:
        return Plan(Claim("taken", state, lease))
    renewed = msgspec.structs.replace(lease, until=now + lease_ttl)
    new = msgspec.structs.replace(state, running=renewed)
    return Plan(Claim("fired", new), new, at=now)


def plan_finish(state: ScheduleState, run_id: str, *, now: float, ok: bool) -> Plan:
    """Run ``run_id`` ended: clear its lease (if still its) and mark its history row."""
    lease = state.running
    new = None
    if lease is not None and lease.run_id == run_id:
        new = msgspec.structs.replace(state, running=None)
    return Plan(Claim("fired", new or state), new, finished=(run_id, now, ok), at=now)


class ScheduleStore(abc.ABC):
    """Where ``cron:`` keeps its rows; subclasses apply a :class:`Plan` under a row lock."""

    #: True when other processes see the same rows (run leases must then be renewed).
    shared: bool = True

    @property
    @abc.abstractmethod
    def name(self) -> str:
        """How messages name the store (``sqlite:data/schedules.db``, no credentials)."""

    async def start(self) -> None:
        """Open the store (create the file or tables)."""

    async def stop(self) -> None:
        """Close the store."""

    @abc.abstractmethod
    async def open(self, name: str, schedule: str, now: float) -> ScheduleState:
        """The schedule's row as it was (created with ``last_due=now`` when there is none);
        the row's schedule text becomes ``schedule``."""

    @abc.abstractmethod
    async def apply(self, name: str, planner: Callable[[ScheduleState], Plan]) -> Claim:
        """Run ``planner`` on the row under its lock and write what it planned."""

    @abc.abstractmethod
    async def history(self, name: str, limit: int = 100) -> list[FireRecord]:
        """The schedule's history, newest fire time first."""

    async def claim(self, name: str, due: float, wanted: str, **kw: Any) -> Claim:
        return await self.apply(name, lambda s: plan_claim(s, due, wanted, **kw))

    async def recover(self, name: str, dead_run: str, **kw: Any) -> Claim:
        return await self.apply(name, lambda s: plan_recover(s, dead_run, **kw))

    async def begin_manual(self, name: str, **kw: Any) -> Claim:
        return await self.apply(name, lambda s: plan_manual(s, **kw))

    async def renew(self, name: str, run_id: str, **kw: Any) -> bool:
        claim = await self.apply(name, lambda s: plan_renew(s, run_id, **kw))
        return claim.outcome != "taken"

    async def finish(self, name: str, run_id: str, **kw: Any) -> None:
        await self.apply(name, lambda s: plan_finish(s, run_id, **kw))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


def default_store_uri() -> str:
    """``sqlite:<data>/schedules.db``, ``<data>`` being ``$EIP_DATA_DIR`` (default ``./data``)."""
    return f"sqlite:{Path(os.environ.get('EIP_DATA_DIR', 'data')) / 'schedules.db'}"


def open_schedule_store(uri: str | None, *, table: str = "eip_schedules") -> ScheduleStore:
    """The store ``uri`` names: None or ``memory``, ``sqlite`` (the default file),
    ``sqlite:PATH``, or a PostgreSQL DSN (``postgresql://user@host/db``). Not started."""
    if uri is None or uri == "memory":
        from eip.stores.schedules_memory import MemoryScheduleStore

        return MemoryScheduleStore()
    if uri == "sqlite":
        uri = default_store_uri()
    scheme, sep, rest = uri.partition(":")
    if scheme in ("postgresql", "postgres") and rest.startswith("//"):
        from eip.stores.schedules_postgres import PostgresScheduleStore

        return PostgresScheduleStore(uri, table=table)
    if scheme == "sqlite" and sep and rest:
        from eip.stores.schedules_sqlite import SqliteScheduleStore

        return SqliteScheduleStore(rest[2:] if rest.startswith("//") else rest, table=table)
    raise ValueError(
        f"schedule store {redact_uri(uri)!r}: write sqlite (the file "
        f"{default_store_uri()[7:]}), sqlite:PATH or postgresql://user@host/db"
    )
