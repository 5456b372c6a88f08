"""``cron:name`` - start exchanges at the times of a cron expression, for production.

``cron:nightly?schedule=0+3+*+*+*&timezone=Asia/Shanghai&store=sqlite`` fires at 03:00
Shanghai time. ``schedule`` has five fields (cron(8)) or six with seconds first (Quartz);
``+`` or ``%20`` stand for spaces in a URI. Times are wall-clock times in ``timezone``
(:mod:`eip.components.cron_schedule`: DST gaps fire after the jump, repeated hours once).

**Where it remembers** (``store``): without one, in memory, so a restart forgets: the first
fire after a start is the next time from then (a time that passed while the server was down
is not run, as ``misfire=skip``), and instances do not know of each other (each fires every
time). ``store=sqlite`` (``$EIP_DATA_DIR/schedules.db``), ``store=sqlite:PATH`` or
``store=postgresql://user@host/db`` keep the schedule's row (:mod:`eip.stores.schedules`),
``table`` names its tables.

**Misfires** (Quartz's semantics, with a store). A fire time that passed with no instance up
is found at start (and after a store outage): if it is more than ``misfire_threshold``
seconds late (default 60), ``misfire=run_once`` (the default) runs once now, for all the
times missed, and ``misfire=skip`` records them skipped and waits for the next. Less late, it
simply runs. A route stopped and started again is judged as a restart; times that fall due
while a route is *suspended* are skipped (``resume`` records them so).

**No overlap.** A fire time that comes while a run is still going (on any instance sharing
the store, or a manual trigger's run) is not started: it is recorded ``overlap``, logged as a
WARNING naming the route, the fire time and how long the run has gone, and counted
(``overlaps_skipped`` in the control API's route counters). The next run covers it: its
``eip.cron.previous_time`` is the last run's fire time.

**One runner across instances.** Every instance wakes at each fire time and claims it in the
store; the claim is atomic, so exactly one runs it and the others see it taken. The run holds
a **run lease** (``lease_ttl`` seconds, default 30, renewed every third of that while it
goes on). An instance killed mid-run leaves its lease to expire: within ``lease_ttl`` another
instance sees that and, with ``misfire=run_once``, runs once again what the dead run stood
for (``eip.cron.fire`` = ``recovery``), unless a fire time comes first, whose run then
covers the dead run's times too; with ``skip`` it clears the lease and waits for the next
time. Killed between runs, it holds nothing: the next time runs on another instance. No
advisory lock, no leader: nothing is held between transactions but a run's lease.

Headers: ``eip.timer.name``, ``eip.timer.counter`` (this instance's count),
``eip.timer.fired_time`` (when it fired), ``eip.cron.fire`` (``schedule``, ``misfire``,
``recovery``, ``manual``), ``eip.cron.scheduled_time`` and ``eip.cron.previous_time``
(a run covers the fire times in ``(previous, scheduled]``).

A manual trigger (``POST /routes/{id}/trigger``) runs once now under a run lease too, and is
refused while a run is going here; one going on another instance is found by the background
run, which then logs and counts an overlap and does not route. It claims no fire time, so
misfire bookkeeping is untouched.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from eip.components.base import Component, Consumer, EndpointSpec, Producer
from eip.components.cron_consumer import CronConsumer
from eip.components.cron_schedule import check_schedule, load_zone
from eip.components.typed import make_spec, typed_spec
from eip.errors import RouteDefinitionError
from eip.stores._common import validate_identifier
from eip.stores.base import StoreError
from eip.stores.schedules import ScheduleStore, open_schedule_store
from eip.stores.schedules_memory import MemoryScheduleStore

if TYPE_CHECKING:
    from eip.runtime.route import Route

__all__ = ["CronComponent", "CronConsumer", "CronSpec", "cron"]

log = logging.getLogger("eip.cron")

Misfire = Literal["run_once", "skip"]


class CronSpec(EndpointSpec, frozen=True):
    scheme: ClassVar[str] = "cron"
    name: str
    schedule: str
    timezone: str = "UTC"
    store: str | None = None
    misfire: str = "run_once"  # checked in validate, to list the choices when wrong
    misfire_threshold: float = 60.0
    lease_ttl: float = 30.0
    table: str = "eip_schedules"


@typed_spec(CronSpec)
def cron(
    name: str,
    schedule: str,
    *,
    timezone: str = "UTC",
    store: str | None = None,
    misfire: Misfire = "run_once",
    misfire_threshold: float = 60.0,
    lease_ttl: float = 30.0,
    table: str = "eip_schedules",
) -> CronSpec:
    """Typed form of ``cron:name?schedule=...``."""
    return make_spec(
        CronSpec,
        {
            "name": name,
            "schedule": schedule,
            "timezone": timezone,
            "store": store,
            "misfire": misfire,
            "misfire_threshold": misfire_threshold,
            "lease_ttl": lease_ttl,
            "table": table,
        },
    )


class CronComponent(Component):
    scheme: ClassVar[str] = "cron"
    spec_type: ClassVar[type[EndpointSpec]] = CronSpec

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        self._stores: dict[tuple[str, str], ScheduleStore] = {}
        self._opening = asyncio.Lock()
        self._consumers: weakref.WeakSet[CronConsumer] = weakref.WeakSet()

    def validate(self, spec: Any) -> None:
        load_zone(spec.timezone)
        check_schedule(spec.schedule)
        if spec.misfire not in ("run_once", "skip"):
            raise ValueError(f"misfire must be 'run_once' or 'skip', got {spec.misfire!r}")
        if spec.misfire_threshold < 0:
            raise ValueError(
                f"misfire_threshold must be >= 0 seconds, got {spec.misfire_threshold}"
            )
        if spec.lease_ttl <= 0:
            raise ValueError(f"lease_ttl must be > 0 seconds, got {spec.lease_ttl}")
        validate_identifier(spec.table)
        if spec.store is not None:
            try:
                open_schedule_store(spec.store, table=spec.table)
            except ImportError as exc:
                raise ValueError(f"store: {exc}") from None
            except ValueError as exc:
                raise ValueError(f"store: {exc}") from None

    async def store_for(self, spec: CronSpec) -> ScheduleStore:
        """The started store of ``spec``: one per store and table in this context (a pool
        shared by its schedules), or a memory store of the consumer's own."""
        if spec.store is None or spec.store == "memory":
            return MemoryScheduleStore()
        key = (spec.store, spec.table)
        async with self._opening:
            store = self._stores.get(key)
            if store is None:
                store = open_schedule_store(spec.store, table=spec.table)
                try:
                    await store.start()
                except (StoreError, OSError) as exc:
                    raise StoreError(f"schedule store {store.name} could not open: {exc}") from exc
                self._stores[key] = store
        return store

    def create_producer(self, spec: Any) -> Producer:
        raise RouteDefinitionError("cron: endpoints can only be consumed from (from_)")

    def create_consumer(self, spec: Any, route: Route) -> Consumer:
        consumer = CronConsumer(self, spec, route)
        self._consumers.add(consumer)
        return consumer

    async def stop(self) -> None:
        """Let runs release their leases, then close the stores."""
        for consumer in list(self._consumers):
            await consumer.wait_runs(5.0)
        stores, self._stores = list(self._stores.values()), {}
        for store in stores:
            try:
                await store.stop()
            except StoreError:
                log.exception("closing schedule store %s failed", store.name)
