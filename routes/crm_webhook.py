"""CRM customer-changed webhook (HTTP) -> ERP REST upsert, retried, dead-lettered on failure.

The CRM POSTs ``/webhooks/crm/customer-changed`` with an API key (``x-api-key``, accepted keys
in ``$CRM_WEBHOOK_KEYS``, comma-separated). eip checks the key before reading the body,
validates the body as a ``CustomerChangedWebhook`` (an invalid one gets 400 naming the field),
ignores inactive customers, maps the customer to the ERP's record and PUTs it to
``$EIP_ERP_URL/api/customers/{customer_number}`` with the bearer token ``$ERP_API_TOKEN``.
The CRM gets ``{"status": "synced", "erp_id": ...}``.

Failures: a failed ERP call (status >= 400, time-out, connection refused) is retried three
times with backoff; then the original webhook is dead-lettered to
``<data>/crm/webhook-dead/<event_id>.json`` with the failure headers, and the CRM gets 202
``{"status": "dead-lettered"}``: eip has taken responsibility for it, so the CRM need not retry.
An ``event_id`` that is not a plain file name (a ``/``, a NUL, ``..``) is written as
``event-<hash>.json`` instead (the id is inside). If the dead letter cannot be written, the CRM
gets 500 and retries: the engine does not dead-letter a failure of the dead-letter route again.

This is a ``handled`` ``on_exception`` clause rather than a dead letter channel because it
shapes the CRM's answer: a dead letter channel is sent one way (a copy, in-only), so what the
dead-letter route does never becomes the caller's reply.

Demo (``EIP_DEMO`` not ``0``): a small ERP served by eip itself at ``/demo/erp`` stores each
upsert in ``<data>/erp/api/``, a one-shot timer posts the sample webhook, and
``$CRM_WEBHOOK_KEYS`` / ``$ERP_API_TOKEN`` default to demo values. Without the demo, both must be
set, or the routes fail at start naming the variable.
"""

from __future__ import annotations

import hashlib
import os
import re
from typing import Literal

import msgspec

from eip import RedeliveryPolicy, RouteBuilder, body, exchange_property, otherwise, when
from eip import headers as H
from eip.components.http import http_client, http_server
from eip.dataformats import json
from eip.mapping import FieldMapper, chain, field, lower, strip, upper
from routes._support import data_dir, demo_enabled

WEBHOOK_PATH = "/webhooks/crm/customer-changed"
#: Property: the webhook as received (the dead letter keeps it, not the ERP record made from it).
WEBHOOK_PROPERTY = "crm.webhook"
_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,150}")


class WebhookAddress(msgspec.Struct, frozen=True):
    street: str
    city: str
    zip: str
    country: str


class WebhookCustomer(msgspec.Struct, frozen=True):
    id: int
    name: str
    email: str
    segment: Literal["b2b", "b2c"]
    active: bool
    address: WebhookAddress


class CustomerChangedWebhook(msgspec.Struct, frozen=True):
    """The CRM's webhook body."""

    event_id: str
    changed_at: str
    customer: WebhookCustomer


class ErpCustomer(msgspec.Struct, frozen=True):
    """The ERP's customer record (PUT /api/customers/{customer_number})."""

    customer_number: str
    name: str
    email: str
    segment: str
    postal_code: str
    country_code: str
    source_event: str


class ErpAck(msgspec.Struct, frozen=True):
    erp_id: str


class WebhookAck(msgspec.Struct, frozen=True):
    """What the CRM gets back."""

    status: Literal["synced", "ignored", "dead-lettered"]
    erp_id: str | None = None


to_erp = FieldMapper(
    field("customer_number", source="customer.id", convert=lambda v: f"C-{int(v):06d}"),
    field("name", source="customer.name", convert=strip),
    field("email", source="customer.email", convert=chain(strip, lower)),
    field("segment", source="customer.segment"),
    field("postal_code", source="customer.address.zip"),
    field("country_code", source="customer.address.country", convert=upper),
    field("source_event", source="event_id"),
    unknown="ignore",
    target=ErpCustomer,
)

SAMPLE_WEBHOOK = {
    "event_id": "evt-20261123-0001",
    "changed_at": "2026-11-23T06:00:00Z",
    "customer": {
        "id": 1001,
        "name": " Ada Lovelace ",
        "email": "Ada@Example.com",
        "segment": "b2b",
        "active": True,
        "address": {"street": "1 Analytical St", "city": "London", "zip": "N1", "country": "gb"},
    },
}


def http_port() -> int:
    return int(os.environ.get("EIP_HTTP_PORT", "8080"))


