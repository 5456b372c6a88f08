"""The CRM customer-events example route against the real broker."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import msgspec

from eip import Context
from eip.components.rabbitmq._amqp import Properties, connect
from routes.crm_customer_events import SAMPLE_EVENTS, CrmCustomerEvents, ErpCustomerUpsert

URL = "amqp://guest:guest@127.0.0.1:5672/"


async def test_events_become_confirmed_upserts_and_bad_ones_are_dead_lettered() -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}."
    context = Context()
    context.add_routes(CrmCustomerEvents(prefix, demo_erp=False))
    connection = await connect(URL)
    channel = await connection.channel(publisher_confirms=True)
    try:
        async with context:
            # the ERP's queue, bound before events flow
            upserts = f"{prefix}erp.customer.upsert"
            await channel.queue_declare(upserts)
            await channel.queue_bind(upserts, f"{prefix}erp.customers", "erp.customer.upsert")
            for event in [*SAMPLE_EVENTS, {"customer_id": "not a number"}]:
                seq = channel.publish(
                    msgspec.json.encode(event),
                    f"{prefix}crm.events",
                    "customer.changed",
                    Properties(delivery_mode=2),
                )
                await channel.wait_confirm(seq)
            received: list[Any] = []
            got_one = asyncio.Event()

            def on_upsert(deliveries: list[Any]) -> None:
                received.extend(deliveries)
                got_one.set()

            await channel.basic_consume(upserts, on_upsert, no_ack=True)
            await asyncio.wait_for(got_one.wait(), 10)
            # the malformed event: retried three times, then dead-lettered through crm.dlx
            dead_route = context.routes["crm-customer-events-dead"]
            await asyncio.wait_for(_until(lambda: dead_route.exchanges_total >= 1), 15)
            assert context.routes["crm-customer-events"].exchanges_failed == 1
        (upsert,) = received  # the b2c customer was filtered out
        record = msgspec.json.decode(upsert.body, type=ErpCustomerUpsert)
        assert record == ErpCustomerUpsert(
            customer_number="C-001001",
            name="Ada Lovelace",
            email="ada@example.com",
            postal_code="N1",
            country_code="GB",
            source_changed_at="2026-11-23T06:00:00Z",
        )
        assert upsert.properties.content_type == "application/json"
        assert upsert.properties.delivery_mode == 2
    finally:
        cleanup = await connection.channel()
        for queue in ("crm.customer.changed", "crm.customer.changed.dead", "erp.customer.upsert"):
            await cleanup.queue_delete(prefix + queue)
        for exchange in ("crm.events", "crm.dlx", "erp.customers"):
            await cleanup.exchange_delete(prefix + exchange)
        await connection.close()


async def _until(condition: Any) -> None:
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.02)
