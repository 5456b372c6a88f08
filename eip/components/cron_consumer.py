"""``CronConsumer``: when a ``cron:`` schedule fires, misfires, overlaps or recovers (the rules
are in :mod:`eip.components.cron`; the runs themselves in :mod:`eip.components.cron_runs`).

The loop sleeps on the context clock until the next fire time after the last one accounted
for (``last_due``), or until another instance's run lease expires, whichever is first. At a
wake it claims the latest fire time due (:meth:`~eip.stores.schedules.ScheduleStore.claim`):
on time, late (misfire), or, while a run goes on here, as an overlap; the store says what it
became. A store error is logged, counted and retried (1 s doubling to 30 s); the times that
pass meanwhile are judged by the misfire policy once it answers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any

from eip.components.cron_runs import CronRuns
from eip.stores.base import StoreError
from eip.stores.schedules import RUNS, Claim, RunLease

__all__ = ["CronConsumer"]

log = logging.getLogger("eip.cron")


class CronConsumer(CronRuns):
    """A ``cron:`` route's consumer: one per route and instance."""

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        self._stopping = False
        store = await self.component.store_for(self.spec)
        try:
            state = await store.open(self.name, self.spec.schedule, self.clock.time())
        except StoreError as exc:
            raise StoreError(
                f"cron:{self.name} could not read its schedule from store {store.name}: {exc}"
            ) from exc
        if state.schedule != self.spec.schedule:
            log.warning(
                "cron %s of route %s: store %s had schedule %r, now %r: times missed since "
                "its last fire are judged by the new one",
                self.name,
                self.route.id,
                store.name,
                state.schedule,
                self.spec.schedule,
            )
        self.store = store
        self._last = state.last_due
        self._watch(state.running)
        self._task = asyncio.create_task(self._run(), name=f"{self.route.id}:{self.name}")

    async def stop(self) -> None:
        """Stop scheduling; a store call under way ends first (bounded), then the loop."""
        self._stopping = True
        task = self._task
        if task is None:
            return
        if not self._sleeping:
            await asyncio.wait({task}, timeout=5.0)
        if not task.done():
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        self._task = None

    @property
    def ready(self) -> bool:
        return self._problem is None

    @property
    def problem(self) -> str | None:
        return self._problem

    def counters(self) -> dict[str, Any]:
        """This schedule's counters (the control API adds them to the route's)."""
        return {"schedule": asdict(self.stats)}

    # -- the loop -----------------------------------------------------------------------------
    async def _run(self) -> None:
        pause = 1.0
        while not self.stopping():
            if self._suspended():
                await self._wait_resumed()
                if not self.stopping() and not self._suspended():
                    await self._guarded(self._skip_suspended)
                continue
            wake = self.schedule.next_after(self._last)
            if self._foreign is not None:
                wake = min(wake, self._foreign.until)
            delay = wake - self.clock.time()
            if delay > 0:
                await self._sleep(delay)
                if self.stopping():
                    return
                if self._suspended():
                    continue
            else:
                await asyncio.sleep(0)
            if await self._guarded(self._wake):
                pause = 1.0
            else:  # the store failed: try again, the times that pass meanwhile are late
                await self._sleep(pause)
                pause = min(pause * 2, 30.0)

    def _suspended(self) -> bool:
        return self._resumed is not None

    async def _guarded(self, step: Callable[[], Awaitable[None]]) -> bool:
        try:
            await step()
        except StoreError as exc:
            self.stats.store_errors += 1
            where = self.store.name if self.store is not None else "?"
            self._problem = f"schedule store {where} failed: {exc}"
            log.error(
                "cron %s of route %s: schedule store %s failed: %s; retrying (fire times that "
                "pass meanwhile are judged by the misfire policy)",
                self.name,
                self.route.id,
                where,
                exc,
            )
            return False
        self._problem = None
        return True

    async def _wake(self) -> None:
        """Claim the latest fire time due, if any (a run after a dead one covers its times
        too); else, when another instance's run lease has expired, recover that run."""
        now = self.clock.time()
        due = self.schedule.latest_due(now, self._last)
        if due is not None:
            await self._claim(due, now)
        foreign = self._foreign  # as the claim left it
        if foreign is not None and now >= foreign.until:
            await self._recover(foreign, now)

    async def _claim(self, due: float, now: float) -> None:
        late = now - due
        if self._run_since is not None or self._running:
            wanted = "overlap"  # this instance's run is still going
        elif late <= self.spec.misfire_threshold:
            wanted = "fired"
        else:
            wanted = "misfire" if self.spec.misfire == "run_once" else "missed"
        run_id = uuid.uuid4().hex
        recover = self.spec.misfire == "run_once"
        claim = await self._store.claim(
            self.name, due, wanted, recover=recover, **self._lease_args(now, run_id)
        )
        self._seen(claim)
        outcome = claim.outcome
        if outcome in RUNS:
            self._report_run(outcome, due, late, claim)
            fire = "schedule" if outcome == "fired" else "misfire"
            self._begin(run_id, due, claim.previous, fire)
        elif outcome == "overlap":
            self._report_overlap(f"fire time {self.schedule.describe(due)}", claim.lease, now)
        elif outcome == "missed":
            self.stats.misfires_skipped += 1
            log.warning(
                "cron %s of route %s: fire time %s was missed by %.0f s (no instance was up); "
                "misfire=skip: waiting for the next, %s",
                self.name,
                self.route.id,
                self.schedule.describe(due),
                late,
                self.schedule.describe(self.schedule.next_after(due)),
            )
        else:
            self.stats.taken_elsewhere += 1
            log.debug("cron %s: fire time %s taken by another instance", self.name, due)

    def _report_run(self, outcome: str, due: float, late: float, claim: Claim) -> None:
        if outcome == "fired":
            self.stats.fired += 1
        else:
            self.stats.misfire_runs += 1
            log.warning(
                "cron %s of route %s: fire time %s was missed by %.0f s (no instance was up); "
                "misfire=run_once: running once now",
                self.name,
                self.route.id,
                self.schedule.describe(due),
                late,
            )
        dead = claim.lease  # a run whose instance died, which this one covers too
        if dead is not None and dead.due is not None:
            log.warning(
                "cron %s of route %s: the run of %s on instance %s did not finish (its lease "
                "expired); the run of %s covers its times too",
                self.name,
                self.route.id,
                self.schedule.describe(dead.due),
                dead.owner,
                self.schedule.describe(due),
            )

    async def _recover(self, dead: RunLease, now: float) -> None:
        run_id = uuid.uuid4().hex
        run = self.spec.misfire == "run_once"
        claim = await self._store.recover(
            self.name, dead.run_id, run=run, **self._lease_args(now, run_id)
        )
        self._seen(claim)
        if claim.outcome == "taken":
            return  # renewed (its instance lives), finished, or recovered by another
        what = (
            "a manual run" if dead.due is None else f"the run of {self.schedule.describe(dead.due)}"
        )
        if claim.outcome == "recovered":
            self.stats.recoveries += 1
            log.warning(
                "cron %s of route %s: %s on instance %s did not finish (its lease expired "
                "%.1f s ago: the instance is gone); misfire=run_once: running it again now",
                self.name,
                self.route.id,
                what,
                dead.owner,
                now - dead.until,
            )
            self._begin(run_id, claim.state.last_due, claim.previous, "recovery")
        else:
            log.warning(
                "cron %s of route %s: %s on instance %s did not finish (its lease expired); "
                "not run again (%s)",
                self.name,
                self.route.id,
                what,
                dead.owner,
                "misfire=skip" if dead.due is not None else "manual runs are not recovered",
            )

    async def _skip_suspended(self) -> None:
        now = self.clock.time()
        due = self.schedule.latest_due(now, self._last)
        if due is None:
            return
        claim = await self._store.claim(
            self.name, due, "suspended", recover=False, **self._lease_args(now, "")
        )
        self._seen(claim)
        if claim.outcome == "suspended":
            self.stats.suspended_skipped += 1
            log.info(
                "cron %s of route %s: fire times up to %s skipped while suspended",
                self.name,
                self.route.id,
                self.schedule.describe(due),
            )
