"""The CRM webhook example (routes/crm_webhook.py) against a real fake ERP REST server."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from pytest_asyncio import fixture as async_fixture

from eip import Context
from eip import headers as H
from eip.config import load_config
from routes.crm_webhook import (
    SAMPLE_DIR,
    SAMPLE_WEBHOOK,
    WEBHOOK_PATH,
    CrmCustomerWebhook,
    DemoErpApi,
    dead_letter_name,
)
from tests.crm_support import assert_failure, read_letter, wait_for_file
from tests.http.fake_erp import FakeErp, Reply

KEY = "test-crm-key"
ROOT = Path(__file__).resolve().parent.parent


class Setup:
    def __init__(self, erp: FakeErp, url: str, client: httpx.AsyncClient, data: Path) -> None:
        self.erp, self.url, self.client, self.data = erp, url, client, data

    async def post(self, body: Any, key: str | None = KEY) -> httpx.Response:
        headers = {"x-api-key": key} if key else {}
        return await self.client.post(f"{self.url}{WEBHOOK_PATH}", json=body, headers=headers)


@async_fixture
async def webhook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Setup]:
    async with FakeErp() as erp:
        monkeypatch.setenv("EIP_DATA_DIR", str(tmp_path))
        monkeypatch.setenv("EIP_DEMO", "0")
        monkeypatch.setenv("EIP_ERP__URL", erp.url)  # {{erp.url}}, from the environment
        monkeypatch.setenv("CRM_WEBHOOK_KEYS", f"other-key,{KEY}")
        monkeypatch.setenv("ERP_API_TOKEN", "erp-token-1")
        erp.reply("/api/customers/*", Reply(200, json={"erp_id": "E-77"}))
        context = Context(shutdown_timeout=5)
        context.component("http").configure(host="127.0.0.1", port=0)  # type: ignore[attr-defined]
        context.add_routes(CrmCustomerWebhook())
        await context.start()
        url = context.component("http").server.base_url  # type: ignore[attr-defined]
        async with httpx.AsyncClient(timeout=10) as client:
            try:
                yield Setup(erp, url, client, tmp_path)
            finally:
                await context.stop()


async def test_a_webhook_is_validated_mapped_and_upserted_in_the_erp(webhook: Setup) -> None:
    response = await webhook.post(SAMPLE_WEBHOOK)
    assert response.status_code == 200
    assert response.json() == {"status": "synced", "erp_id": "E-77"}
    [call] = webhook.erp.requests
    assert call.method == "PUT"
    assert call.path == "/api/customers/C-001001"
    assert call.headers["authorization"] == "Bearer erp-token-1"
    assert "x-api-key" not in call.headers  # the CRM's key is never forwarded
    assert msgspec.json.decode(call.body) == {
        "customer_number": "C-001001",
        "name": "Ada Lovelace",
        "email": "ada@example.com",
        "segment": "b2b",
        "postal_code": "N1",
        "country_code": "GB",
        "source_event": "evt-20261123-0001",
    }


async def test_wrong_or_missing_key_gets_401_and_the_erp_is_not_called(webhook: Setup) -> None:
    assert (await webhook.post(SAMPLE_WEBHOOK, key="bad")).status_code == 401
    assert (await webhook.post(SAMPLE_WEBHOOK, key=None)).status_code == 401
    assert webhook.erp.requests == []


async def test_an_invalid_body_gets_400_naming_the_field(webhook: Setup) -> None:
    bad = {**SAMPLE_WEBHOOK, "customer": {**SAMPLE_WEBHOOK["customer"], "segment": "vip"}}
    response = await webhook.post(bad)
    assert response.status_code == 400
    assert response.json()["location"] == "$.customer.segment"
    assert webhook.erp.requests == []


async def test_inactive_customers_are_ignored(webhook: Setup) -> None:
    inactive = {**SAMPLE_WEBHOOK, "customer": {**SAMPLE_WEBHOOK["customer"], "active": False}}
    response = await webhook.post(inactive)
    assert response.json() == {"status": "ignored", "erp_id": None}
    assert webhook.erp.requests == []


async def test_erp_failures_are_retried_then_dead_lettered(webhook: Setup) -> None:
    webhook.erp.reply("/api/customers/*", Reply(503, json={"error": "maintenance"}))
    response = await webhook.post(SAMPLE_WEBHOOK)
    assert response.status_code == 202
    assert response.json() == {"status": "dead-lettered", "erp_id": None}
    assert len(webhook.erp.requests) == 4  # the call and three redeliveries
    dead = webhook.data / "dead-letter" / "webhook" / "evt-20261123-0001.json"
    letter = read_letter(dead)
    assert_failure(letter, "HttpOperationFailed", "crm-customer-webhook", "HTTP 503 from PUT")
    assert letter.failure[H.REDELIVERY_COUNT] == 3
    # The endpoint as the route writes it; the failure itself names the URL it called.
    assert letter.failure[H.FAILURE_ENDPOINT].startswith("{{erp.url}}/api/customers?")
    assert f"PUT {webhook.erp.url}/api/customers/C-001001" in letter.failure[H.EXCEPTION_MESSAGE]
    assert (letter.body_encoding, letter.body) == ("json", SAMPLE_WEBHOOK)  # as received
    assert letter.headers[H.HTTP_PATH] == WEBHOOK_PATH
    assert letter.headers["content-type"].startswith("application/json")
    assert b"test-crm-key" not in dead.read_bytes()  # never the CRM's credential
    assert b"erp-token-1" not in dead.read_bytes()  # nor the ERP's


@pytest.mark.parametrize("event_id", ["evt-\x00-nul", "evt/../../etc/passwd"], ids=["nul", "slash"])
async def test_an_event_id_that_is_no_file_name_is_still_dead_lettered(
    webhook: Setup, event_id: str
) -> None:
    webhook.erp.reply("/api/customers/*", Reply(503, json={"error": "maintenance"}))
    sent = {**SAMPLE_WEBHOOK, "event_id": event_id}
    response = await asyncio.wait_for(webhook.post(sent), 15)
    assert response.status_code == 202
    assert response.json() == {"status": "dead-lettered", "erp_id": None}
    dead_dir = webhook.data / "dead-letter" / "webhook"
    [dead] = list(dead_dir.iterdir())
    assert dead.name == dead_letter_name(event_id)
    assert dead.name.startswith("event-")
    assert read_letter(dead).body == sent
    assert not (webhook.data / "etc").exists()


async def test_a_dead_letter_that_cannot_be_written_answers_500_without_looping(
    webhook: Setup,
) -> None:
    """The dead-letter route is covered by the builder's own clause; its failure is not
    handled again (no loop): the CRM gets 500, so it retries, and the ERP saw one delivery."""
    webhook.erp.reply("/api/customers/*", Reply(503, json={"error": "maintenance"}))
    (webhook.data / "dead-letter").mkdir(parents=True)
    (webhook.data / "dead-letter" / "webhook").write_text("a file where the directory should be")
    response = await asyncio.wait_for(webhook.post(SAMPLE_WEBHOOK), 15)
    assert response.status_code == 500
    assert len(webhook.erp.requests) == 4  # the call and three redeliveries, once


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_the_demo_syncs_one_sample_and_dead_letters_the_other(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The demo as ``eip run routes/`` runs it: its ERP answers 503 for C-001013, so the
    second sample takes the failure path."""
    port = _free_port()
    monkeypatch.setenv("EIP_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("EIP_HTTP_PORT", str(port))
    for name in ("EIP_DEMO", "EIP_DEMO__ERP__URL", "CRM_WEBHOOK_KEYS", "ERP_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    context = Context(shutdown_timeout=5)
    context.use_config(load_config(ROOT / "eip.toml"))  # {{demo.erp.url}}, as eip run reads it
    context.component("http").configure(host="127.0.0.1", port=port)  # type: ignore[attr-defined]
    context.add_routes(CrmCustomerWebhook(), DemoErpApi())
    async with context:
        dead = tmp_path / "dead-letter" / "webhook" / "evt-20261123-0002.json"
        await wait_for_file(dead, timeout=15)
        synced = tmp_path / "demo" / "erp-api" / "C-001001.json"
        await wait_for_file(synced)
    assert sorted(p.name for p in SAMPLE_DIR.iterdir()) == [
        "evt-20261123-0001.json",
        "evt-20261123-0002.json",
    ]
    letter = read_letter(dead)
    assert_failure(letter, "HttpOperationFailed", "crm-customer-webhook", "C-001013")
    assert letter.body == msgspec.json.decode((SAMPLE_DIR / "evt-20261123-0002.json").read_bytes())
    assert msgspec.json.decode(synced.read_bytes())["customer_number"] == "C-001001"
    assert not (tmp_path / "demo" / "erp-api" / "C-001013.json").exists()
    assert b"demo-crm-webhook-key" not in dead.read_bytes()


async def test_every_webhook_leaves_an_audit_record_that_verifies(webhook: Setup) -> None:
    from eip.audit import AuditQuery, open_store

    assert (await webhook.post(SAMPLE_WEBHOOK)).status_code == 200
    webhook.erp.reply("/api/customers/*", Reply(503, json={"error": "maintenance"}))
    assert (await webhook.post(SAMPLE_WEBHOOK)).status_code == 202
    store = open_store(f"sqlite:{webhook.data / 'state' / 'audit.db'}")
    await store.start()
    try:
        records = await store.query(AuditQuery(route="crm-customer-webhook"))
        report = await store.verify()
    finally:
        await store.stop()
    assert [r.outcome for r in records] == ["completed", "handled"]
    assert {r.key for r in records} == {str(SAMPLE_WEBHOOK["customer"]["id"])}
    assert [r.fields for r in records] == [{"status": "synced"}, {"status": "dead-lettered"}]
    assert all(r.principal for r in records)  # who called: the API key's principal or source
    assert "ada@example.com" not in str(records)  # no body beyond the chosen field
    assert report.ok
    assert report.records == 2
