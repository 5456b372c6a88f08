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
  quorum queue's ``x-delivery-count``, else the engine's own count of the times it requeued
  it) before it is rejected without requeue, so the broker dead-letters it.
- **Connection options** (``heartbeat``, ``connect_timeout``, ``reconnect_delay``,
  ``reconnect_max_delay``, ``reconnect_jitter``, TLS and ``auth_mechanism``) belong to the
  connection: endpoints that agree on all of them share one connection per broker URL.
- **Broker arguments** are generic: ``queue_arguments``, ``exchange_arguments``,
  ``binding_arguments`` and ``consumer_arguments`` are passed to the broker as they are
  (``x-max-priority``, ``x-overflow``, ``x-single-active-consumer``, ``alternate-exchange``,
  ``x-priority``, ``x-match``...). In a URI they are written one key at a time,
  ``queue_arguments.x-max-priority=10``; digits become integers and ``true``/``false``
  booleans, as the broker expects. The dedicated options (``queue_type``,
  ``dead_letter_exchange``...) win over the same key given in ``queue_arguments``.
- **The AMQP client** is an option too: ``client=lean`` (the default, eip's own client) or
  ``client=aio-pika`` (aio-pika's ``connect_robust``; the ``eip[aio-pika]`` extra), with the
  same settlement, recovery and options; see :mod:`.client` and the README's "Choosing the
  AMQP client". Endpoints on different clients never share a connection.
- **Exchange-to-exchange bindings**: ``exchange_bindings=["crm.events:customer.#"]`` binds the
  endpoint's exchange to the source exchange ``crm.events`` with that key (declared by whoever
  declares the exchange).
- **Per-key ordering** uses the broker's own means, through the options above: a queue with
  ``queue_arguments.x-single-active-consumer=true`` (one consumer of all instances gets its
  messages, the next one takes over when it goes), and ``exchange_type=x-consistent-hash``
  (plugin ``rabbitmq_consistent_hash_exchange``), which spreads keys over the queues bound to
  it. There a binding key is the queue's weight (default ``1``), and the key hashed is the
  routing key, or ``exchange_arguments.hash-header=NAME`` / ``hash-property=message_id``
  (``correlation_id``, ``timestamp``). Mistakes there fail at route start, not at the broker.
"""

from __future__ import annotations

import datetime
import os
from typing import Any, ClassVar, Literal

from eip.components.base import EndpointSpec
from eip.components.typed import make_spec, typed_spec

__all__ = ["DEFAULT_URL", "RabbitMQSpec", "rabbitmq"]

DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/"

ExchangeType = Literal["direct", "topic", "fanout", "headers", "x-consistent-hash"]
CONSISTENT_HASH = "x-consistent-hash"
HASH_PROPERTIES = ("message_id", "correlation_id", "timestamp")  # what the plugin can hash
QueueType = Literal["classic", "quorum", "stream"]
AuthMechanism = Literal["PLAIN", "EXTERNAL"]


class RabbitMQSpec(EndpointSpec, frozen=True):
    scheme: ClassVar[str] = "rabbitmq"
    path_field: ClassVar[str] = "exchange"

    exchange: str = ""
    url: str = ""
    client: str = "lean"  # or "aio-pika"; a str (not a Literal) so an error lists the choices
    # connection (shared by the endpoints that agree on all of these)
    heartbeat: int = 30
    connect_timeout: float = 10.0
    reconnect_delay: float = 0.5
    reconnect_max_delay: float = 30.0
    reconnect_jitter: float = 0.2
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    verify: bool = True
    auth_mechanism: AuthMechanism = "PLAIN"
    # exchange
    exchange_type: ExchangeType = "topic"
    exchange_durable: bool = True
    exchange_arguments: dict[str, Any] = {}
    exchange_bindings: list[str] = []
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
    binding_arguments: dict[str, Any] = {}
    queue_arguments: dict[str, Any] = {}
    declare: bool = True
    # consumer
    prefetch: int = 200
    concurrency: int = 1
    max_redeliveries: int = 5
    consumer_tag: str = ""
    exclusive_consumer: bool = False
    consumer_arguments: dict[str, Any] = {}
    stream_offset: str = ""
    # producer
    routing_key: str = ""
    routing_key_header: str = ""
    confirm: bool = True
    persistent: bool = True
    mandatory: bool = False
    publish_timeout: float = 30.0
    confirm_timeout: float = 30.0
    request_timeout: float = 30.0

    def __post_init__(self) -> None:
        check_hashing(self, complete=False)

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
        if self.exchange_type == CONSISTENT_HASH:
            return ["1"]  # the queue's weight: every queue bound gets an equal share of keys
        if self.exchange_type == "topic":
            return ["#"]
        if self.exchange_type == "direct":
            return [self.queue_name]
        return [""]

    @property
    def connection_key(self) -> tuple[object, ...]:
        """What makes two endpoints share a connection: the client, the URL and every
        connection option."""
        return (
            self.client,
            self.broker_url,
            self.heartbeat,
            self.connect_timeout,
            self.reconnect_delay,
            self.reconnect_max_delay,
            self.reconnect_jitter,
            self.ca_file,
            self.cert_file,
            self.key_file,
            self.verify,
            self.auth_mechanism,
        )

    @property
    def queue_declare_arguments(self) -> dict[str, object]:
        arguments: dict[str, object] = dict(self.queue_arguments)
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

    @property
    def consume_arguments(self) -> dict[str, object]:
        arguments: dict[str, object] = dict(self.consumer_arguments)
        if self.stream_offset:
            arguments["x-stream-offset"] = stream_offset_value(self.stream_offset)
        return arguments

    @property
    def source_exchanges(self) -> list[tuple[str, str]]:
        """``exchange_bindings`` as (source exchange, routing key) pairs."""
        pairs = []
        for text in self.exchange_bindings:
            source, _, key = text.partition(":")
            pairs.append((source, key))
        return pairs


def check_hashing(spec: RabbitMQSpec, *, complete: bool = True) -> None:
    """Consistent-hash mistakes the broker would only report by closing the channel (or by
    routing every key to one queue): weights that are not numbers, both hash sources, a
    property it cannot hash, hash arguments on an exchange that ignores them.

    A spec checks itself when built (``complete=False``). The last check waits for the
    component's ``validate``: while a spec is built, a placeholder ``exchange_type`` still
    stands at its default (``topic``)."""
    arguments = spec.exchange_arguments
    sources = [name for name in ("hash-header", "hash-property") if name in arguments]
    if _placeholder(spec.exchange_type):
        return  # checked once the placeholder is resolved, at route start
    if spec.exchange_type != CONSISTENT_HASH:
        if sources and complete:
            raise ValueError(
                f"exchange_arguments.{sources[0]} needs exchange_type={CONSISTENT_HASH} "
                f"(a {spec.exchange_type} exchange ignores it)"
            )
        return
    for key in spec.binding_keys:
        if not _placeholder(key) and not (key.isdigit() and int(key) > 0):
            raise ValueError(
                f"binding_keys of a {CONSISTENT_HASH} exchange are queue weights (positive "
                f"integers such as '1'), got {key!r}"
            )
    if len(sources) > 1:
        raise ValueError(
            "exchange_arguments.hash-header and hash-property are mutually exclusive: the "
            "exchange hashes one of them (or the routing key when neither is set)"
        )
    prop = arguments.get("hash-property")
    if prop is not None and not _placeholder(str(prop)) and prop not in HASH_PROPERTIES:
        raise ValueError(
            f"exchange_arguments.hash-property must be one of {', '.join(HASH_PROPERTIES)}, "
            f"got {prop!r}"
        )
    header = arguments.get("hash-header")
    if header is not None and (not isinstance(header, str) or not header):
        raise ValueError(f"exchange_arguments.hash-header names a header, got {header!r}")


def _placeholder(text: str) -> bool:
    return "{{" in text  # resolved at route start, checked by the broker then


def stream_offset_value(text: str) -> object:
    """``x-stream-offset``: first, last, next, an offset (digits), an ISO timestamp or an
    interval such as ``1h`` / ``30m`` (the broker's own syntax)."""
    if text in ("first", "last", "next"):
        return text
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        return text  # an interval ("7D", "1h"...): the broker validates it
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment


@typed_spec(RabbitMQSpec)
def rabbitmq(exchange: str = "", **options: object) -> RabbitMQSpec:
    """Typed form of ``rabbitmq:EXCHANGE?...``; options as in :class:`RabbitMQSpec`."""
    return make_spec(RabbitMQSpec, {"exchange": exchange, **options})
