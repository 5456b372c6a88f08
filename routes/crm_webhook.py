"""CRM customer-changed webhook (HTTP) -> ERP REST upsert, retried, dead-lettered on failure.

The CRM POSTs ``/webhooks/crm/customer-changed`` with an API key (``x-api-key``, accepted keys
in ``$CRM_WEBHOOK_KEYS``, comma-separated). eip checks the key before reading the body,
validates the body as a ``CustomerChangedWebhook`` (an invalid one gets 400 naming the field),
ignores inactive customers, maps the customer to the ERP's record and PUTs it to
``{{erp.url}}/api/customers/{customer_number}`` (``url`` in eip.toml's ``[erp]`` table, or
``$EIP_ERP__URL``) with the bearer token ``$ERP_API_TOKEN``.
The CRM gets ``{"status": "synced", "erp_id": ...}``.

Failures: a failed ERP call (status >= 400, time-out, connection refused) is retried three
times with backoff; then the webhook as received is dead-lettered to
``<data>/dead-letter/webhook/<event_id>.json`` (the envelope of ``routes/_support.py``: the
failure headers, the request's headers without its API key, the webhook), and the CRM gets 202
``{"status": "dead-lettered"}``: eip has taken responsibility for it, so the CRM need not retry.
An ``event_id`` that is not a plain file name (a ``/``, a NUL, ``..``) is written as
``event-<hash>.json`` instead (the id is inside). If the dead letter cannot be written, the CRM
gets 500 and retries: the engine does not dead-letter a failure of the dead-letter route again.

Every webhook leaves an audit record (``<data>/state/audit.db``): the calling API key's
principal, the customer id, the outcome, the endpoints it went to and the answer's
``status``; ``eip audit show
--route crm-customer-webhook`` lists them and ``eip audit verify`` checks the hash chain.

This is a ``handled`` ``on_exception`` clause rather than a dead letter channel because it
shapes the CRM's answer: a dead letter channel is sent one way (a copy, in-only), so what the
dead-letter route does never becomes the caller's reply.

Demo (``EIP_DEMO`` not ``0``): a small ERP served by eip itself at ``/demo/erp`` stores each
upsert in ``<data>/demo/erp-api/``; the route calls it at ``{{demo.erp.url}}`` (eip.toml's
``[demo.erp]``). A one-shot timer posts the webhooks of ``routes/samples/webhooks/`` (in
file-name order) with the key ``{{env:CRM_WEBHOOK_KEYS}}``, and ``$CRM_WEBHOOK_KEYS`` /
``$ERP_API_TOKEN`` default to demo values. The demo ERP answers 503 (maintenance) for customer
``C-001013``, so ``evt-20261123-0002.json`` is retried and then dead-lettered. Without the
demo, ``{{erp.url}}`` and both variables must be set, or the routes fail at start (and
``eip check``) naming what is missing.
"""

from __future__ import annotations

import os
from typing import Any, Literal

import msgspec

from eip import RedeliveryPolicy, RouteBuilder, body, exchange_property, otherwise, pipeline, when
from eip import headers as H
from eip.components.http import http_client, http_server
from eip.dataformats import json
from eip.mapping import FieldMapper, chain, field, lower, strip, upper
from routes._support import (
    SAMPLES,
    dead_letter,
    dead_letters,
    demo_enabled,
    demo_output,
    safe_file_name,
    setting,
    state,
)

WEBHOOK_PATH = "/webhooks/crm/customer-changed"
#: Property: the webhook as received (the dead letter keeps it, not the ERP record made from it).
WEBHOOK_PROPERTY = "crm.webhook"
SAMPLE_DIR = SAMPLES / "webhooks"
#: Customers the demo ERP answers 503 for (it is "migrating" them): their webhooks are retried,
#: then dead-lettered.
DEMO_MAINTENANCE = frozenset({"C-001013"})


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


def audit_key(exchange: Any) -> Any:
    """The audit record's business key: the CRM customer id of the webhook as received."""
    webhook = exchange.properties.get(WEBHOOK_PROPERTY)
    return webhook.customer.id if webhook is not None else None


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


def sample_webhooks() -> list[bytes]:
    """The sample webhooks, in file-name order, as the files have them."""
    return [path.read_bytes() for path in sorted(SAMPLE_DIR.glob("*.json"))]


#: The first sample (synced by the demo ERP), decoded.
SAMPLE_WEBHOOK: dict[str, Any] = msgspec.json.decode(sample_webhooks()[0])


def dead_letter_name(event_id: str) -> str:
    """``<event_id>.json``, or ``event-<hash>.json`` when the id is not a plain file name: the
    CRM chooses event ids, and a dead letter must be written whatever it sent."""
    return safe_file_name(event_id)


def _demo_credentials() -> None:
    """The demo's stand-in credentials, as the variables the endpoints read (secrets stay in
    the environment, never in eip.toml); a variable that is set is kept."""
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
            f"{setting('erp.url')}/api/customers",
            method="PUT",
            timeout=5.0,
            auth="bearer",
            secret_env="ERP_API_TOKEN",
        )
        (
            self.from_(webhook)
            .route_id("crm-customer-webhook")
            .description("CRM customer-changed webhook -> ERP REST upsert")
            # One tamper-evident record per webhook: who called, which customer, what became
            # of it (eip audit show --route crm-customer-webhook --key 1001).
            .audit(key=audit_key, fields=["status"], store=f"sqlite:{state('audit.db')}")
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
            .transform(dead_letter)
            .set_header(
                H.FILE_NAME, lambda ex: dead_letter_name(ex.properties[WEBHOOK_PROPERTY].event_id)
            )
            .to(f"file:{dead_letters('webhook')}")
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
            .choice(
                when(lambda ex: ex.body.customer_number in DEMO_MAINTENANCE)
                .set_header(H.HTTP_STATUS, 503)
                .set_body(lambda ex: {"error": f"{ex.body.customer_number} is being migrated"})
                .stop(),
                otherwise()
                .set_header(H.FILE_NAME, lambda ex: f"{ex.body.customer_number}.json")
                .marshal(json())
                .to(f"file:{demo_output('erp-api')}")
                .set_body(lambda ex: ErpAck(erp_id=f"E-{ex.headers['customer_number']}")),
            )
        )
        (
            self.from_("timer:crm-webhook-demo?repeat_count=1&delay=0.5")
            .route_id("crm-webhook-demo")
            .set_body(lambda ex: sample_webhooks())
            .split(
                body(),
                pipeline()
                .set_header("content-type", "application/json")
                .to(
                    http_client(
                        "http://127.0.0.1:{{server.http_port}}" + WEBHOOK_PATH,
                        auth="api_key",
                        auth_header="x-api-key",
                        secret="{{env:CRM_WEBHOOK_KEYS}}",  # one key in the demo
                    )
                )
                .log("CRM webhook answered {body}"),
            )
        )
