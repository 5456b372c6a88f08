"""CRM customer-changed events (RabbitMQ) -> ERP customer upserts (RabbitMQ).

The CRM publishes ``customer.changed`` events to the ``crm.events`` topic exchange. This route
consumes them from the durable queue ``crm.customer.changed``, reads each as a typed
``CustomerChanged`` (a malformed event fails with its JSON path), keeps only the customers the
ERP owns (``active`` and of the ``b2b`` segment), maps the fields to the ERP's record, and
publishes it to the ``erp.customers`` exchange with routing key ``erp.customer.upsert``, with
publisher confirms. The event is acked only after that publish is confirmed. The upsert's
personal fields (``name``, ``email``) are encrypted on the queue (``encrypt_fields``, the key
ring in ``$CRM_FIELD_KEYS``; the demo has a published demo key), and the ERP side decrypts them.

Failures: a step that fails is retried three times with backoff (the engine's retry rules
decide which errors a retry can help); then a dead letter channel publishes the event as it
came, with the failure headers (``eip.exception.type``, ``eip.exception.message``, ...), to
the ``crm.dlx`` fanout exchange, and acks it once the broker confirmed. ``crm.dlx`` feeds the
queue ``crm.customer.changed.dead``, whose route (:class:`CrmCustomerEventDeadLetters`, named
to start before the events route) writes each dead letter as a file,
``<data>/dead-letter/customer-events/<message id>.json`` (the envelope of
``routes/_support.py``: failure headers, headers, the event as it came). If the dead letter
cannot be published, the event fails and is rejected, and the broker dead-letters it to
``crm.dlx`` itself (the queue's ``x-dead-letter-exchange``), without the failure headers.

Decisions:

- **A dead letter channel, not only the broker's dead-lettering.** The broker dead-letters a
  rejected message as it was published: nobody could tell why it failed. Published by the
  engine, it says so in its headers.
- **The dead-letter route has a builder of its own**, so the dead letter channel does not
  cover it: a dead letter that cannot be written is retried, and then rejected (and logged),
  rather than dead-lettered into its own queue in a loop. The queue has no dead letter
  exchange of its own (adding one would change the arguments of a queue that exists).

Needs RabbitMQ: ``$EIP_RABBITMQ_URL`` (default ``amqp://guest:guest@127.0.0.1:5672/``). With
``EIP_DEMO`` not ``0`` a one-shot timer publishes the events of
``routes/samples/customer_events/`` at start (the file name is the message id);
``crm-evt-20261123-0003.json`` says ``"active": "yes"`` and is dead-lettered. The demo's ERP
(the ``erp-customer-upserts`` route) writes what it receives to ``<data>/demo/erp-upserts/``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import msgspec

from eip import (
    Exchange,
    RedeliveryPolicy,
    RouteBuilder,
    body,
    dead_letter_channel,
    default_error_handler,
    exchange_property,
    pipeline,
)
from eip import headers as H
from eip.components.rabbitmq import RabbitMQSpec, rabbitmq
from eip.dataformats import json
from eip.mapping import FieldMapper, chain, field, lower, strip, upper
from routes._support import (
    SAMPLES,
    dead_letter,
    dead_letters,
    demo_enabled,
    demo_output,
    safe_file_name,
)

SAMPLE_DIR = SAMPLES / "customer_events"
#: The upsert's personal fields, encrypted on the queue (AES-256-GCM tokens, eip.security).
PERSONAL_FIELDS = ["name", "email"]
#: The key ring (``id:key,...``, newest first) shared by this route and the ERP side.
FIELD_KEYS = "{{env:CRM_FIELD_KEYS}}"
#: The demo's key ring (a published key: never use it for real data).
DEMO_FIELD_KEYS = "demo1:ZGVtby1vbmx5LWtleS1mb3ItZWlwLWV4YW1wbGVzISE="


def _demo_keys() -> None:
    """The demo's key ring, as the variable the steps read (a variable that is set is kept);
    without the demo an unset ``$CRM_FIELD_KEYS`` fails the start, naming it."""
    if demo_enabled():
        os.environ.setdefault("CRM_FIELD_KEYS", DEMO_FIELD_KEYS)


MESSAGE_ID = "rabbitmq.message_id"
DEAD_LETTER_FILE = "crm.dead_letter_file"  # exchange property: the dead letter's file name


class CustomerAddress(msgspec.Struct, frozen=True):
    street: str
    city: str
    zip: str
    country: str


class CustomerChanged(msgspec.Struct, frozen=True):
    """The CRM's event (JSON)."""

    customer_id: int
    name: str
    email: str
    segment: str
    active: bool
    address: CustomerAddress
    changed_at: str


class ErpCustomerUpsert(msgspec.Struct, frozen=True):
    """What the ERP consumes from ``erp.customer.upsert``."""

    customer_number: str
    name: str
    email: str
    postal_code: str
    country_code: str
    source_changed_at: str


to_erp = FieldMapper(
    field("customer_number", source="customer_id", convert=lambda v: f"C-{int(v):06d}"),
    field("name", source="name", convert=strip),
    field("email", source="email", convert=chain(strip, lower)),
    field("postal_code", source="address.zip"),
    field("country_code", source="address.country", convert=upper),
    field("source_changed_at", source="changed_at"),
    unknown="ignore",
    target=ErpCustomerUpsert,
)


