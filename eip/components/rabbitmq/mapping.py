"""AMQP properties <-> exchange headers.

Consuming: the message's application headers become exchange headers as they are; the basic
properties that are set become ``rabbitmq.<property>`` headers (``rabbitmq.message_id``,
``rabbitmq.correlation_id``, ``rabbitmq.content_type``, ``rabbitmq.timestamp``,
``rabbitmq.reply_to``, ...), plus ``rabbitmq.exchange``, ``rabbitmq.routing_key`` and
``rabbitmq.redelivered``; the message id is also ``eip.message.id`` (the aggregator's default
input id). ``traceparent``/``tracestate`` become the exchange's trace context.

Publishing: ``rabbitmq.<property>`` headers become the properties again (so a message id and a
correlation id survive a route from one queue to another); every other header that is not an
``eip.*`` or ``rabbitmq.*`` one becomes an application header, and so do the failure headers
(``eip.exception.type``/``.message``, ``eip.failure.endpoint``/``.route``,
``eip.redelivery.count``), so a message dead-lettered to a queue says why (values AMQP cannot
carry are sent as their ``str``). Not forwarded: ``rabbitmq.reply_to`` (the consumer answers
requests itself, and a forwarded reply address would send someone else's answer astray),
``rabbitmq.user_id`` (the broker checks it against the publishing connection's user and
closes the channel with 406 when they differ, so a message consumed from one broker user
could never be published by another), and the per-delivery headers (exchange, routing key,
redelivered, delivery count).
"""

from __future__ import annotations

import datetime
import decimal
from typing import Any

from eip import headers as H
from eip.components.rabbitmq._amqp import Delivery, Properties
from eip.message import Exchange
from eip.tracing import extract, inject

__all__ = ["exchange_from_delivery", "properties_for"]

PREFIX = "rabbitmq."
EXCHANGE = "rabbitmq.exchange"
ROUTING_KEY = "rabbitmq.routing_key"
REDELIVERED = "rabbitmq.redelivered"
DELIVERY_COUNT = "x-delivery-count"

_FORWARDED = (
    "message_id",
    "correlation_id",
    "content_type",
    "content_encoding",
    "type",
    "app_id",
    "timestamp",
    "priority",
    "expiration",
)
_FORWARDED_HEADERS = {f"{PREFIX}{name}": name for name in _FORWARDED}
_ALL_PROPERTIES = (*_FORWARDED, "reply_to", "user_id", "delivery_mode", "cluster_id")
_PROPERTY_HEADERS = tuple((name, PREFIX + name) for name in _ALL_PROPERTIES)  # built once
_TRACE = ("traceparent", "tracestate")
_FAILURE_HEADERS = frozenset(
    (H.EXCEPTION_TYPE, H.EXCEPTION_MESSAGE, H.FAILURE_ENDPOINT, H.FAILURE_ROUTE, H.REDELIVERY_COUNT)
)
_PLAIN = (str, int, float, bool, bytes, type(None), datetime.datetime, decimal.Decimal)


def _generate_property_headers() -> Any:
    """``headers["rabbitmq.<name>"] = properties.<name>`` for each property that is set, as
    one generated function of plain attribute reads (a loop of ``getattr`` cost ~3x more)."""
    lines = ["def property_headers(p, headers):"]
    for name, header in _PROPERTY_HEADERS:
        lines += [f"    if (v := p.{name}) is not None:", f"        headers[{header!r}] = v"]
    namespace: dict[str, Any] = {}
    exec(compile("\n".join(lines), "<eip rabbitmq property headers>", "exec"), namespace)
    return namespace["property_headers"]


_property_headers = _generate_property_headers()


def exchange_from_delivery(delivery: Delivery, tracing: bool) -> Exchange:
    properties = delivery.properties
    amqp_headers = properties.headers
    headers: dict[str, Any] = dict(amqp_headers) if amqp_headers else {}
    _property_headers(properties, headers)
    headers[EXCHANGE] = delivery.exchange
    headers[ROUTING_KEY] = delivery.routing_key
    headers[REDELIVERED] = delivery.redelivered
    if properties.message_id is not None:
        headers[H.MESSAGE_ID] = properties.message_id
    exchange = Exchange(delivery.body, headers)
    if amqp_headers and "traceparent" in amqp_headers:
        if tracing:
            exchange.trace_context = extract(amqp_headers)
        for name in _TRACE:
            headers.pop(name, None)
    return exchange


# What publishing does with a header, by name: the property it becomes, or one of these.
_SKIP, _APPLICATION = "", "*"
_KINDS: dict[str, str] = {}
_KINDS_KEPT = 4096  # header names remembered (beyond that, classified on each use)


def _kind(name: str) -> str:
    """The property a header becomes, ``_APPLICATION`` or ``_SKIP`` (remembered per name)."""
    kind = _FORWARDED_HEADERS.get(name)
    if kind is None:
        if name.startswith("eip."):  # a dead letter says why it is one
            kind = _APPLICATION if name in _FAILURE_HEADERS else _SKIP
        elif name.startswith(PREFIX) or name == DELIVERY_COUNT:
            kind = _SKIP
        else:
            kind = _APPLICATION
    if len(_KINDS) < _KINDS_KEPT:
        _KINDS[name] = kind
    return kind


def properties_for(exchange: Exchange, *, persistent: bool, tracing: bool) -> Properties:
    """AMQP properties for publishing ``exchange`` (see the module docstring)."""
    properties = Properties(None, None, None, 2 if persistent else 1)  # delivery_mode
    application: dict[str, Any] = {}
    kinds = _KINDS
    for name, value in exchange.headers.items():
        kind = kinds.get(name)
        if kind is None:
            kind = _kind(name)
        if not kind:  # _SKIP
            continue
        if kind is _APPLICATION:
            application[name] = _amqp_value(value)
        else:
            setattr(properties, kind, value)
    if properties.message_id is None:
        message_id = exchange.headers.get(H.MESSAGE_ID)
        if message_id is not None:
            properties.message_id = str(message_id)
    if tracing and exchange.trace_context is not None:
        inject(exchange, application)
    if application:
        properties.headers = application
    return properties


def _amqp_value(value: Any) -> Any:
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, dict):
        return {str(k): _amqp_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_amqp_value(v) for v in value]
    return str(value)
