"""The route of the multi-instance test: CRM customer events, partitioned by customer.

Loaded by ``eip run tests.multi_instance_routes`` in each of several processes (one per
instance), configured through the environment (``MULTI_*``, set by
:mod:`tests.multi_instance_support`). It follows ``routes/crm_customer_events.py``: the CRM
publishes customer events to the ``crm.events`` topic exchange; here they are spread by
customer over N quorum queues, and every instance applies them to PostgreSQL.

The layout (consistent hash + single active consumer):

- ``<prefix>crm.customer.partitioned`` is an ``x-consistent-hash`` exchange hashing the
  ``customer_id`` header, bound to ``crm.events`` (``customer.changed``), with N quorum queues
  ``<prefix>crm.customer.changed.<n>`` bound to it, weight 1 each. All events of a customer
  land in one queue, in the order they were published.
- Each queue has ``x-single-active-consumer``: however many instances consume it, one gets its
  messages, one at a time (``concurrency=1``), so a customer's events are applied in order.
- **Every instance consumes every queue.** Its own share (queue ``n`` with ``n % instances ==
  index``) starts with it; the others start later, when the operator (the test, through the
  control API) starts them, so they queue up behind the owners as standbys. When an instance
  dies, each of its queues fails over to a standby, with its unacked messages back at the
  head of the queue: the order holds across the fail-over. (RabbitMQ 4.0+ can express the
  preference with consumer priorities; 3.10 activates the first consumer registered.)

Per event (``crm-apply``, called through ``direct:`` in the consuming route's unit of work):

1. the idempotent consumer claims the event id in a
   :class:`~eip.stores.PostgresTransactionalIdempotentRepository` (``MULTI_STORE=lease``
   uses the plain :class:`~eip.stores.PostgresIdempotentRepository` instead, to measure the
   difference);
2. the effect, in the claim's transaction: a row in ``<tables>_effects`` (no unique
   constraint, so a duplicate effect would show) and the customer's state in
   ``<tables>_customers``, which counts updates applied out of order; both commit with the
   claim when the exchange completes;
3. an aggregator on a :class:`~eip.stores.PostgresAggregationRepository` collects the events
   of a territory (5 customers, ``customer_id % territories``) per round (4 updates per
   customer, ``seq // 4``): 20 events from customers on different queues, so from different
   instances. Each completed group is recorded in ``<tables>_groups`` (one row per delivery).
   ``force_completion_on_stop`` is off: with a shared store, an instance that stops must not
   complete the groups the others are still filling.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import msgspec

from eip import Exchange, RouteBuilder
from eip import headers as H
from eip.components.rabbitmq import RabbitMQSpec, rabbitmq
from eip.dataformats import json
from eip.stores import (
    IdempotentRepository,
    PostgresAggregationRepository,
    PostgresIdempotentRepository,
    PostgresTransactionalIdempotentRepository,
)

__all__ = ["CustomerEvent", "MultiInstanceEvents", "Settings", "partition_spec"]

CUSTOMERS_PER_TERRITORY = 5
ROUND = 4  # updates per customer per group


class CustomerEvent(msgspec.Struct, frozen=True):
    """A CRM customer-changed event with the customer's own sequence number."""

    event_id: str
    customer_id: int
    seq: int
    name: str
    email: str
    segment: str
    changed_at: str