def endpoints(prefix: str = "") -> dict[str, RabbitMQSpec]:
    """The route's endpoints; ``prefix`` namespaces every exchange and queue (tests use it)."""
    return {
        "events": rabbitmq(
            f"{prefix}crm.events",
            queue=f"{prefix}crm.customer.changed",
            binding_keys=["customer.changed"],
            dead_letter_exchange=f"{prefix}crm.dlx",
            prefetch=200,
            concurrency=50,
        ),
        "publish_event": rabbitmq(f"{prefix}crm.events", routing_key="customer.changed"),
        "upserts": rabbitmq(
            f"{prefix}erp.customers", exchange_type="direct", routing_key="erp.customer.upsert"
        ),
        "erp_queue": rabbitmq(
            f"{prefix}erp.customers",
            exchange_type="direct",
            queue=f"{prefix}erp.customer.upsert",
            binding_keys=["erp.customer.upsert"],
        ),
        # mandatory: with no queue bound, a dead letter fails (and the event is rejected)
        # instead of vanishing
        "dead_letter": rabbitmq(f"{prefix}crm.dlx", exchange_type="fanout", mandatory=True),
        "dead_letters": rabbitmq(
            f"{prefix}crm.dlx",
            exchange_type="fanout",
            queue=f"{prefix}crm.customer.changed.dead",
            prefetch=10,
        ),
    }


def sample_events() -> list[tuple[str, bytes]]:
    """(message id, body) of each sample event, in file-name order, as the files have them."""
    return [(path.stem, path.read_bytes()) for path in sorted(SAMPLE_DIR.glob("*.json"))]


def dead_letter_file_name(exchange: Exchange) -> str:
    """``<message id>.json``, or ``event-<hash of the body>.json`` for an event without one:
    the same dead letter, delivered again, replaces its file."""
    message_id = exchange.headers.get(MESSAGE_ID)
    if message_id:
        return safe_file_name(str(message_id))
    data = exchange.body if isinstance(exchange.body, bytes) else str(exchange.body).encode()
    return f"event-{hashlib.sha256(data).hexdigest()[:20]}.json"


def dead_letter_logged(exchange: Exchange) -> str:
    """The log line of a dead letter; one the broker dead-lettered has no failure headers."""
    reason = exchange.headers.get(H.EXCEPTION_MESSAGE) or "no failure headers (the broker's)"
    return f"dead-lettered CRM event {exchange.properties[DEAD_LETTER_FILE]}: {reason}"


def upsert_file_name(exchange: Exchange) -> str:
    """``upsert-<message id of the event>.json`` (the id travels with the upsert)."""
    return safe_file_name(f"upsert-{exchange.headers.get(MESSAGE_ID) or exchange.id}", "upsert")


class CrmCustomerEvents(RouteBuilder):
    def __init__(
        self, prefix: str = "", *, demo_erp: bool = True, data: Path | None = None
    ) -> None:
        super().__init__()
        self.endpoints = endpoints(prefix)
        self.demo_erp = demo_erp
        self.data = data

    def configure(self) -> None:
        _demo_keys()
        ep = self.endpoints
        self.error_handler(
            dead_letter_channel(
                ep["dead_letter"],
                redelivery=RedeliveryPolicy(
                    max_redeliveries=3, delay=0.5, backoff_multiplier=2, jitter=0.1
                ),
                use_original_message=True,
            )
        )
        (
            self.from_(ep["events"])
            .route_id("crm-customer-events")
            .description("crm.customer.changed events -> erp.customer.upsert, failures to crm.dlx")
            .unmarshal(json(CustomerChanged))
            .filter(lambda ex: ex.body.active and ex.body.segment == "b2b")
            .map_fields(to_erp)
            .encrypt_fields(PERSONAL_FIELDS, key=FIELD_KEYS)  # no plaintext on the queue
            .marshal(json())
            .set_header("rabbitmq.content_type", "application/json")
            .to(ep["upserts"])
        )
        if self.demo_erp:  # the ERP side of the demo: decrypts, logs and files what it gets
            (
                self.from_(ep["erp_queue"])
                .route_id("erp-customer-upserts")
                .unmarshal(json(ErpCustomerUpsert))
                .decrypt_fields(PERSONAL_FIELDS, key=FIELD_KEYS)
                .marshal(json())
                .log("ERP received upsert {body}")
                .set_header(H.FILE_NAME, upsert_file_name)
                .to(f"file:{demo_output('erp-upserts', self.data)}")
            )


class CrmCustomerEventDeadLetters(RouteBuilder):
    """``crm.customer.changed.dead`` -> one dead-letter file per event (see the module
    docstring for why this is a builder of its own)."""

    def __init__(self, prefix: str = "", *, data: Path | None = None) -> None:
        super().__init__()
        self.endpoints = endpoints(prefix)
        self.data = data

    def configure(self) -> None:
        self.error_handler(
            default_error_handler(
                RedeliveryPolicy(max_redeliveries=5, delay=1.0, backoff_multiplier=2)
            )
        )
        (
            self.from_(self.endpoints["dead_letters"])
            .route_id("crm-customer-events-dead")
            .description("dead-lettered CRM events -> dead-letter files with the failure headers")
            .set_property(DEAD_LETTER_FILE, dead_letter_file_name)  # from the event, not the file
            .transform(dead_letter)
            .set_header(H.FILE_NAME, exchange_property(DEAD_LETTER_FILE))
            .to(f"file:{dead_letters('customer-events', self.data)}")
            .log(dead_letter_logged, level=30)
        )


class DemoEvents(RouteBuilder):
    """Publishes the sample events once at start (``EIP_DEMO=0`` turns it off)."""

    def configure(self) -> None:
        (
            self.from_("timer:crm-demo-events?repeat_count=1&delay=0.5")
            .route_id("crm-demo-events")
            .filter(lambda ex: demo_enabled())
            .set_body(lambda ex: sample_events())
            .split(
                body(),
                pipeline()
                .set_header(MESSAGE_ID, lambda ex: ex.body[0])
                .set_header("rabbitmq.content_type", "application/json")
                .set_body(lambda ex: ex.body[1])
                .to(endpoints()["publish_event"]),
            )
        )
