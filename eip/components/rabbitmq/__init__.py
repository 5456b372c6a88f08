"""``rabbitmq:`` - RabbitMQ consumer and producer on eip's lean AMQP 0-9-1 client.

See :mod:`.spec` for the endpoint options, :mod:`.consumer` for at-least-once consumption with
in-order multiple acks, :mod:`.producer` for confirmed, pipelined publishing and request-reply,
:mod:`.link` for the shared self-healing connection, and :mod:`._amqp` for the client itself
(and why it is not aio-pika: the per-message cost, see ``benchmarks/README.md``).
"""

from __future__ import annotations

from typing import Any, ClassVar

from eip.components.base import Component, Consumer, EndpointSpec, Producer
from eip.components.rabbitmq.link import BrokerLink, LinkState
from eip.components.rabbitmq.spec import RabbitMQSpec, rabbitmq
from eip.runtime.route import Route

__all__ = ["BrokerLink", "LinkState", "RabbitMQComponent", "RabbitMQSpec", "rabbitmq"]


class RabbitMQComponent(Component):
    scheme: ClassVar[str] = "rabbitmq"
    spec_type: ClassVar[type[EndpointSpec]] = RabbitMQSpec

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        self.links: dict[str, BrokerLink] = {}

    def link(self, url: str) -> BrokerLink:
        """The shared connection to ``url`` (one per broker per context)."""
        found = self.links.get(url)
        if found is None:
            found = self.links[url] = BrokerLink(url)
        return found

    def validate(self, spec: Any) -> None:
        if spec.prefetch < 1 or spec.prefetch > 65535:
            raise ValueError(f"prefetch must be between 1 and 65535, got {spec.prefetch}")
        if spec.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {spec.concurrency}")
        if spec.max_redeliveries < 0:
            raise ValueError(f"max_redeliveries must be >= 0, got {spec.max_redeliveries}")
        if spec.publish_timeout <= 0 or spec.request_timeout <= 0:
            raise ValueError("publish_timeout and request_timeout must be > 0 seconds")
        url = spec.broker_url
        if not url.startswith(("amqp://", "amqps://")):
            raise ValueError("url must start with amqp:// (or amqps://)")

    def create_producer(self, spec: Any) -> Producer:
        from eip.components.rabbitmq.producer import RabbitMQProducer

        return RabbitMQProducer(self, spec)

    def create_consumer(self, spec: Any, route: Route) -> Consumer:
        from eip.components.rabbitmq.consumer import RabbitMQConsumer

        if not spec.queue_name:
            raise ValueError("a rabbitmq consumer needs a queue (or an exchange to name it after)")
        return RabbitMQConsumer(self, spec, route)

    async def stop(self) -> None:
        for link in self.links.values():
            await link.close()
