"""``MemoryScheduleStore``: the schedule rows of :mod:`eip.stores.schedules` in a dict, for a
``cron:`` without a ``store``. Nothing survives a restart and nothing is shared: each consumer
has its own, so run leases need no renewal (``shared`` is False)."""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from eip.stores.base import StoreError
from eip.stores.schedules import Claim, FireRecord, Plan, ScheduleState, ScheduleStore

__all__ = ["MemoryScheduleStore"]


class MemoryScheduleStore(ScheduleStore):
    """Rows in a dict: what a ``cron:`` without ``store`` uses. A restart forgets them."""

    shared = False

    def __init__(self) -> None:
        self._rows: dict[str, ScheduleState] = {}
        self._history: dict[str, list[FireRecord]] = {}

    @property
    def name(self) -> str:
        return "memory"

    async def open(self, name: str, schedule: str, now: float) -> ScheduleState:
        state = self._rows.get(name) or ScheduleState(name, schedule, now)
        self._rows[name] = msgspec.structs.replace(state, schedule=schedule)
        return state

    async def apply(self, name: str, planner: Callable[[ScheduleState], Plan]) -> Claim:
        state = self._rows.get(name)
        if state is None:
            raise StoreError(f"schedule store memory: no schedule {name!r} (open it first)")
        plan = planner(state)  # no await in between: atomic on the event loop
        if plan.state is not None:
            self._rows[name] = plan.state
        rows = self._history.setdefault(name, [])
        if plan.fire is not None:
            rows.append(plan.fire)
            del rows[:-1000]
        if plan.finished is not None:
            run_id, at, ok = plan.finished
            rows[:] = [
                msgspec.structs.replace(r, finished_at=at, ok=ok) if r.run_id == run_id else r
                for r in rows
            ]
        return plan.claim

    async def history(self, name: str, limit: int = 100) -> list[FireRecord]:
        rows = self._history.get(name, [])
        return sorted(rows, key=lambda r: (r.due, r.claimed_at), reverse=True)[:limit]
