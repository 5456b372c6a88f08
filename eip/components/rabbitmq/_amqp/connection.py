"""The AMQP connection: an ``asyncio.Protocol`` with its own frame parser and write buffer.

Reading: ``data_received`` parses every complete frame of the read straight from the bytes it
was given (no copy) when nothing was pending, else from a ``bytearray`` holding the partial
frame left by earlier reads (compacted after every read, so the copy is at most one frame).
A frame is the 7-byte header (type, channel, size), the payload and the 0xCE frame end;
a wrong frame end, an unknown frame type or an oversized frame fails the connection. Hot
frames (Basic.Deliver, Basic.Return, Basic.Ack/Nack, content header and body) go straight to
the channel's hand-written decoders; anything else is decoded with pamqp. Deliveries are
dispatched to consumers once per read, in batches.

Writing: every frame is appended to ``_wbuf``; a ``loop.call_soon`` (once per iteration, not per
message) joins it into one ``transport.write``. More than ``FLUSH_AT`` bytes buffered in one
iteration are written at once. Back-pressure is the transport's: ``pause_writing`` /
``resume_writing`` feed :meth:`Channel.drain`, as do Connection.Blocked/Unblocked.

Heartbeats: see :mod:`.heartbeat` (one timer per connection, flags set per read and write).

Shutdown has one path, :meth:`_shutdown`: every channel is terminated (waiters fail, ``closed``
resolves), and the connection's ``closed`` resolves when the socket is gone: with ``None`` after
:meth:`close`, else with the :class:`ConnectionClosedError` (broker Connection.Close with its
code and text, socket loss, missed heartbeats, protocol error).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar, cast

from pamqp import base, commands

from .channel import Channel
from .codec import (
    BASIC_ACK,
    BASIC_DELIVER,
    BASIC_NACK,
    BASIC_RETURN,
    FRAME_HEADER,
    TAG_BITS,
    U32,
    Buffer,
    decode_method,
    marshal,
)
from .errors import AmqpError, ConnectionClosedError, fresh
from .heartbeat import HeartbeatMixin
from .incoming import ChannelIncoming

__all__ = ["FLUSH_AT", "Connection"]

log = logging.getLogger("eip.components.rabbitmq.amqp")

FLUSH_AT = 256 * 1024
_F = TypeVar("_F", bound=base.Frame)


class Connection(HeartbeatMixin, asyncio.Protocol):
    """One AMQP connection; create it with :func:`~.connect.connect`."""

    def __init__(self, loop: asyncio.AbstractEventLoop, *, close_timeout: float = 10.0) -> None:
        self._loop = loop
        self._close_timeout = close_timeout
        self._transport: asyncio.Transport | None = None
        self.closed: asyncio.Future[BaseException | None] = loop.create_future()
        self.blocked = False
        self.blocked_reason = ""
        #: Called with True on Connection.Blocked and False on Unblocked (from data_received).
        self.on_blocked: Callable[[bool], None] | None = None
        self.server_properties: dict[str, Any] = {}
        self.frame_max = 131072
        self.channel_max = 2047
        self.heartbeat = 0
        self._max_payload = 1 << 20  # until Tune
        self._opened = False
        self._error: AmqpError | None = None
        self._reason: BaseException | None = None
        self._channels: dict[int, Channel] = {}
        self._last_number = 0
        self._buf = bytearray()
        self._dirty: list[ChannelIncoming] = []
        self._wbuf: list[bytes] = []
        self._wsize = 0
        self._flush_scheduled = False
        self._write_paused = False
        self._writers: list[asyncio.Future[None]] = []
        self._handshake: deque[base.Frame] = deque()
        self._handshake_waiter: asyncio.Future[None] | None = None
        self._close_ok: asyncio.Future[None] | None = None
        self._heartbeat_timer: asyncio.TimerHandle | None = None
        self._rx = self._tx = False
        self._idle_ticks = 0
        self._quiet_ticks = 0

    def __repr__(self) -> str:
        state = "open" if self.is_open else "closed"
        return f"<Connection {state} channels={len(self._channels)}>"

    @property
    def is_open(self) -> bool:
        return self._opened and self._error is None

    @property
    def error(self) -> AmqpError | None:
        """Why the connection is closed (None while it is open)."""
        return self._error

    @property
    def writable(self) -> bool:
        """False while the socket's buffer is over its high-water mark or the broker has
        blocked the connection: publishers should ``drain`` first."""
        return not (self._write_paused or self.blocked)

    # -- public API ------------------------------------------------------------------------

    async def channel(self, *, publisher_confirms: bool = False) -> Channel:
        """Open a channel (with ``Confirm.Select`` when ``publisher_confirms``)."""
        if self._error is not None:
            raise fresh(self._error)
        number = self._allocate()
        channel = Channel(self, number, publisher_confirms)
        self._channels[number] = channel
        try:
            await channel._open()
        except BaseException:
            if not channel.closed.done():  # cancelled while opening: do not leak it
                channel._begin_close(AmqpError("channel open was interrupted"), None)
            raise
        return channel

    async def close(self) -> None:
        """Graceful close: flush, Connection.Close, wait for CloseOk (bounded), close the
        socket. Unacked deliveries are requeued by the broker."""
        if self._error is None:
            self.flush()
            self._shutdown(ConnectionClosedError(200, "connection closed by the client"), None)
            self._close_ok = self._loop.create_future()
            self._write_now(marshal(0, commands.Connection.Close(200, "Normal shutdown", 0, 0)))
            try:
                async with asyncio.timeout(self._close_timeout):
                    await self._close_ok
            except TimeoutError:
                log.warning("no Connection.CloseOk from the broker; closing the socket")
            finally:
                if self._transport is not None:
                    self._transport.close()
        await asyncio.shield(self.closed)

    def flush(self) -> None:
        """Write the buffered frames now (else they go at the end of this loop iteration)."""
        self._flush()

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (uvloop's transports are not asyncio.Transport subclasses: no isinstance check)
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._rx = True
        buf = self._buf
        view: Buffer
        if buf:
            buf += data
            view = buf
        else:
            view = data
        total = len(view)
        pos = 0
        channels = self._channels
        failure: Exception | None = None
        try:
            while total - pos >= 8:
                frame_type, number, size = FRAME_HEADER.unpack_from(view, pos)
                end = pos + 7 + size
                if end >= total:
                    if size > self._max_payload:
                        if frame_type == 0x41 and not self._opened:  # b"AMQP" + its version
                            raise AmqpError(f"the broker refused AMQP 0-9-1: {bytes(view[:8])!r}")
                        raise AmqpError(f"frame of {size} bytes exceeds frame_max")
                    break
                if view[end] != 0xCE:
                    raise AmqpError(f"frame end is {view[end]:#x}, not 0xce: corrupt stream")
                start = pos + 7
                pos = end + 1
                channel = channels.get(number) if number else None
                if frame_type == 1:
                    method = U32.unpack_from(view, start)[0]
                    if channel is None:
                        if not number:
                            self._on_rare_method(None, method, bytes(view[start + 4 : end]))
                    elif method == BASIC_DELIVER:
                        pos = channel._on_deliver(view, start + 4, end, total)
                    elif method in (BASIC_ACK, BASIC_NACK):
                        tag, flags = TAG_BITS.unpack_from(view, start + 4)
                        channel._on_confirm(tag, bool(flags & 1), method == BASIC_ACK)
                    elif method == BASIC_RETURN:
                        channel._on_return(view, start + 4, end)
                    else:
                        self._on_rare_method(channel, method, bytes(view[start + 4 : end]))
                elif frame_type == 3:
                    if channel is not None:
                        channel._on_body(view, start, end)
                elif frame_type == 2:
                    if channel is not None:
                        channel._on_header(view, start, end)
                elif frame_type != 8:
                    raise AmqpError(f"unknown frame type {frame_type}")
        except Exception as exc:
            failure = exc
        if view is buf:
            del buf[:pos]
        elif pos < total:
            buf += memoryview(data)[pos:]
        if self._dirty:
            self._dispatch()
        if failure is not None:
            self._protocol_error(failure)

    def eof_received(self) -> bool | None:
        return None  # let the transport close; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        text = f"connection lost: {exc!r}" if exc else "connection closed by the broker (EOF)"
        error = ConnectionClosedError(0, text)
        self._shutdown(error, error)
        self._buf.clear()
        if self._close_ok is not None and not self._close_ok.done():
            self._close_ok.set_result(None)
        if not self.closed.done():
            self.closed.set_result(self._reason)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake_writers()

    # -- reading: rare methods ---------------------------------------------------------------

    def _dispatch(self) -> None:
        dirty, self._dirty = self._dirty, []
        for channel in dirty:
            channel._dispatch()

    def _on_rare_method(self, channel: Channel | None, method_id: int, payload: bytes) -> None:
        if self._dirty:  # deliveries that came first are seen first
            self._dispatch()
        method = decode_method(method_id, payload)
        if channel is not None:
            channel._on_method(method)
        elif isinstance(method, commands.Connection.Close):
            error = ConnectionClosedError(method.reply_code or 0, str(method.reply_text))
            log.warning("the broker closed the connection: %s", error)
            self._shutdown(error, error)
            self._write_now(marshal(0, commands.Connection.CloseOk()))
            if self._transport is not None:
                self._transport.close()
        elif isinstance(method, commands.Connection.CloseOk):
            if self._close_ok is not None and not self._close_ok.done():
                self._close_ok.set_result(None)
        elif isinstance(method, commands.Connection.Blocked):
            log.warning("the broker blocked the connection: %s", method.reason)
            self.blocked = True
            self.blocked_reason = str(method.reason or "no reason given")
            self._blocked_changed(True)
        elif isinstance(method, commands.Connection.Unblocked):
            log.info("the broker unblocked the connection")
            self.blocked = False
            self.blocked_reason = ""
            self._wake_writers()
            self._blocked_changed(False)
        elif not self._opened:
            self._handshake.append(method)
            waiter = self._handshake_waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
        else:
            log.debug("ignored %s on channel 0", method.name)

    def _blocked_changed(self, blocked: bool) -> None:
        callback = self.on_blocked
        if callback is not None:
            try:
                callback(blocked)
            except Exception:
                log.exception("on_blocked callback raised")

    async def _expect(self, expected: type[_F]) -> _F:
        """The next channel-0 method during the handshake."""
        while not self._handshake:
            if self._error is not None:
                raise fresh(self._error)
            self._handshake_waiter = self._loop.create_future()
            await self._handshake_waiter
        method = self._handshake.popleft()
        if not isinstance(method, expected):
            raise AmqpError(f"expected {expected.name} from the broker, got {method.name}")
        return method

    # -- writing ---------------------------------------------------------------------------

    def _send(self, data: bytes) -> None:
        self._wbuf.append(data)
        self._wsize += len(data)
        if self._wsize >= FLUSH_AT:
            self._flush()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        wbuf = self._wbuf
        if not wbuf:
            return
        data = wbuf[0] if len(wbuf) == 1 else b"".join(wbuf)
        wbuf.clear()
        self._wsize = 0
        transport = self._transport
        if transport is not None and self._error is None:
            transport.write(data)
            self._tx = True

    def _write_now(self, data: bytes) -> None:
        """Write outside the buffer (handshake, close): nothing else is pending then."""
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.write(data)
            self._tx = True

    async def _wait_writable(self) -> None:
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._writers.append(waiter)
        try:
            await waiter
        finally:
            if waiter in self._writers:
                self._writers.remove(waiter)

    def _wake_writers(self) -> None:
        writers, self._writers = self._writers, []
        for waiter in writers:
            if not waiter.done():
                waiter.set_result(None)

    # -- channels and shutdown ---------------------------------------------------------------

    def _allocate(self) -> int:
        limit = self.channel_max or 65535
        number = self._last_number
        for _ in range(limit):
            number = number % limit + 1
            if number not in self._channels:
                self._last_number = number
                return number
        raise AmqpError(f"all {limit} channels are in use")

    def _forget(self, channel: Channel) -> None:
        if self._channels.get(channel.number) is channel:
            del self._channels[channel.number]

    def _protocol_error(self, exc: Exception) -> None:
        log.error("AMQP protocol error; aborting the connection", exc_info=exc)
        error = ConnectionClosedError(0, f"protocol error: {exc}")
        error.__cause__ = exc
        self._shutdown(error, error)
        if self._transport is not None:
            self._transport.abort()

    def _shutdown(self, error: AmqpError, reason: BaseException | None) -> None:
        """Fail everything once: channels, waiters; the socket is closed by the caller."""
        if self._error is not None:
            return
        self._error = error
        self._reason = reason
        self._wbuf.clear()
        self._wsize = 0
        self._stop_heartbeat()
        for channel in list(self._channels.values()):
            channel._terminate(error, reason)
        self._channels.clear()
        waiter = self._handshake_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(fresh(error))
        self._wake_writers()