def erp_url() -> str:
    """The ERP's base URL: ``$EIP_ERP_URL``, else the demo ERP on this server."""
    return os.environ.get("EIP_ERP_URL", f"http://127.0.0.1:{http_port()}/demo/erp")


def dead_letter_name(event_id: str) -> str:
    """``<event_id>.json``, or ``event-<hash>.json`` when the id is not a plain file name: the
    CRM chooses event ids, and a dead letter must be written whatever it sent."""
    if _PLAIN_NAME.fullmatch(event_id) and ".." not in event_id:
        return f"{event_id}.json"
    digest = hashlib.sha256(event_id.encode("utf-8", "surrogatepass")).hexdigest()[:20]
    return f"event-{digest}.json"


def _demo_credentials() -> None:
    if demo_enabled():
        os.environ.setdefault("CRM_WEBHOOK_KEYS", "demo-crm-webhook-key")
        os.environ.setdefault("ERP_API_TOKEN", "demo-erp-token")


class CrmCustomerWebhook(RouteBuilder):
    def configure(self) -> None:
        _demo_credentials()
        (
            self.on_exception(Exception)
            .handled()
            .redelivery(RedeliveryPolicy(max_redeliveries=3, delay=0.2, backoff_multiplier=2))
            .to("direct:crm-webhook-dead")
            .set_header(H.HTTP_STATUS, 202)
            .set_body(WebhookAck(status="dead-lettered"))
        )
        webhook = http_server(
            WEBHOOK_PATH,
            methods=["POST"],
            body=CustomerChangedWebhook,
            response=WebhookAck,
            auth="api_key",
            credentials_env="CRM_WEBHOOK_KEYS",
            summary="A CRM customer changed: upsert it in the ERP",
        )
        erp = http_client(
            f"{erp_url()}/api/customers",
            method="PUT",
            timeout=5.0,
            auth="bearer",
            secret_env="ERP_API_TOKEN",
        )
        (
            self.from_(webhook)
            .route_id("crm-customer-webhook")
            .description("CRM customer-changed webhook -> ERP REST upsert")
            .set_property(WEBHOOK_PROPERTY, body())
            .choice(
                when(lambda ex: not ex.body.customer.active)
                .set_body(WebhookAck(status="ignored"))
                .stop(),
                otherwise().map_fields(to_erp),
            )
            .set_header(H.HTTP_REQUEST_PATH, lambda ex: ex.body.customer_number)
            .to(erp)
            .unmarshal(json(ErpAck))
            .transform(lambda ex: WebhookAck(status="synced", erp_id=ex.body.erp_id))
            .log("CRM webhook synced to ERP as {body.erp_id}")
        )
        (
            self.from_("direct:crm-webhook-dead")
            .route_id("crm-webhook-dead")
            .set_body(exchange_property(WEBHOOK_PROPERTY))
            .set_header(H.FILE_NAME, lambda ex: dead_letter_name(ex.body.event_id))
            .marshal(json())
            .to(f"file:{data_dir() / 'crm' / 'webhook-dead'}")
            .log("CRM webhook dead-lettered: {headers[eip.exception.message]}", level=30)
        )


class DemoErpApi(RouteBuilder):
    """The demo's ERP REST API, served by eip itself (``EIP_DEMO=0`` leaves it out)."""

    abstract = not demo_enabled()

    def configure(self) -> None:
        _demo_credentials()
        (
            self.from_(
                http_server(
                    "/demo/erp/api/customers/{customer_number}",
                    methods=["PUT"],
                    body=ErpCustomer,
                    auth="bearer",
                    credentials_env="ERP_API_TOKEN",
                    openapi=False,
                )
            )
            .route_id("demo-erp-customers")
            .set_header(H.FILE_NAME, lambda ex: f"{ex.body.customer_number}.json")
            .marshal(json())
            .to(f"file:{data_dir() / 'erp' / 'api'}")
            .set_body(lambda ex: ErpAck(erp_id=f"E-{ex.headers['customer_number']}"))
        )
        (
            self.from_("timer:crm-webhook-demo?repeat_count=1&delay=0.5")
            .route_id("crm-webhook-demo")
            .set_body(lambda ex: msgspec.json.encode(SAMPLE_WEBHOOK))
            .set_header("content-type", "application/json")
            .set_header("x-api-key", lambda ex: os.environ["CRM_WEBHOOK_KEYS"].split(",")[0])
            .to(
                http_client(
                    f"http://127.0.0.1:{http_port()}{WEBHOOK_PATH}",
                    copy_headers=["x-api-key"],
                )
            )
            .log("CRM webhook answered {body}")
        )
