"""The receiving half of a channel: content assembly and dispatch (the hot path).

The connection's frame parser calls these methods with the read buffer and the offsets of a
frame's payload; nothing is sliced but the strings and the body. A message is the method frame
(Basic.Deliver or Basic.Return), a content header (properties, body size) and as many body
frames as the size needs (none for an empty body). Frames of one message are never interleaved
with other frames of the same channel; anything else is a protocol error that fails the
connection.

Complete deliveries are appended to the channel's batch and the channel is put on the
connection's ``_dirty`` list; at the end of ``data_received`` (or before a rare method that must
be seen after them, such as a cancel or a close) the connection calls :meth:`_dispatch`, which
hands each consumer its contiguous run of deliveries in one call. Returns and confirms are not
batched: they are reported at once, in wire order.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from .codec import (
    CONTENT_HEADER,
    FRAME_HEADER,
    REPLY_HEAD,
    TAG_BITS,
    Buffer,
    decode_properties,
)
from .confirms import ConfirmTracker
from .errors import AmqpError
from .message import Delivery, Properties, Returned

if TYPE_CHECKING:
    from .connection import Connection

__all__ = ["ChannelIncoming", "DeliveriesCallback"]

log = logging.getLogger("eip.components.rabbitmq.amqp")

DeliveriesCallback = Callable[[list[Delivery]], None]
_PLACEHOLDER = Properties()


class ChannelIncoming:
    """Mixin of :class:`~.channel.Channel`; the state lives in ``Channel.__init__``."""

    number: int
    on_confirm: Callable[[int, bool, bool], None] | None
    on_return: Callable[[Returned], None] | None
    _conn: Connection
    _error: AmqpError | None
    _tracker: ConfirmTracker | None
    _consumers: dict[str, DeliveriesCallback]
    _incoming: Delivery | Returned | None
    _body_left: int  # -1: content header expected; > 0: body bytes expected
    _parts: list[bytes]
    _batch: list[Delivery]
    _tag_raw: bytes
    _tag_str: str

    def _callback_failed(self, name: str, exc: Exception) -> None:
        raise NotImplementedError  # pragma: no cover - implemented by Channel

    def _on_deliver(self, buf: Buffer, pos: int, end: int, total: int) -> int:
        """Basic.Deliver at ``buf[pos:end]``; returns where the frame parser goes on.

        Fast path: when the content header and a single body frame follow at once in the
        buffer (the usual case), they are consumed here too, saving two trips through the
        parser's loop; anything else is left to the loop and ``_on_header`` / ``_on_body``.
        """
        if self._incoming is not None:
            raise AmqpError("Basic.Deliver inside another message's content")
        n = buf[pos]
        pos += 1 + n
        raw = buf[pos - n : pos]
        if raw != self._tag_raw:  # one consumer tag decoded once, not per message
            self._tag_raw = bytes(raw)
            self._tag_str = raw.decode("utf-8", "surrogateescape")
        tag, redelivered = TAG_BITS.unpack_from(buf, pos)
        pos += 9
        n = buf[pos]
        pos += 1 + n
        exchange = buf[pos - n : pos].decode("utf-8", "surrogateescape") if n else ""
        n = buf[pos]
        pos += 1 + n
        routing_key = buf[pos - n : pos].decode("utf-8", "surrogateescape")
        if pos > end:
            raise AmqpError("malformed Basic.Deliver")
        delivery = Delivery(
            self._tag_str, tag, bool(redelivered & 1), exchange, routing_key, _PLACEHOLDER, b""
        )
        pos = end + 1
        if total - pos >= 22:
            frame_type, number, size = FRAME_HEADER.unpack_from(buf, pos)
            head_end = pos + 7 + size
            if (
                frame_type == 2
                and number == self.number
                and size >= 14
                and head_end < total
                and buf[head_end] == 0xCE
            ):
                _class, _weight, body_size, flags = CONTENT_HEADER.unpack_from(buf, pos + 7)
                delivery.properties = decode_properties(buf, pos + 21, head_end, flags)
                pos = head_end + 1
                if body_size:
                    if total - pos < 8:
                        self._incoming = delivery
                        self._body_left = body_size
                        return pos
                    frame_type, number, size = FRAME_HEADER.unpack_from(buf, pos)
                    body_end = pos + 7 + size
                    if not (
                        frame_type == 3
                        and number == self.number
                        and size == body_size
                        and body_end < total
                        and buf[body_end] == 0xCE
                    ):
                        self._incoming = delivery
                        self._body_left = body_size
                        return pos
                    delivery.body = bytes(buf[pos + 7 : body_end])
                    pos = body_end + 1
                if self._error is None:
                    if not self._batch:
                        self._conn._dirty.append(self)
                    self._batch.append(delivery)
                return pos
        self._incoming = delivery
        self._body_left = -1
        return pos

    def _on_return(self, buf: Buffer, pos: int, end: int) -> None:
        if self._incoming is not None:
            raise AmqpError("Basic.Return inside another message's content")
        code = REPLY_HEAD.unpack_from(buf, pos)[0]
        pos += 2
        n = buf[pos]
        pos += 1 + n
        text = buf[pos - n : pos].decode("utf-8", "surrogateescape")
        n = buf[pos]
        pos += 1 + n
        exchange = buf[pos - n : pos].decode("utf-8", "surrogateescape")
        n = buf[pos]
        pos += 1 + n
        routing_key = buf[pos - n : pos].decode("utf-8", "surrogateescape")
        if pos > end:
            raise AmqpError("malformed Basic.Return")
        self._incoming = Returned(code, text, exchange, routing_key, _PLACEHOLDER, b"")
        self._body_left = -1

    def _on_header(self, buf: Buffer, pos: int, end: int) -> None:
        message = self._incoming
        if message is None or self._body_left != -1:
            raise AmqpError(f"unexpected content header on channel {self.number}")
        if end - pos < 14:
            raise AmqpError(f"content header of {end - pos} bytes is too short")
        _class, _weight, size, flags = CONTENT_HEADER.unpack_from(buf, pos)
        message.properties = decode_properties(buf, pos + 14, end, flags)
        if size:
            self._body_left = size
        else:
            self._complete(message, b"")

    def _on_body(self, buf: Buffer, pos: int, end: int) -> None:
        message = self._incoming
        left = self._body_left
        n = end - pos
        if message is None or left <= 0 or n > left:
            raise AmqpError(f"unexpected content body on channel {self.number}")
        if n < left:
            self._parts.append(bytes(buf[pos:end]))
            self._body_left = left - n
        elif self._parts:
            self._parts.append(bytes(buf[pos:end]))
            body = b"".join(self._parts)
            self._parts = []
            self._complete(message, body)
        else:
            self._complete(message, bytes(buf[pos:end]))

    def _complete(self, message: Delivery | Returned, body: bytes) -> None:
        message.body = body
        self._incoming = None
        self._body_left = 0
        if isinstance(message, Delivery):
            if self._error is not None:
                return  # closing: dropped unacked, so the broker requeues it
            if not self._batch:
                self._conn._dirty.append(self)
            self._batch.append(message)
            return
        if self._tracker is not None:
            self._tracker.returned(message)
        callback = self.on_return
        if callback is None:
            log.warning("%r (channel %d has no on_return callback)", message, self.number)
            return
        try:
            callback(message)
        except Exception as exc:
            self._callback_failed("on_return", exc)

    def _on_confirm(self, tag: int, multiple: bool, ack: bool) -> None:
        tracker = self._tracker
        if tracker is None:
            raise AmqpError(f"publisher confirm on channel {self.number} without confirms")
        tracker.settle(tag, multiple, ack)
        callback = self.on_confirm
        if callback is not None:
            try:
                callback(tag, multiple, ack)
            except Exception as exc:
                self._callback_failed("on_confirm", exc)

    def _dispatch(self) -> None:
        """Hand the deliveries batched during one read to their consumers."""
        batch = self._batch
        self._batch = []
        if self._error is not None or not batch:
            return
        consumers = self._consumers
        runs: list[list[Delivery]]
        if len(consumers) == 1 and batch[0].consumer_tag == batch[-1].consumer_tag:
            runs = [batch]
        else:
            runs = []
            start = 0
            for i in range(1, len(batch)):
                if batch[i].consumer_tag != batch[start].consumer_tag:
                    runs.append(batch[start:i])
                    start = i
            runs.append(batch[start:])
        for run in runs:
            callback = consumers.get(run[0].consumer_tag)
            if callback is None:
                log.warning(
                    "%d deliveries for unknown consumer %r on channel %d left unacked",
                    len(run),
                    run[0].consumer_tag,
                    self.number,
                )
                continue
            try:
                callback(run)
            except Exception as exc:
                self._callback_failed("on_deliveries", exc)
                return
