"""The CRM customer-events example route against the real broker."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import msgspec

from eip import Context
from eip import headers as H
from eip.components.rabbitmq._amqp import Properties, connect
from eip.security import FieldCipher
from routes._support import FAILURE_HEADERS
from routes.crm_customer_events import (
    DEMO_FIELD_KEYS,
    PERSONAL_FIELDS,
    SAMPLE_DIR,
    CrmCustomerEventDeadLetters,
    CrmCustomerEvents,
    ErpCustomerUpsert,
    sample_events,
)
from tests.crm_support import assert_failure, read_letter, wait_for_file

URL = "amqp://guest:guest@127.0.0.1:5672/"
QUEUES = ("crm.customer.changed", "crm.customer.changed.dead", "erp.customer.upsert")
EXCHANGES = ("crm.events", "crm.dlx", "erp.customers")


async def test_events_become_confirmed_upserts_and_bad_ones_are_dead_lettered(
    tmp_path: Path,
) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}."
    context = Context()
    context.add_routes(
        CrmCustomerEventDeadLetters(prefix, data=tmp_path),
        CrmCustomerEvents(prefix, demo_erp=False, data=tmp_path),
    )
    connection = await connect(URL)
    channel = await connection.channel(publisher_confirms=True)
    try:
        async with context:
            # the ERP's queue, bound before events flow
            upserts = f"{prefix}erp.customer.upsert"
            await channel.queue_declare(upserts)
            await channel.queue_bind(upserts, f"{prefix}erp.customers", "erp.customer.upsert")
            # the demo's samples, as the demo publishes them: the third one is poison
            for message_id, data in sample_events():
                properties = Properties(delivery_mode=2, message_id=message_id)
                seq = channel.publish(data, f"{prefix}crm.events", "customer.changed", properties)
                await channel.wait_confirm(seq)
            received: list[Any] = []
            got_one = asyncio.Event()

            def on_upsert(deliveries: list[Any]) -> None:
                received.extend(deliveries)
                got_one.set()

            await channel.basic_consume(upserts, on_upsert, no_ack=True)
            await asyncio.wait_for(got_one.wait(), 10)
            # the poison event: dead-lettered through crm.dlx, then written as a file
            dead = tmp_path / "dead-letter" / "customer-events" / "crm-evt-20261123-0003.json"
            await wait_for_file(dead, timeout=15)
        (upsert,) = received  # the b2c customer was filtered out
        on_the_queue = msgspec.json.decode(upsert.body)
        assert on_the_queue["name"].startswith("eip1.demo1.")  # encrypted on the queue
        assert on_the_queue["email"].startswith("eip1.demo1.")
        assert b"ada@example.com" not in upsert.body
        sealed = msgspec.json.decode(upsert.body, type=ErpCustomerUpsert)
        record = FieldCipher(PERSONAL_FIELDS, DEMO_FIELD_KEYS).decrypt(sealed)
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
        assert upsert.properties.message_id == "crm-evt-20261123-0001"

        letter = read_letter(dead)
        assert_failure(letter, "UnmarshalError", "crm-customer-events", "$.active")
        assert letter.failure[H.FAILURE_ENDPOINT] == "unmarshal(json)"
        assert letter.headers["rabbitmq.message_id"] == "crm-evt-20261123-0003"
        assert letter.headers["rabbitmq.exchange"] == f"{prefix}crm.dlx"
        poison = (SAMPLE_DIR / "crm-evt-20261123-0003.json").read_bytes()
        assert (letter.body_encoding, letter.original_body()) == ("text", poison)  # as it came
        # nothing left behind: every event settled (the poison one acked after its dead
        # letter was confirmed), and the dead letter taken from its queue
        check = await connection.channel()
        for queue in ("crm.customer.changed", "crm.customer.changed.dead"):
            _, messages, _ = await check.queue_declare(prefix + queue, passive=True)
            assert messages == 0, queue
    finally:
        cleanup = await connection.channel()
        for queue in QUEUES:
            await cleanup.queue_delete(prefix + queue)
        for exchange in EXCHANGES:
            await cleanup.exchange_delete(prefix + exchange)
        await connection.close()


async def test_a_dead_letter_without_failure_headers_is_still_filed(tmp_path: Path) -> None:
    """What the broker dead-letters itself (a rejected event: its dead letter could not be
    published) has no failure headers; it is filed all the same, named by its body."""
    prefix = f"t{uuid.uuid4().hex[:8]}."
    context = Context()
    context.add_routes(CrmCustomerEventDeadLetters(prefix, data=tmp_path))
    connection = await connect(URL)
    channel = await connection.channel(publisher_confirms=True)
    try:
        async with context:
            seq = channel.publish(b"{not json", f"{prefix}crm.dlx", "", Properties(delivery_mode=2))
            await channel.wait_confirm(seq)
            folder = tmp_path / "dead-letter" / "customer-events"
            filed: list[Path] = []
            for _ in range(500):  # finished files only: not the producer's hidden temp file
                filed = [p for p in folder.glob("*.json") if not p.name.startswith(".")]
                if filed:
                    break
                await asyncio.sleep(0.02)
            (dead,) = filed
        assert dead.name.startswith("event-")
        letter = read_letter(dead)
        assert letter.failure == dict.fromkeys(FAILURE_HEADERS)  # each one there, as None
        assert letter.original_body() == b"{not json"
    finally:
        cleanup = await connection.channel()
        await cleanup.queue_delete(f"{prefix}crm.customer.changed.dead")
        await cleanup.exchange_delete(f"{prefix}crm.dlx")
        await connection.close()
