"""Heartbeats: one ``call_later`` timer per connection, never anything per message.

The timer ticks every heartbeat/4 seconds. The hot path only sets two flags: ``_rx`` in
``data_received`` and ``_tx`` when the write buffer is flushed. A heartbeat frame is sent when
nothing was written for two ticks (so the broker, which drops a peer silent for about
2 x heartbeat, always hears from us at least every heartbeat/2 seconds), and the connection
fails with ``ConnectionClosedError(0, "missed heartbeats...")`` after 8 ticks (2 x heartbeat,
at most a quarter heartbeat late) without receiving anything: the socket is aborted, every
channel and waiter fails, ``closed`` resolves.

Counting ticks rather than comparing timestamps keeps an event loop that stalled for a while
(a long synchronous step) from mistaking the stall for a dead broker: a late tick is one tick.
"""

from __future__ import annotations

import asyncio
import logging

from .codec import HEARTBEAT_FRAME
from .errors import AmqpError, ConnectionClosedError

__all__ = ["HeartbeatMixin"]

log = logging.getLogger("eip.components.rabbitmq.amqp")


class HeartbeatMixin:
    """Mixin of :class:`~.connection.Connection`."""

    heartbeat: int
    _loop: asyncio.AbstractEventLoop
    _transport: asyncio.Transport | None
    _error: AmqpError | None
    _heartbeat_timer: asyncio.TimerHandle | None
    _rx: bool
    _tx: bool
    _idle_ticks: int
    _quiet_ticks: int

    def _write_now(self, data: bytes) -> None:
        raise NotImplementedError  # pragma: no cover - implemented by Connection

    def _shutdown(self, error: AmqpError, reason: BaseException | None) -> None:
        raise NotImplementedError  # pragma: no cover - implemented by Connection

    def _start_heartbeat(self) -> None:
        if self.heartbeat > 0:
            self._heartbeat_timer = self._loop.call_later(self.heartbeat / 4, self._tick)

    def _tick(self) -> None:
        self._heartbeat_timer = None
        if self._error is not None:
            return
        if self._rx:
            self._rx = False
            self._idle_ticks = 0
        else:
            self._idle_ticks += 1
            if self._idle_ticks >= 8:
                error = ConnectionClosedError(
                    0, f"missed heartbeats: nothing from the broker for {2 * self.heartbeat} s"
                )
                log.error("%s", error)
                self._shutdown(error, error)
                if self._transport is not None:
                    self._transport.abort()
                return
        if self._tx:
            self._quiet_ticks = 0
        else:
            self._quiet_ticks += 1
            if self._quiet_ticks >= 2:
                self._quiet_ticks = 0
                self._write_now(HEARTBEAT_FRAME)
        self._tx = False
        self._start_heartbeat()

    def _stop_heartbeat(self) -> None:
        if self._heartbeat_timer is not None:
            self._heartbeat_timer.cancel()
            self._heartbeat_timer = None
