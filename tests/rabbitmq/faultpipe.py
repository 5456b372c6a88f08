"""One direction of a :mod:`faultproxy` connection: a pipe that can be frozen, slowed, held at
an AMQP frame boundary and have frames injected at one.

Kept apart from the proxy so that the byte bookkeeping (delays, bandwidth, back-pressure, frame
boundaries) can be read on its own. Reading from the source is paused whenever there is a reason
(``_stops``): frozen, blocked, too much queued, the destination's buffer full, or no destination
yet. That is what makes back-pressure real: the sender's socket fills and its transport calls
``pause_writing``, as with a slow or blocked broker.
"""

from __future__ import annotations

import asyncio
import struct
from collections import deque

__all__ = ["Frames", "Pipe"]

_SIZE = struct.Struct(">I")
_FRAME_END = 0xCE
_HIGH_WATER = 1 << 20  # queued bytes (delayed or frozen) above which reading pauses
_LOW_WATER = 256 << 10


class Frames:
    """Follows AMQP 0-9-1 frame boundaries in a byte stream (header: type u8, channel u16,
    size u32; then the payload and 0xCE). ``preamble`` bytes are skipped first: the protocol
    header ``AMQP\\x00\\x00\\x09\\x01`` that opens the client's stream."""

    def __init__(self, preamble: int = 0) -> None:
        self._skip = preamble
        self._header = bytearray()
        self.broken = False  # a frame did not end with 0xCE: not AMQP (TLS?), or a bug

    @property
    def at_boundary(self) -> bool:
        return not self.broken and self._skip == 0 and not self._header

    def advance(self, data: bytes, stop: bool = False) -> int:
        """Consume ``data``; returns how many bytes were consumed: all of them, or with
        ``stop`` only those up to the first frame boundary (0 if already at one)."""
        pos, end = 0, len(data)
        while True:
            if stop and self.at_boundary:
                return pos
            if pos >= end or self.broken:
                return end
            if self._skip:
                take = min(self._skip, end - pos)
                self._skip -= take
                pos += take
            elif not self._header and end - pos >= 7:
                frame_end = pos + 8 + _SIZE.unpack_from(data, pos + 3)[0]
                if frame_end > end:
                    self._skip = frame_end - end
                    return end
                self.broken = data[frame_end - 1] != _FRAME_END
                pos = frame_end
            else:
                take = min(7 - len(self._header), end - pos)
                self._header += data[pos : pos + take]
                pos += take
                if len(self._header) == 7:
                    self._skip = _SIZE.unpack_from(self._header, 3)[0] + 1
                    self._header.clear()


