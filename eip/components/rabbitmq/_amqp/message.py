"""Message value types: :class:`Properties`, :class:`Delivery` and :class:`Returned`.

They are plain ``__slots__`` classes (not dataclasses or msgspec Structs): one is built per
message on the hot path, and a slotted ``__init__`` is the cheapest Python object there is.

Decisions:

* ``timestamp`` is an ``int`` of POSIX seconds, as on the wire (AMQP's timestamp is a 64-bit
  count of seconds). No ``datetime`` is built per message, and there is no timezone to guess;
  convert with ``datetime.fromtimestamp(ts, UTC)`` where needed.
* ``headers`` is a ``dict`` of AMQP field values (str, int, float, bool, Decimal, datetime,
  bytearray, None, nested dicts and lists), encoded and decoded by pamqp's field-table codec.
  A long string that is not valid UTF-8 decodes to ``bytes``.
* Short strings (``content_type``, ``message_id``...) are decoded as UTF-8 with
  ``surrogateescape``, so arbitrary bytes from other clients round-trip instead of failing.
* An empty string is a *present* property (unlike pamqp, which drops it); ``None`` is absent.
"""

from __future__ import annotations

from typing import Any

__all__ = ["PROPERTY_NAMES", "Delivery", "Properties", "Returned"]

PROPERTY_NAMES = (
    "content_type",
    "content_encoding",
    "headers",
    "delivery_mode",
    "priority",
    "correlation_id",
    "reply_to",
    "expiration",
    "message_id",
    "timestamp",
    "type",
    "user_id",
    "app_id",
    "cluster_id",
)


class Properties:
    """The 14 basic content properties; every one defaults to ``None`` (absent)."""

    __slots__ = PROPERTY_NAMES

    def __init__(
        self,
        content_type: str | None = None,
        content_encoding: str | None = None,
        headers: dict[str, Any] | None = None,
        delivery_mode: int | None = None,
        priority: int | None = None,
        correlation_id: str | None = None,
        reply_to: str | None = None,
        expiration: str | None = None,
        message_id: str | None = None,
        timestamp: int | None = None,
        type: str | None = None,  # the AMQP property name
        user_id: str | None = None,
        app_id: str | None = None,
        cluster_id: str | None = None,
    ) -> None:
        self.content_type = content_type
        self.content_encoding = content_encoding
        self.headers = headers
        self.delivery_mode = delivery_mode
        self.priority = priority
        self.correlation_id = correlation_id
        self.reply_to = reply_to
        self.expiration = expiration
        self.message_id = message_id
        self.timestamp = timestamp
        self.type = type
        self.user_id = user_id
        self.app_id = app_id
        self.cluster_id = cluster_id

    def as_dict(self) -> dict[str, Any]:
        """The properties that are set (not ``None``)."""
        return {n: v for n in PROPERTY_NAMES if (v := getattr(self, n)) is not None}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Properties):
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in PROPERTY_NAMES)

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self.as_dict().items())
        return f"Properties({fields})"


class Delivery:
    """One message delivered to a consumer (Basic.Deliver + content header + body)."""

    __slots__ = (
        "body",
        "consumer_tag",
        "delivery_tag",
        "exchange",
        "properties",
        "redelivered",
        "routing_key",
    )

    def __init__(
        self,
        consumer_tag: str,
        delivery_tag: int,
        redelivered: bool,
        exchange: str,
        routing_key: str,
        properties: Properties,
        body: bytes,
    ) -> None:
        self.consumer_tag = consumer_tag
        self.delivery_tag = delivery_tag
        self.redelivered = redelivered
        self.exchange = exchange
        self.routing_key = routing_key
        self.properties = properties
        self.body = body

    def __repr__(self) -> str:
        return (
            f"Delivery(tag={self.delivery_tag}, consumer={self.consumer_tag!r}, "
            f"exchange={self.exchange!r}, routing_key={self.routing_key!r}, "
            f"redelivered={self.redelivered}, body={len(self.body)} bytes)"
        )


class Returned:
    """A mandatory publish the broker could not route (Basic.Return + header + body).

    ``publish_seq`` is the publish sequence number of the returned message on a channel with
    publisher confirms (matched by exchange, routing key and body among the unconfirmed
    mandatory publishes, in publish order, which is the order RabbitMQ returns them in),
    else 0. RabbitMQ sends the Return *before* the Basic.Ack of that publish, so ``on_return``
    always runs before ``on_confirm`` covers ``publish_seq``.
    """

    __slots__ = (
        "body",
        "exchange",
        "properties",
        "publish_seq",
        "reply_code",
        "reply_text",
        "routing_key",
    )

    def __init__(
        self,
        reply_code: int,
        reply_text: str,
        exchange: str,
        routing_key: str,
        properties: Properties,
        body: bytes,
        publish_seq: int = 0,
    ) -> None:
        self.reply_code = reply_code
        self.reply_text = reply_text
        self.exchange = exchange
        self.routing_key = routing_key
        self.properties = properties
        self.body = body
        self.publish_seq = publish_seq

    def __repr__(self) -> str:
        return (
            f"Returned({self.reply_code} {self.reply_text!r}, exchange={self.exchange!r}, "
            f"routing_key={self.routing_key!r}, seq={self.publish_seq}, "
            f"body={len(self.body)} bytes)"
        )
