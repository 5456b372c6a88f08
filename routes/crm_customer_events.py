"""CRM customer-changed events (RabbitMQ) -> ERP customer upserts (RabbitMQ).

The CRM publishes ``customer.changed`` events to the ``crm.events`` topic exchange. This route
consumes them from the durable queue ``crm.customer.changed``, reads each as a typed
``CustomerChanged`` (a malformed event fails with its JSON path), keeps only the customers the
ERP owns (``active`` and of the ``b2b`` segment), maps the fields to the ERP's record, and
publishes it to the ``erp.customers`` exchange with routing key ``erp.customer.upsert``, with
publisher confirms. The event is acked only after that publish is confirmed.

Failures: a step that fails is retried three times with backoff; after that the event is
rejected and the broker dead-letters it to the ``crm.dlx`` exchange, bound to the
``crm.customer.changed.dead`` queue, where it waits with its original headers for someone to
look at it. Nothing is dropped.

Needs RabbitMQ: ``$EIP_RABBITMQ_URL`` (default ``amqp://guest:guest@127.0.0.1:5672/``). With
``EIP_DEMO`` not ``0`` a one-shot timer publishes two sample events at start.
"""

from __future__ import annotations

import msgspec

from eip import RedeliveryPolicy, RouteBuilder, body, default_error_handler, pipeline
from eip import headers as H
from eip.components.rabbitmq import RabbitMQSpec, rabbitmq
from eip.dataformats import json
from eip.mapping import FieldMapper, chain, field, lower, strip, upper
from routes._support import data_dir, demo_enabled


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
        "dead_letters": rabbitmq(
            f"{prefix}crm.dlx",
            exchange_type="fanout",
            queue=f"{prefix}crm.customer.changed.dead",
            prefetch=10,
        ),
    }


SAMPLE_EVENTS = [
    {
        "customer_id": 1001,
        "name": " Ada Lovelace ",
        "email": "Ada@Example.com",
        "segment": "b2b",
        "active": True,
        "address": {"street": "1 Analytical St", "city": "London", "zip": "N1", "country": "gb"},
        "changed_at": "2026-11-23T06:00:00Z",
    },
    {
        "customer_id": 1002,
        "name": "Grace Hopper",
        "email": "grace@example.com",
        "segment": "b2c",
        "active": True,
        "address": {"street": "2 Navy Rd", "city": "Arlington", "zip": "22201", "country": "us"},
        "changed_at": "2026-11-23T06:01:00Z",
    },
]


class CrmCustomerEvents(RouteBuilder):
    def __init__(self, prefix: str = "", *, demo_erp: bool = True) -> None:
        super().__init__()
        self.endpoints = endpoints(prefix)
        self.demo_erp = demo_erp

    def configure(self) -> None:
        ep = self.endpoints
        self.error_handler(
            default_error_handler(
                RedeliveryPolicy(max_redeliveries=3, delay=0.5, backoff_multiplier=2, jitter=0.1)
            )
        )
        (
            self.from_(ep["events"])
            .route_id("crm-customer-events")
            .description("crm.customer.changed events -> erp.customer.upsert, failures to crm.dlx")
            .unmarshal(json(CustomerChanged))
            .filter(lambda ex: ex.body.active and ex.body.segment == "b2b")
            .map_fields(to_erp)
            .marshal(json())
            .set_header("rabbitmq.content_type", "application/json")
            .to(ep["upserts"])
        )
        if self.demo_erp:  # the ERP side of the demo: logs and files what lands in its queue
            (
                self.from_(ep["erp_queue"])
                .route_id("erp-customer-upserts")
                .log("ERP received upsert {body}")
                .set_header(H.FILE_NAME, lambda ex: f"upsert-{ex.id}.json")
                .to(f"file:{data_dir() / 'erp' / 'upserts'}")
            )
        (
            self.from_(ep["dead_letters"])
            .route_id("crm-customer-events-dead")
            .log("dead-lettered CRM event: {body}", level=30)
        )


class DemoEvents(RouteBuilder):
    """Publishes the sample events once at start (``EIP_DEMO=0`` turns it off)."""

    def configure(self) -> None:
        (
            self.from_("timer:crm-demo-events?repeat_count=1&delay=0.5")
            .route_id("crm-demo-events")
            .filter(lambda ex: demo_enabled())
            .set_body(lambda ex: SAMPLE_EVENTS)
            .split(body(), pipeline().marshal(json()).to(endpoints()["publish_event"]))
        )