class Settings(msgspec.Struct, frozen=True):
    """What an instance is told through the environment (``MULTI_*``)."""

    prefix: str
    dsn: str
    tables: str
    queues: int
    instances: int
    index: int
    name: str
    customers: int
    store: str = "transactional"
    url: str = "amqp://guest:guest@127.0.0.1:5672/"
    prefetch: int = 50
    recovery_interval: float = 2.0

    @classmethod
    def from_env(cls) -> Settings:
        raw = {k[6:].lower(): v for k, v in os.environ.items() if k.startswith("MULTI_")}
        return msgspec.convert(raw, cls, strict=False)

    @property
    def territories(self) -> int:
        return max(1, self.customers // CUSTOMERS_PER_TERRITORY)

    def owns(self, queue: int) -> bool:
        return queue % self.instances == self.index


def group_key(customer_id: int, seq: int, territories: int) -> str:
    return f"t{customer_id % territories}-r{seq // ROUND}"


def partition_spec(settings: Settings, queue: int) -> RabbitMQSpec:
    p = settings.prefix
    return rabbitmq(
        f"{p}crm.customer.partitioned",
        exchange_type="x-consistent-hash",
        exchange_arguments={"hash-header": "customer_id"},
        exchange_bindings=[f"{p}crm.events:customer.changed"],
        queue=f"{p}crm.customer.changed.{queue}",
        queue_type="quorum",
        queue_arguments={"x-single-active-consumer": True},
        dead_letter_exchange=f"{p}crm.dlx",
        prefetch=settings.prefetch,
        concurrency=1,
        url=settings.url,
    )


class Effects:
    """The SQL of the effects, and a pool for what is not written in a claim's transaction
    (the group records; the effects too with ``MULTI_STORE=lease``), opened on first use."""

    def __init__(self, settings: Settings) -> None:
        t = settings.tables
        self.dsn = settings.dsn
        self.apply = (
            f'WITH applied AS (INSERT INTO "{t}_effects" (event_id, customer_id, seq, instance) '
            "VALUES ($1, $2, $3, $4)) "
            f'INSERT INTO "{t}_customers" AS c (customer_id, last_seq, applied, out_of_order) '
            "VALUES ($2, $3, 1, CASE WHEN $3 = 0 THEN 0 ELSE 1 END) "
            "ON CONFLICT (customer_id) DO UPDATE SET last_seq = EXCLUDED.last_seq, "
            "applied = c.applied + 1, out_of_order = c.out_of_order + "
            "CASE WHEN EXCLUDED.last_seq = c.last_seq + 1 THEN 0 ELSE 1 END"
        )
        self.group = (
            f'INSERT INTO "{t}_groups" (key, completed_id, size, events, instance, redelivered) '
            "VALUES ($1, $2, $3, $4, $5, $6)"
        )
        self._pool: Any = None
        self._opening = asyncio.Lock()

    async def pool(self) -> Any:
        if self._pool is None:
            async with self._opening:
                if self._pool is None:
                    import asyncpg

                    self._pool = await asyncpg.create_pool(self.dsn, min_size=1, max_size=4)
        return self._pool


def collect(old: Exchange | None, new: Exchange) -> Exchange:
    """Aggregation strategy: the group's event ids."""
    event: CustomerEvent = new.body
    if old is None:
        return Exchange([event.event_id])
    old.body.append(event.event_id)
    return old


class MultiInstanceEvents(RouteBuilder):
    def configure(self) -> None:
        settings = Settings.from_env()
        effects = Effects(settings)
        repository: IdempotentRepository
        if settings.store == "transactional":
            claims = PostgresTransactionalIdempotentRepository(
                settings.dsn, table=f"{settings.tables}_seen", pool_size=settings.queues + 2
            )
            repository = claims

            async def apply(exchange: Exchange) -> None:
                event: CustomerEvent = exchange.body
                await claims.connection(event.event_id).execute(
                    effects.apply, event.event_id, event.customer_id, event.seq, settings.name
                )
        else:
            repository = PostgresIdempotentRepository(settings.dsn, table=f"{settings.tables}_seen")

            async def apply(exchange: Exchange) -> None:
                event: CustomerEvent = exchange.body
                pool = await effects.pool()
                await pool.execute(
                    effects.apply, event.event_id, event.customer_id, event.seq, settings.name
                )

        async def record_group(exchange: Exchange) -> None:
            pool = await effects.pool()
            await pool.execute(
                effects.group,
                exchange.properties[H.AGGREGATED_KEY],
                exchange.properties[H.AGGREGATED_ID],
                exchange.properties[H.AGGREGATED_SIZE],
                list(exchange.body),
                settings.name,
                bool(exchange.properties[H.AGGREGATED_REDELIVERED]),
            )

        territories = settings.territories
        for queue in range(settings.queues):
            (
                self.from_(partition_spec(settings, queue))
                .route_id(f"crm-events-{queue}")
                .auto_startup(settings.owns(queue))
                .to("direct:crm-apply")
            )
        (
            self.from_("direct:crm-apply")
            .route_id("crm-apply")
            .unmarshal(json(CustomerEvent))
            .idempotent_consumer(lambda ex: ex.body.event_id, repository)
            .process(apply)
            .aggregate(
                lambda ex: group_key(ex.body.customer_id, ex.body.seq, territories),
                collect,
                completion_size=CUSTOMERS_PER_TERRITORY * ROUND,
                repository=PostgresAggregationRepository(
                    settings.dsn, name="territories", table_prefix=f"{settings.tables}_agg"
                ),
                force_completion_on_stop=False,
                recovery_interval=settings.recovery_interval,
            )
            .process(record_group)
        )
