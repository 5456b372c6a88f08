"""An AMQP channel: publishing, consuming, acknowledgements, confirms.

Hot path (sync, no task, future or lock per message):

* :meth:`Channel.publish` builds the whole publish (method + header + body frames) as one
  ``bytes`` (the method frame cached per exchange/routing key) and appends it to the
  connection's write buffer; the connection writes everything buffered in one iteration of the
  loop with one ``transport.write``. :meth:`ack`, :meth:`nack` and :meth:`reject` likewise.
* Incoming content is assembled in place by the connection's frame parser calling
  ``_on_deliver`` / ``_on_return`` / ``_on_header`` / ``_on_body``. Complete deliveries of one
  read are batched and handed to the consumer's ``on_deliveries`` callback once per read
  (contiguous deliveries of one consumer tag form one batch); returns and confirms are handed
  to ``on_return`` / ``on_confirm`` at once, in wire order, so a Return always precedes the
  Ack of the same publish.

Decisions:

* **A user callback that raises closes its channel** (``on_deliveries``, ``on_confirm``,
  ``on_return``, ``on_cancel``): it is logged, the channel is closed (the broker requeues every
  unacked delivery) and ``closed`` resolves with that exception. Swallowing it would leave
  deliveries unacked forever or confirms unaccounted for; eip's endpoint must handle its own
  errors inside its callbacks.
* **Broker cancel notifications** (the queue was deleted, a mirror failed over): the consumer
  is removed and ``on_cancel(consumer_tag)`` is called; if no ``on_cancel`` is set, the
  channel is closed with :class:`ConsumerCancelledError` as its ``closed`` reason, so a consumer
  never goes silent unnoticed.
* Operations on a closed channel raise its error (a fresh copy); a publish is never dropped
  silently. A publish buffered when the connection dies is simply never confirmed.
* After the client started closing a channel, deliveries still in flight are dropped (they are
  unacked, so the broker requeues them), while confirms and returns are still reported.
* Deliveries for an unknown consumer tag are logged and left unacked (never rejected: that
  would be a channel error for a ``no_ack`` consumer).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar, cast

from pamqp import base, commands

from .codec import (
    REPLY_HEAD,
    ack_frame,
    bits,
    content_frames,
    method_frame,
    method_name,
    nack_frame,
    publish_prefix,
    reject_frame,
    shortstr,
)
from .confirms import ConfirmTracker
from .errors import AmqpError, ChannelClosedError, ConsumerCancelledError, fresh
from .incoming import ChannelIncoming, DeliveriesCallback
from .message import Delivery, Properties, Returned
from .methods import ChannelMethods

if TYPE_CHECKING:
    from .connection import Connection

__all__ = ["Channel", "DeliveriesCallback"]

log = logging.getLogger("eip.components.rabbitmq.amqp")

_F = TypeVar("_F", bound=base.Frame)
_PREFIX_CACHE_SIZE = 256

CHANNEL_OPEN = 0x0014000A
CHANNEL_FLOW_OK = 0x00140015
CHANNEL_CLOSE = 0x00140028
CHANNEL_CLOSE_OK = 0x00140029
BASIC_CANCEL_OK = 0x003C001F
CONFIRM_SELECT = 0x0055000A


class _Rpc(NamedTuple):
    future: asyncio.Future[Any] | None
    expect: type[base.Frame]
    hook: Callable[[Any], None] | None


class Channel(ChannelIncoming, ChannelMethods):
    """One AMQP channel; create it with ``await connection.channel()``."""

    def __init__(self, connection: Connection, number: int, publisher_confirms: bool) -> None:
        self._conn = connection
        self._loop = connection._loop
        self.number = number
        self.publisher_confirms = publisher_confirms
        self.closed: asyncio.Future[BaseException | None] = self._loop.create_future()
        self.on_confirm: Callable[[int, bool, bool], None] | None = None
        self.on_return: Callable[[Returned], None] | None = None
        self.on_cancel: Callable[[str], None] | None = None
        self._error: AmqpError | None = None
        self._close_reason: BaseException | None = None
        self._rpcs: deque[_Rpc] = deque()
        self._consumers: dict[str, DeliveriesCallback] = {}
        self._prefixes: dict[tuple[str, str, bool], bytes] = {}
        self._max_body = connection.frame_max - 8
        self._tracker = ConfirmTracker(self._loop) if publisher_confirms else None
        self._incoming: Delivery | Returned | None = None
        self._body_left = 0
        self._parts: list[bytes] = []
        self._batch: list[Delivery] = []
        self._tag_raw = b""
        self._tag_str = ""

    def __repr__(self) -> str:
        state = "open" if self._error is None else "closed"
        return f"<Channel {self.number} {state}>"

    @property
    def is_open(self) -> bool:
        return self._error is None

    @property
    def writable(self) -> bool:
        """False while the connection's socket is over its high-water mark or the broker has
        blocked it: publish after ``await drain()``."""
        return self._conn.writable

    @property
    def next_publish_seq(self) -> int:
        """The sequence number the next publish will get (with confirms on)."""
        return 1 if self._tracker is None else self._tracker.next_seq

    def expire_confirms(self, before: int, error: AmqpError) -> int:
        """Fail the ``wait_confirm`` calls of publishes numbered below ``before`` with
        ``error`` (a late confirm is then ignored); returns how many waits failed."""
        return 0 if self._tracker is None else self._tracker.expire(before, error)

    @property
    def settled_below(self) -> int:
        """Every publish numbered below this one is confirmed (acked or nacked); 1 without
        confirms. With :meth:`confirm_failure`, what a confirm callback needs to settle the
        publishes it covers in order, without a future per publish."""
        return 1 if self._tracker is None else self._tracker.settled_below

    @property
    def any_confirm_failed(self) -> bool:
        """False while no publish on this channel was nacked or returned: then every settled
        publish was acked, and :meth:`confirm_failure` need not be asked."""
        return self._tracker is not None and self._tracker.any_failed

    def confirm_failure(self, seq: int) -> AmqpError | None:
        """Why settled publish ``seq`` failed (nacked, returned), or None when it was acked."""
        return None if self._tracker is None else self._tracker.failure(seq)

    @property
    def unconfirmed_count(self) -> int:
        """Publishes not yet acked or nacked by the broker (0 without confirms)."""
        return 0 if self._tracker is None else len(self._tracker.unconfirmed)

    # -- hot path: outgoing ----------------------------------------------------------------

    def publish(
        self,
        body: bytes,
        exchange: str = "",
        routing_key: str = "",
        properties: Properties | None = None,
        *,
        mandatory: bool = False,
    ) -> int:
        """Buffer a publish; returns its sequence number with confirms on, else 0."""
        if self._error is not None:
            raise fresh(self._error)
        key = (exchange, routing_key, mandatory)
        prefix = self._prefixes.get(key)
        if prefix is None:
            if len(self._prefixes) >= _PREFIX_CACHE_SIZE:
                self._prefixes.clear()
            prefix = self._prefixes[key] = publish_prefix(
                self.number, exchange, routing_key, mandatory
            )
        self._conn._send(content_frames(prefix, self.number, body, properties, self._max_body))
        tracker = self._tracker
        if tracker is None:
            return 0
        return tracker.published(exchange, routing_key, body, mandatory)

    def ack(self, delivery_tag: int, multiple: bool = False) -> None:
        if self._error is not None:
            raise fresh(self._error)
        self._conn._send(ack_frame(self.number, delivery_tag, multiple))

    def nack(self, delivery_tag: int, multiple: bool = False, requeue: bool = True) -> None:
        if self._error is not None:
            raise fresh(self._error)
        self._conn._send(nack_frame(self.number, delivery_tag, multiple, requeue))

    def reject(self, delivery_tag: int, requeue: bool) -> None:
        if self._error is not None:
            raise fresh(self._error)
        self._conn._send(reject_frame(self.number, delivery_tag, requeue))

    def flush(self) -> None:
        """Write everything buffered on the connection now (else: at the end of this
        iteration of the loop)."""
        self._conn.flush()

    async def drain(self) -> None:
        """Flush, then wait while the socket's write buffer is above its high-water mark or
        the broker has blocked the connection (a resource alarm)."""
        conn = self._conn
        conn.flush()
        while True:
            if self._error is not None:
                raise fresh(self._error)
            if not (conn._write_paused or conn.blocked):
                return
            await conn._wait_writable()

    async def wait_confirm(self, seq: int) -> None:
        """Wait for the broker's confirm of publish ``seq``: returns on an ack, raises
        :class:`MessageNackedError` on a nack, :class:`MessageReturnedError` if the (mandatory)
        publish was returned, the channel's error if it closes first."""
        if self._tracker is None:
            raise AmqpError("wait_confirm needs a channel with publisher_confirms=True")
        await self._tracker.wait(seq)

    # -- lifecycle -------------------------------------------------------------------------

    async def _open(self) -> None:
        await self._call(method_frame(self.number, CHANNEL_OPEN, b"\x00"), commands.Channel.OpenOk)
        if self.publisher_confirms:
            frame = method_frame(self.number, CONFIRM_SELECT, bits(False))
            await self._call(frame, commands.Confirm.SelectOk)

    async def close(self) -> None:
        """Close the channel (the broker requeues its unacked deliveries) and wait for it."""
        self._begin_close(ChannelClosedError(200, "channel closed by the client"), None)
        await asyncio.shield(self.closed)

    def close_soon(self, reason: str) -> None:
        """Start closing without waiting (``closed`` resolves with ``None``): for cleanup
        where awaiting the broker could hang (a blocked broker, a cancelled attach)."""
        self._begin_close(ChannelClosedError(200, reason), None)

    def _begin_close(
        self, error: AmqpError, reason: BaseException | None, text: str = "Normal shutdown"
    ) -> None:
        if self._error is not None:
            return
        self._error = error
        self._close_reason = reason
        self._consumers.clear()
        payload = b"".join((REPLY_HEAD.pack(200), shortstr(text[:255]), b"\x00" * 4))
        self._conn._send(method_frame(self.number, CHANNEL_CLOSE, payload))

    def _terminate(self, error: AmqpError, reason: BaseException | None) -> None:
        """The channel is closed: fail every waiter, resolve ``closed``, free the number."""
        if self.closed.done():
            return
        self._error = error
        self._consumers.clear()
        self._incoming = None
        self._parts = []
        self._batch = []
        rpcs, self._rpcs = self._rpcs, deque()
        for rpc in rpcs:
            if rpc.future is not None and not rpc.future.done():
                rpc.future.set_exception(fresh(error))
        if self._tracker is not None:
            self._tracker.terminate(error)
        self.closed.set_result(reason)
        self._conn._forget(self)

    def _callback_failed(self, name: str, exc: Exception) -> None:
        log.error("%s callback of channel %d raised; closing it", name, self.number, exc_info=exc)
        error = ChannelClosedError(200, f"closed by the client: {name} raised {exc!r}")
        error.__cause__ = exc
        self._begin_close(error, exc, f"{name} callback failed")

    # -- RPC -------------------------------------------------------------------------------

    def _send_rpc(
        self,
        frame: bytes,
        expect: type[_F],
        hook: Callable[[_F], None] | None,
        future: asyncio.Future[Any] | None,
    ) -> None:
        if self._error is not None:
            raise fresh(self._error)
        self._rpcs.append(_Rpc(future, expect, hook))
        self._conn._send(frame)

    async def _call(
        self, frame: bytes, expect: type[_F], hook: Callable[[_F], None] | None = None
    ) -> _F:
        future: asyncio.Future[Any] = self._loop.create_future()
        self._send_rpc(frame, expect, hook, future)
        return cast(_F, await future)

    def _on_method(self, method: base.Frame) -> None:
        """A (rare) method for this channel, decoded by pamqp; runs inside data_received."""
        if isinstance(method, commands.Channel.Close):
            error = ChannelClosedError(
                method.reply_code or 0,
                str(method.reply_text),
                method_name(method.class_id or 0, method.method_id or 0),
            )
            self._conn._send(method_frame(self.number, CHANNEL_CLOSE_OK))
            reason = self._close_reason if self._close_reason is not None else error
            self._terminate(error, reason)
        elif isinstance(method, commands.Channel.CloseOk):
            self._terminate(self._error or ChannelClosedError(200, "closed"), self._close_reason)
        elif isinstance(method, commands.Basic.Cancel):
            self._on_broker_cancel(str(method.consumer_tag), bool(method.nowait))
        elif isinstance(method, commands.Channel.Flow):
            self._conn._send(method_frame(self.number, CHANNEL_FLOW_OK, bits(bool(method.active))))
        elif not self._rpcs:
            if self._error is None:
                raise AmqpError(f"unexpected {method.name} on channel {self.number}")
        else:
            rpc = self._rpcs[0]
            if not isinstance(method, rpc.expect):
                raise AmqpError(
                    f"expected {rpc.expect.name} on channel {self.number}, got {method.name}"
                )
            self._rpcs.popleft()
            if rpc.hook is not None:
                rpc.hook(method)
            if rpc.future is not None and not rpc.future.done():
                rpc.future.set_result(method)

    def _on_broker_cancel(self, tag: str, nowait: bool) -> None:
        if not nowait:
            self._conn._send(method_frame(self.number, BASIC_CANCEL_OK, shortstr(tag)))
        if self._consumers.pop(tag, None) is None:
            return
        log.warning("the broker cancelled consumer %r on channel %d", tag, self.number)
        callback = self.on_cancel
        if callback is None:
            error = ChannelClosedError(0, f"consumer {tag!r} was cancelled by the broker")
            self._begin_close(error, ConsumerCancelledError(tag), "consumer cancelled")
            return
        try:
            callback(tag)
        except Exception as exc:
            self._callback_failed("on_cancel", exc)
