"""The ``rabbitmq:`` endpoint spec: one frozen Struct for the URI and the typed form.

``rabbitmq:EXCHANGE?queue=...&routing_key=...`` (the part before ``?`` is the exchange; empty
means the default exchange). The typed form is :func:`rabbitmq`::

    rabbitmq("crm.events", queue="crm.customer.changed", binding_keys=["customer.changed"])

Decisions, where the issue left room:

- **Durable by default.** Exchanges and queues are declared durable, messages are published
  persistent, and publisher confirms are on. Newer brokers reject non-durable auto-declared
  queues, and a transient queue would lose messages on a broker restart.
- **Declared by default** (``declare=true``): the consumer declares its exchange, queue,
  dead-letter arguments and bindings, and again after every reconnect. With ``declare=false``
  it only checks (passively) that they exist, for brokers whose topology is owned elsewhere.
- **A consumer without ``queue``** consumes the queue named like the exchange, bound with
  ``binding_keys`` (default ``#`` for topic exchanges, the queue name for direct ones, nothing
  for fanout/headers): a stable, durable queue, never a server-named one that a restart loses.
- **Credentials never appear in logs**: the URL is redacted everywhere; ``url`` may be left out
  to take ``$EIP_RABBITMQ_URL`` (default ``amqp://guest:guest@127.0.0.1:5672/``), so secrets
  can stay in the environment.
- **Poison messages**: a message is redelivered at most ``max_redeliveries`` times (from the
  quorum queue's ``x-delivery-count``, else the engine's own count) before it is rejected
  without requeue, so the broker dead-letters it.
"""

from __future__ import annotations

import os
from typing import ClassVar, Literal

from eip.components.base import EndpointSpec

__all__ = ["DEFAULT_URL", "RabbitMQSpec", "rabbitmq"]

DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/"

ExchangeType = Literal["direct", "topic", "fanout", "headers"]
QueueType = Literal["classic", "quorum", "stream"]


class RabbitMQSpec(EndpointSpec, frozen=True):
    scheme: ClassVar[str] = "rabbitmq"
    path_field: ClassVar[str] = "exchange"

    exchange: str = ""
    url: str = ""
    # exchange
    exchange_type: ExchangeType = "topic"
    exchange_durable: bool = True
    # queue (consumer)
    queue: str = ""
    queue_type: QueueType = "classic"
    durable: bool = True
    exclusive: bool = False
    auto_delete: bool = False
    dead_letter_exchange: str = ""
    dead_letter_routing_key: str = ""
    message_ttl: int = 0
    max_length: int = 0
    binding_keys: list[str] = []
    declare: bool = True
    # consumer
    prefetch: int = 200
    concurrency: int = 1
    max_redeliveries: int = 5
    # producer
    routing_key: str = ""
    routing_key_header: str = ""
    confirm: bool = True
    persistent: bool = True
    mandatory: bool = False
    publish_timeout: float = 30.0
    request_timeout: float = 30.0

    @property
    def broker_url(self) -> str:
        """The URL to connect to (with credentials; never log it, log ``uri`` instead)."""
        return self.url or os.environ.get("EIP_RABBITMQ_URL", DEFAULT_URL)

    @property
    def queue_name(self) -> str:
        return self.queue or self.exchange

    @property
    def bindings(self) -> list[str]:
        if self.binding_keys:
            return list(self.binding_keys)
        if not self.exchange:
            return []
        if self.exchange_type == "topic":
            return ["#"]
        if self.exchange_type == "direct":
            return [self.queue_name]
        return [""]

    @property
    def queue_arguments(self) -> dict[str, object]:
        arguments: dict[str, object] = {}
        if self.queue_type != "classic":
            arguments["x-queue-type"] = self.queue_type
        if self.dead_letter_exchange:
            arguments["x-dead-letter-exchange"] = self.dead_letter_exchange
        if self.dead_letter_routing_key:
            arguments["x-dead-letter-routing-key"] = self.dead_letter_routing_key
        if self.message_ttl:
            arguments["x-message-ttl"] = self.message_ttl
        if self.max_length:
            arguments["x-max-length"] = self.max_length
        return arguments


def rabbitmq(exchange: str = "", **options: object) -> RabbitMQSpec:
    """Typed form of ``rabbitmq:EXCHANGE?...``; options as in :class:`RabbitMQSpec`."""
    import msgspec

    return msgspec.convert({"exchange": exchange, **options}, RabbitMQSpec)
