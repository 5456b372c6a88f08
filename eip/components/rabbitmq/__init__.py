"""``rabbitmq:`` - RabbitMQ consumer and producer, on eip's lean AMQP 0-9-1 client or aio-pika.

See :mod:`.spec` for the endpoint options, :mod:`.consumer` for at-least-once consumption with
in-order multiple acks, :mod:`.producer` for confirmed, pipelined publishing and request-reply,
:mod:`.link` for the shared self-healing connection, :mod:`.client` for the interface the
endpoints use and the two clients behind it: :mod:`._amqp`, eip's own (the default, and why
it is not aio-pika: the per-message cost, see ``benchmarks/README.md``), and :mod:`._aiopika`
(``client=aio-pika``, for shops that mandate aio-pika).
"""

from __future__ import annotations

from typing import Any, ClassVar

from eip.components.base import Component, Consumer, EndpointSpec, Producer
from eip.components.rabbitmq.client import check_client
from eip.components.rabbitmq.confirmed import Handoff
from eip.components.rabbitmq.link import BrokerLink, LinkState
from eip.components.rabbitmq.spec import RabbitMQSpec, rabbitmq
from eip.errors import redact_uri
from eip.runtime.route import Route

__all__ = ["BrokerLink", "LinkState", "RabbitMQComponent", "RabbitMQSpec", "rabbitmq"]


class RabbitMQComponent(Component):
    scheme: ClassVar[str] = "rabbitmq"
    spec_type: ClassVar[type[EndpointSpec]] = RabbitMQSpec

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        self.links: dict[tuple[object, ...], BrokerLink] = {}
        self.producers: list[Any] = []
        #: A consumer's fast-path exchange, met by the producer it reaches (:mod:`.confirmed`).
        self.handoff = Handoff()

    def link(self, spec: RabbitMQSpec) -> BrokerLink:
        """The shared connection for ``spec`` (one per broker URL and connection options)."""
        key = spec.connection_key
        found = self.links.get(key)
        if found is None:
            found = self.links[key] = BrokerLink(spec)
        return found

    def problems(self) -> dict[str, str]:
        """What keeps this component's endpoints from working now (for readiness): links
        that are down or blocked, producers without a channel."""
        found: dict[str, str] = {}
        for link in self.links.values():
            if link.state is not LinkState.CLOSED and link.problem is not None:
                found[f"rabbitmq {link.safe_url}"] = link.problem
        for producer in self.producers:
            problem = producer.problem
            if problem is not None and producer.link.state is not LinkState.CLOSED:
                found.setdefault(
                    f"producer {producer.uri or redact_uri(producer.spec.uri)}", problem
                )
        return found

    def validate(self, spec: Any) -> None:
        check_client(spec)
        if spec.prefetch < 1 or spec.prefetch > 65535:
            raise ValueError(f"prefetch must be between 1 and 65535, got {spec.prefetch}")
        if spec.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {spec.concurrency}")
        if spec.max_redeliveries < 0:
            raise ValueError(f"max_redeliveries must be >= 0, got {spec.max_redeliveries}")
        for name in ("publish_timeout", "confirm_timeout", "request_timeout", "connect_timeout"):
            if getattr(spec, name) <= 0:
                raise ValueError(f"{name} must be > 0 seconds, got {getattr(spec, name)}")
        if spec.heartbeat < 0:
            raise ValueError(f"heartbeat must be >= 0 seconds (0: off), got {spec.heartbeat}")
        if spec.reconnect_delay <= 0 or spec.reconnect_max_delay < spec.reconnect_delay:
            raise ValueError("reconnect_delay must be > 0 and <= reconnect_max_delay")
        if not 0 <= spec.reconnect_jitter <= 1:
            raise ValueError(
                f"reconnect_jitter must be between 0 and 1, got {spec.reconnect_jitter}"
            )
        for source, _key in spec.source_exchanges:
            if not source or not spec.exchange:
                raise ValueError(
                    "exchange_bindings entries are 'SOURCE:ROUTING_KEY' and need the endpoint's "
                    "own exchange"
                )
        url = spec.broker_url
        if not url.startswith(("amqp://", "amqps://")):
            raise ValueError("url must start with amqp:// (or amqps://)")
        tls_options = spec.ca_file or spec.cert_file or spec.key_file or not spec.verify
        if tls_options and not url.startswith("amqps://"):
            raise ValueError("ca_file, cert_file, key_file and verify need an amqps:// url")
        if spec.auth_mechanism == "EXTERNAL" and not spec.cert_file:
            raise ValueError("auth_mechanism EXTERNAL needs a client certificate (cert_file)")

    def create_producer(self, spec: Any) -> Producer:
        from eip.components.rabbitmq.producer import RabbitMQProducer

        producer = RabbitMQProducer(self, spec)
        self.producers.append(producer)
        return producer

    def acknowledges_source(self, spec: Any) -> bool:
        """A delivery is acked when its exchange completes."""
        return True

    def create_consumer(self, spec: Any, route: Route) -> Consumer:
        from eip.components.rabbitmq.consumer import RabbitMQConsumer

        if not spec.queue_name:
            raise ValueError("a rabbitmq consumer needs a queue (or an exchange to name it after)")
        return RabbitMQConsumer(self, spec, route)

    async def stop(self) -> None:
        for link in self.links.values():
            await link.close()
