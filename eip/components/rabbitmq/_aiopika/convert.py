"""aio-pika's messages and errors <-> the endpoints' value types and errors.

The endpoints read :class:`~.._amqp.Delivery` / :class:`~.._amqp.Properties` and catch
:mod:`.._amqp.errors`, whichever client runs them; this module converts at the boundary.

What aio-pika's ``IncomingMessage`` cannot tell apart (it fills in defaults): a priority of 0
and no priority, an empty string and no string, an absent delivery mode (read as 1). Those
come out as absent / 1 here; nothing the engine does depends on the difference. Expirations
are milliseconds again (aio-pika reads them as float seconds) and timestamps POSIX seconds,
as on the lean client.
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Any

import aiormq.exceptions as aiormq_errors
from aiormq import spec

from eip.components.rabbitmq._amqp.errors import (
    AmqpError,
    ChannelClosedError,
    ConnectionClosedError,
    MessageReturnedError,
)
from eip.components.rabbitmq._amqp.message import Delivery, Properties, Returned

if TYPE_CHECKING:
    from aio_pika.abc import AbstractIncomingMessage

__all__ = [
    "channel_error",
    "connection_error",
    "delivery_from",
    "properties_from_pamqp",
    "returned_error",
    "to_pamqp",
]

# aiormq raises these for a broker's Channel.Close / Connection.Close with the code dropped.
_CHANNEL_CODES: dict[type[BaseException], int] = {
    aiormq_errors.ChannelAccessRefused: 403,
    aiormq_errors.ChannelNotFoundEntity: 404,
    aiormq_errors.ChannelLockedResource: 405,
    aiormq_errors.ChannelPreconditionFailed: 406,
}
_CONNECTION_CODES: dict[type[BaseException], int] = {
    aiormq_errors.ConnectionFrameError: 501,
    aiormq_errors.ConnectionSyntaxError: 502,
    aiormq_errors.ConnectionCommandInvalid: 503,
    aiormq_errors.ConnectionChannelError: 504,
    aiormq_errors.ConnectionUnexpectedFrame: 505,
    aiormq_errors.ConnectionResourceError: 506,
    aiormq_errors.ConnectionNotAllowed: 530,
    aiormq_errors.ConnectionNotImplemented: 540,
    aiormq_errors.ConnectionInternalError: 541,
}


def delivery_from(message: AbstractIncomingMessage) -> Delivery:
    """The endpoint's view of one aio-pika delivery."""
    expiration = message.expiration
    timestamp = message.timestamp
    properties = Properties(
        content_type=message.content_type or None,
        content_encoding=message.content_encoding or None,
        headers=dict(message.headers) if message.headers else None,
        delivery_mode=int(message.delivery_mode) if message.delivery_mode else None,
        priority=message.priority or None,
        correlation_id=message.correlation_id or None,
        reply_to=message.reply_to or None,
        expiration=_milliseconds(expiration) if expiration is not None else None,
        message_id=message.message_id or None,
        timestamp=_seconds(timestamp) if timestamp is not None else None,
        type=message.type or None,
        user_id=message.user_id or None,
        app_id=message.app_id or None,
        cluster_id=message.cluster_id or None,
    )
    return Delivery(
        message.consumer_tag or "",
        message.delivery_tag or 0,
        bool(message.redelivered),
        message.exchange or "",
        message.routing_key or "",
        properties,
        message.body,
    )


def _milliseconds(value: Any) -> str:
    if isinstance(value, datetime.timedelta):
        value = value.total_seconds()
    return str(round(float(value) * 1000))


def _seconds(value: Any) -> int:
    if isinstance(value, datetime.datetime):
        return int(value.timestamp())
    return int(value)


def to_pamqp(properties: Properties | None) -> spec.Basic.Properties:
    """The wire properties of a publish, exactly as given (no aio-pika defaults)."""
    if properties is None:
        return spec.Basic.Properties()
    timestamp = properties.timestamp
    return spec.Basic.Properties(
        content_type=properties.content_type,
        content_encoding=properties.content_encoding,
        headers=properties.headers,
        delivery_mode=properties.delivery_mode,
        priority=properties.priority,
        correlation_id=properties.correlation_id,
        reply_to=properties.reply_to,
        expiration=properties.expiration,
        message_id=properties.message_id,
        timestamp=_datetime(timestamp) if timestamp is not None else None,
        message_type=properties.type,
        user_id=properties.user_id,
        app_id=properties.app_id,
    )


def _datetime(value: Any) -> datetime.datetime:
    if isinstance(value, datetime.datetime):
        return value
    return datetime.datetime.fromtimestamp(int(value), datetime.UTC)


def properties_from_pamqp(wire: spec.Basic.Properties) -> Properties:
    timestamp = wire.timestamp
    return Properties(
        content_type=wire.content_type,
        content_encoding=wire.content_encoding,
        headers=wire.headers,
        delivery_mode=wire.delivery_mode,
        priority=wire.priority,
        correlation_id=wire.correlation_id,
        reply_to=wire.reply_to,
        expiration=wire.expiration,
        message_id=wire.message_id,
        timestamp=_seconds(timestamp) if timestamp is not None else None,
        type=wire.message_type,
        user_id=wire.user_id,
        app_id=wire.app_id,
    )


def returned_error(seq: int, error: aiormq_errors.PublishError) -> AmqpError:
    """A mandatory publish the broker returned, as the lean client reports it."""
    message = error.message
    frame = message.delivery if message is not None else None
    if message is None or not isinstance(frame, spec.Basic.Return):
        return AmqpError(f"publish {seq} was returned: {error}")
    returned = Returned(
        frame.reply_code or 0,
        str(frame.reply_text or ""),
        str(frame.exchange or ""),
        str(frame.routing_key or ""),
        properties_from_pamqp(message.header.properties),
        message.body,
        seq,
    )
    return MessageReturnedError(seq, returned)


def _code_and_text(error: BaseException, codes: dict[type[BaseException], int]) -> tuple[int, str]:
    args = error.args
    if len(args) >= 2 and isinstance(args[0], int):
        return args[0], str(args[1])
    code = next((c for kind, c in codes.items() if isinstance(error, kind)), 0)
    text = str(args[0]) if args else type(error).__name__
    return code, text


def connection_error(error: BaseException | None) -> ConnectionClosedError:
    """Why a connection was lost: the broker's code and text when it closed it, else 0."""
    if isinstance(error, aiormq_errors.ConnectionClosed):
        return ConnectionClosedError(*_code_and_text(error, _CONNECTION_CODES))
    if error is None:
        return ConnectionClosedError(0, "connection lost")
    detail = str(error) or "no detail"
    return ConnectionClosedError(0, f"connection lost ({type(error).__name__}: {detail})")


def channel_error(error: BaseException | None) -> ChannelClosedError:
    """Why the broker (or aiormq) closed a channel: the broker's code and text if it did."""
    if isinstance(error, aiormq_errors.ChannelClosed):
        return ChannelClosedError(*_code_and_text(error, _CHANNEL_CODES))
    if error is None:
        return ChannelClosedError(0, "channel closed")
    return ChannelClosedError(0, f"channel closed ({type(error).__name__}: {error})")