class Pipe:
    """Bytes from ``source`` to ``dest`` (transports), with the faults of one direction."""

    def __init__(self, loop: asyncio.AbstractEventLoop, frames: Frames | None) -> None:
        self._loop = loop
        self.frames = frames
        self.source: asyncio.Transport | None = None
        self.dest: asyncio.Transport | None = None
        self.count = 0  # bytes read from the source (injected frames not included)
        self.delay = 0.0
        self.rate: float | None = None
        self.frozen = False
        self.eof = False
        self.done = False  # eof seen and everything forwarded
        self._queue: deque[tuple[float, bytes]] = deque()
        self._queued = 0
        self._free_at = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._stops: set[str] = set()
        self._reading = True
        self._inject: list[bytes] = []
        self._hold_wanted = False
        self._holding = False
        self._held = bytearray()
        self._keepalive: bytes | None = None
        self._keepalive_timer: asyncio.TimerHandle | None = None

    # -- reading -----------------------------------------------------------------------------

    def stop(self, reason: str) -> None:
        self._stops.add(reason)
        self._update_reading()

    def go(self, reason: str) -> None:
        self._stops.discard(reason)
        self._update_reading()

    def _update_reading(self) -> None:
        want = not self._stops
        source = self.source
        if source is None or source.is_closing() or want == self._reading:
            return
        self._reading = want
        if want:
            source.resume_reading()
        else:
            source.pause_reading()

    def feed(self, data: bytes) -> None:
        self.count += len(data)
        self._take(data)

    def source_eof(self) -> None:
        self.eof = True
        self._maybe_done()

    def _take(self, data: bytes) -> None:
        frames = self.frames
        while data:
            if self._holding:
                self._held += data
                return
            if frames is None or not (self._inject or self._hold_wanted):
                if frames is not None:
                    frames.advance(data)
                self._emit(data)
                return
            n = frames.advance(data, stop=True)
            if n:
                self._emit(data[:n])
                data = data[n:]
            if frames.at_boundary:
                self._reached_boundary()

    # -- frame-level faults ------------------------------------------------------------------

    def inject(self, frame: bytes) -> None:
        """Send ``frame`` at the next frame boundary of the stream (now, if it is at one)."""
        self._inject.append(frame)
        if self.frames is not None and self.frames.at_boundary:
            self._reached_boundary()

    def hold(self, keepalive: bytes | None = None) -> None:
        """Stop forwarding (and reading) at the next frame boundary, and send ``keepalive``
        every 0.5 s meanwhile (heartbeats, so the far end does not time the link out)."""
        self._hold_wanted = True
        self._keepalive = keepalive
        if self.frames is not None and self.frames.at_boundary:
            self._reached_boundary()

    def release(self) -> None:
        self._hold_wanted = False
        if self._keepalive_timer is not None:
            self._keepalive_timer.cancel()
            self._keepalive_timer = None
        if self._holding:
            self._holding = False
            self.go("blocked")
            held, self._held = bytes(self._held), bytearray()
            self._take(held)
            self._maybe_done()

    def _reached_boundary(self) -> None:
        injected, self._inject = self._inject, []
        for frame in injected:
            self._emit(frame)
        if self._hold_wanted and not self._holding:
            self._hold_wanted = False
            self._holding = True
            self.stop("blocked")
            if self._keepalive is not None:
                self._keepalive_timer = self._loop.call_later(0.5, self._send_keepalive)

    def _send_keepalive(self) -> None:
        self._keepalive_timer = None
        if self._holding and self._keepalive is not None:
            if not self.frozen:
                self._emit(self._keepalive)
            self._keepalive_timer = self._loop.call_later(0.5, self._send_keepalive)

    # -- writing -----------------------------------------------------------------------------

    def set_slow(self, delay: float, rate: float | None) -> None:
        self.delay, self.rate = delay, rate
        if not delay and not rate:  # back to full speed: what waits goes out now
            now = self._loop.time()
            self._queue = deque((now, data) for _, data in self._queue)
            self._free_at = 0.0
            self._reschedule()

    def freeze(self) -> None:
        self.frozen = True
        self.stop("frozen")
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def thaw(self) -> None:
        self.frozen = False
        self.go("frozen")
        self._schedule()

    def attach_dest(self, dest: asyncio.Transport) -> None:
        self.dest = dest
        self._schedule()
        self._maybe_done()  # the source may have ended before the destination was there

    def dest_full(self, full: bool) -> None:
        if full:
            self.stop("dest-full")
        else:
            self.go("dest-full")

    def _emit(self, data: bytes) -> None:
        dest = self.dest
        if not (self._queue or self.frozen or self.delay or self.rate or dest is None):
            if not dest.is_closing():
                dest.write(data)
            return
        now = self._loop.time()
        rate = self.rate
        if rate:
            piece = max(512, int(rate / 20))  # ~50 ms of transfer each: a smooth stream
            for i in range(0, len(data), piece):
                chunk = data[i : i + piece]
                self._free_at = max(now + self.delay, self._free_at) + len(chunk) / rate
                self._queue.append((self._free_at, chunk))
        else:
            self._free_at = max(now + self.delay, self._free_at)
            self._queue.append((self._free_at, data))
        self._queued += len(data)
        if self._queued > _HIGH_WATER:
            self.stop("backlog")
        self._schedule()

    def _schedule(self) -> None:
        if self._timer is None and self._queue and not self.frozen and self.dest is not None:
            self._timer = self._loop.call_at(self._queue[0][0], self._flush)

    def _reschedule(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._schedule()

    def _flush(self) -> None:
        self._timer = None
        dest = self.dest
        if self.frozen or dest is None:
            return
        due = self._loop.time() + 0.001
        out = []
        while self._queue and self._queue[0][0] <= due:
            data = self._queue.popleft()[1]
            self._queued -= len(data)
            out.append(data)
        if out and not dest.is_closing():
            dest.write(b"".join(out))
        if self._queued < _LOW_WATER:
            self.go("backlog")
        self._schedule()
        self._maybe_done()

    def _maybe_done(self) -> None:
        dest = self.dest
        if not self.eof or self.done or self._queue or self._held or dest is None:
            return
        self.done = True
        if not dest.is_closing() and dest.can_write_eof():
            dest.write_eof()

    def close(self) -> None:
        for timer in (self._timer, self._keepalive_timer):
            if timer is not None:
                timer.cancel()
        self._timer = self._keepalive_timer = None
        self._queue.clear()
        self._held.clear()
