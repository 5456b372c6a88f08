"""Exceptions raised by the AMQP client.

Every error is an :class:`AmqpError`. Errors that come from the broker carry its reply code
and text unchanged (``403 ACCESS_REFUSED``, ``404 NOT_FOUND``, ``320 CONNECTION_FORCED``...).
Errors the client detects itself (socket loss, missed heartbeats, a corrupt frame stream) use
reply code ``0``, so ``code != 0`` always means "the broker said so".

A closed channel or connection keeps its error and raises a *fresh copy* of it on every later
operation (:func:`fresh`), so that a loop of failing calls does not grow one traceback forever.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .message import Returned

__all__ = [
    "AmqpError",
    "ChannelClosedError",
    "ConfirmTimeoutError",
    "ConnectionClosedError",
    "ConsumerCancelledError",
    "MessageNackedError",
    "MessageReturnedError",
    "fresh",
]


class AmqpError(Exception):
    """Base class of every error raised by the AMQP client."""


class ConnectionClosedError(AmqpError):
    """The connection is closed: by the broker (``code`` is its reply code), by the client
    (``200``), or because the socket was lost, heartbeats were missed or the frame stream was
    corrupt (``0``)."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(code, text)
        self.code = code
        self.text = text

    def __str__(self) -> str:
        return f"connection closed ({self.code}): {self.text}"


class ChannelClosedError(AmqpError):
    """The channel is closed. ``method`` names the AMQP method the broker refused (for example
    ``"Queue.Declare"``) when it closed the channel because of one, else ``None``."""

    def __init__(self, code: int, text: str, method: str | None = None) -> None:
        super().__init__(code, text, method)
        self.code = code
        self.text = text
        self.method = method

    def __str__(self) -> str:
        where = f" on {self.method}" if self.method else ""
        return f"channel closed ({self.code}){where}: {self.text}"


class ConsumerCancelledError(AmqpError):
    """The broker cancelled a consumer (its queue was deleted, or it failed over) and the
    channel had no ``on_cancel`` callback: the channel is closed with this as its reason."""

    def __init__(self, consumer_tag: str) -> None:
        super().__init__(consumer_tag)
        self.consumer_tag = consumer_tag

    def __str__(self) -> str:
        return f"consumer {self.consumer_tag!r} was cancelled by the broker"


class ConfirmTimeoutError(AmqpError):
    """``wait_confirm``: no confirm came in time (see ``Channel.expire_confirms``); the
    publish may still be confirmed later, so its outcome is unknown."""


class MessageNackedError(AmqpError):
    """``wait_confirm``: the broker nacked the publish (it could not take responsibility)."""

    def __init__(self, seq: int) -> None:
        super().__init__(seq)
        self.seq = seq

    def __str__(self) -> str:
        return f"publish {self.seq} was nacked by the broker"


class MessageReturnedError(AmqpError):
    """``wait_confirm``: a mandatory publish could not be routed; ``returned`` is the
    broker's Basic.Return with the message."""

    def __init__(self, seq: int, returned: Returned) -> None:
        super().__init__(seq, returned)
        self.seq = seq
        self.returned = returned

    def __str__(self) -> str:
        r = self.returned
        return (
            f"publish {self.seq} was returned ({r.reply_code} {r.reply_text}) "
            f"exchange={r.exchange!r} routing_key={r.routing_key!r}"
        )


def fresh(error: AmqpError) -> AmqpError:
    """A new instance equal to ``error``, chained to it, for raising again."""
    copy = type(error)(*error.args)
    copy.__cause__ = error.__cause__
    return copy
