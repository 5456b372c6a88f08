"""What a ``cron:`` run is: an exchange routed under a run lease (:mod:`eip.stores.schedules`),
renewed while it goes on and ended when it ends, and the manual trigger that runs one under
the same rule. :class:`CronRuns` is the half of :class:`~eip.components.cron_consumer.
CronConsumer` that runs things; the other half decides when.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from eip import headers as H
from eip.components.cron_schedule import CronSchedule, load_zone
from eip.components.scheduled import ScheduledConsumer
from eip.message import Exchange
from eip.stores.base import StoreError
from eip.stores.schedules import Claim, RunLease, ScheduleStore

if TYPE_CHECKING:
    from eip.components.cron import CronComponent, CronSpec
    from eip.runtime.route import Route

__all__ = ["CronRuns", "CronStats"]

log = logging.getLogger("eip.cron")


@dataclass
class CronStats:
    """What this instance's schedule did, for the control API's route counters."""

    fired: int = 0  # runs started on time
    misfire_runs: int = 0  # runs for times missed while down (misfire=run_once)
    recoveries: int = 0  # runs again for a run whose instance died
    manual_runs: int = 0
    overlaps_skipped: int = 0  # fire times (or triggers) not started: a run was going
    misfires_skipped: int = 0  # times missed while down, skipped (misfire=skip)
    suspended_skipped: int = 0
    taken_elsewhere: int = 0  # fire times another instance claimed
    store_errors: int = 0


def _owner() -> str:
    """Who claims: unique per consumer, readable in the store (host:pid:random)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class CronRuns(ScheduledConsumer):
    """Runs under a lease, the manual trigger, and the overlap report they share."""

    def __init__(self, component: CronComponent, spec: CronSpec, route: Route) -> None:
        super().__init__(component.context, spec.name, route)
        self.component = component
        self.spec = spec
        self.schedule = CronSchedule(spec.schedule, load_zone(spec.timezone))
        self.owner = _owner()
        self.stats = CronStats()
        self.store: ScheduleStore | None = None
        self._last = 0.0  # the store's last_due, as last seen
        self._foreign: RunLease | None = None  # another instance's run, watched for expiry
        self._run_since: float | None = None  # this consumer's run going on, since
        self._problem: str | None = None
        #: A lease renewal is under way (tests on a manual clock wait for it to land).
        self.renewing = False

    def _watch(self, lease: RunLease | None) -> None:
        self._foreign = lease if lease is not None and lease.owner != self.owner else None

    def _seen(self, claim: Claim) -> None:
        self._last = max(self._last, claim.state.last_due)
        self._watch(claim.state.running)

    @property
    def _store(self) -> ScheduleStore:
        if self.store is None:
            raise StoreError(f"cron:{self.name} is not started")
        return self.store

    def _lease_args(self, now: float, run_id: str) -> dict[str, Any]:
        return {"owner": self.owner, "now": now, "lease_ttl": self.spec.lease_ttl, "run_id": run_id}

    def _report_overlap(self, when: str, lease: RunLease | None, now: float) -> None:
        self.stats.overlaps_skipped += 1
        if lease is None or lease.owner == self.owner:
            since = self._run_since if self._run_since is not None else now
            where = "on this instance"
        else:
            since, where = lease.since, f"on instance {lease.owner}"
        log.warning(
            "cron %s of route %s: %s not started: the run that started %.1f s ago (at %s, %s) "
            "is still going",
            self.name,
            self.route.id,
            when,
            now - since,
            self.schedule.describe(since),
            where,
        )

    # -- runs ---------------------------------------------------------------------------------
    def _begin(self, run_id: str, due: float, previous: float | None, fire: str) -> None:
        exchange = self._exchange(
            {H.CRON_FIRE: fire, H.CRON_SCHEDULED_TIME: due, H.CRON_PREVIOUS_TIME: previous}
        )
        self._run_since = self.clock.time()
        self.route.inflight += 1  # held until _fire, so a shutdown now still waits for it
        self._spawn(self._run_exchange(exchange, run_id), "cron-run")

    async def _run_exchange(self, exchange: Exchange, run_id: str) -> None:
        store = self._store
        renewing = asyncio.create_task(self._renew(run_id)) if store.shared else None
        ok = False
        try:
            ok = await self._fire(exchange, held=True)
        finally:
            if renewing is not None:
                renewing.cancel()
            try:
                await store.finish(self.name, run_id, now=self.clock.time(), ok=ok)
            except StoreError as exc:
                log.error(
                    "cron %s of route %s: could not end its run lease in %s (%s): other "
                    "instances wait until it expires (lease_ttl=%s s)",
                    self.name,
                    self.route.id,
                    store.name,
                    exc,
                    self.spec.lease_ttl,
                )
            finally:
                self._run_since = None

    async def _renew(self, run_id: str) -> None:
        """Keep the run lease while the run goes on: a third of ``lease_ttl`` apart."""
        store = self._store
        while True:
            await self.clock.sleep(self.spec.lease_ttl / 3)
            self.renewing = True
            try:
                held = await store.renew(
                    self.name, run_id, now=self.clock.time(), lease_ttl=self.spec.lease_ttl
                )
            except StoreError as exc:
                log.warning(
                    "cron %s of route %s: could not renew its run lease (%s); it expires in "
                    "%s s unless a renewal gets through",
                    self.name,
                    self.route.id,
                    exc,
                    self.spec.lease_ttl,
                )
                continue
            finally:
                self.renewing = False
            if not held:
                log.warning(
                    "cron %s of route %s: its run lease was taken over (it expired): another "
                    "instance may run this fire time again",
                    self.name,
                    self.route.id,
                )
                return

    def trigger(self) -> Exchange | None:
        """Run once now, in the background, under a run lease; None when a run of this
        consumer is going (or it is not started)."""
        if self._running or self._run_since is not None or self._stopping or self.store is None:
            return None
        exchange = self._exchange({H.CRON_FIRE: "manual"})
        self._running = True  # until the task runs: a second trigger is refused at once
        self._run_since = self.clock.time()
        self.route.inflight += 1  # so a shutdown right now still waits for this run
        self._spawn(self._manual(exchange, uuid.uuid4().hex), "trigger")
        return exchange

    async def _manual(self, exchange: Exchange, run_id: str) -> None:
        now = self.clock.time()
        try:
            claim: Claim | None = await self._store.begin_manual(
                self.name, **self._lease_args(now, run_id)
            )
        except StoreError as exc:
            log.error(
                "cron %s of route %s: trigger not run: could not take the run lease: %s",
                self.name,
                self.route.id,
                exc,
            )
            claim = None
        if claim is None or claim.outcome == "overlap":
            if claim is not None:
                self._watch(claim.lease)
                self._report_overlap("a manual trigger", claim.lease, now)
            self._running = False
            self._run_since = None
            self.route.leave()
            return
        self.stats.manual_runs += 1
        await self._run_exchange(exchange, run_id)

    async def wait_runs(self, timeout: float) -> None:
        """Wait for runs to end their bookkeeping (the component closes the store after)."""
        if self._triggered:
            await asyncio.wait(set(self._triggered), timeout=timeout)
