"""A fault-injecting TCP proxy for tests: put it between a client and RabbitMQ, then break the
link the ways real networks and brokers do, one connection or all of them at once::

    async with FaultProxy() as proxy:                      # 127.0.0.1:proxy.port -> :5672
        conn = await connect(broker_vhost.url_via(proxy.port), heartbeat=2)
        proxy.freeze()            # a dead peer: nothing passes, nothing is read
        proxy.thaw()
        proxy.slow(0.2)           # +200 ms each way (and optionally a bandwidth cap)
        proxy.block()             # Connection.Blocked, and the client's data is not read
        proxy.unblock()
        proxy.reset()             # RST on both sides of every current connection
        proxy.refuse()            # new connections are cut at once, until accept()

Why a proxy: ``rabbitmqctl`` can close a connection, but not make it silent, slow or blocked,
and a real memory alarm would block every client of the shared broker.

Each control applies to the connections open when it is called (``proxy.connections``), or to
one of them (``proxy.connections[0].freeze()``, or ``connection=`` on the proxy's method), and
returns how many it touched. Connections opened later start clean: a client that reconnects
after a freeze gets a working link (add ``refuse()`` for a broker that stays unreachable).
``block`` follows AMQP frame boundaries, so the proxy must carry plain AMQP (``amqp=False``
turns the frame tracking off, for TLS or other protocols; then ``block`` raises).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from types import TracebackType

from .faultpipe import Frames, Pipe

__all__ = ["FaultProxy", "ProxiedConnection"]

HEARTBEAT = b"\x08\x00\x00\x00\x00\x00\x00\xce"
_LINGER_RST = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST, not FIN


def method_frame(class_id: int, method_id: int, args: bytes = b"") -> bytes:
    """An AMQP method frame on channel 0."""
    payload = struct.pack(">HH", class_id, method_id) + args
    return struct.pack(">BHI", 1, 0, len(payload)) + payload + b"\xce"


def blocked_frame(reason: str) -> bytes:
    """Connection.Blocked (10, 60) with its shortstr reason."""
    raw = reason.encode()[:255]
    return method_frame(10, 60, bytes([len(raw)]) + raw)


UNBLOCKED = method_frame(10, 61)


class _Side(asyncio.Protocol):
    """One socket of a proxied connection; ``reads`` is the pipe it feeds, ``writes`` the
    pipe that writes to it."""

    def __init__(self, proxy: FaultProxy | None = None) -> None:
        self.proxy = proxy  # set on the listening side only: connection_made creates the link
        self.conn: ProxiedConnection | None = None
        self.reads: Pipe | None = None
        self.writes: Pipe | None = None
        self.transport: asyncio.Transport | None = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if self.proxy is not None:
            self.proxy._accepted(self, transport)

    def data_received(self, data: bytes) -> None:
        if self.reads is not None:
            self.reads.feed(data)

    def eof_received(self) -> bool:
        if self.reads is not None:
            self.reads.source_eof()
        if self.conn is not None:
            self.conn._check_done()
        return True  # keep the socket open for the other direction (half-close)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.conn is not None:
            self.conn._side_lost(exc)

    def pause_writing(self) -> None:
        if self.writes is not None:
            self.writes.dest_full(True)

    def resume_writing(self) -> None:
        if self.writes is not None:
            self.writes.dest_full(False)


class ProxiedConnection:
    """One client connection and its link to the target, with the controls for it alone."""

    def __init__(self, proxy: FaultProxy, client: _Side, transport: asyncio.Transport) -> None:
        loop = asyncio.get_running_loop()
        self._proxy = proxy
        self.client_port: int = transport.get_extra_info("peername")[1]
        self.upstream_port: int | None = None  # the proxy's port towards the broker: the
        # peer port the broker sees, e.g. for BrokerVhost.close_channels
        self.to_broker = Pipe(loop, Frames(preamble=8) if proxy.amqp else None)
        self.to_client = Pipe(loop, Frames() if proxy.amqp else None)
        self.blocked = False
        self.connected = loop.create_future()  # set once the target accepted the link
        self.closed = loop.create_future()  # set once both sockets are gone
        self._client = client
        self._broker = _Side()
        for side, reads, writes in (
            (client, self.to_broker, self.to_client),
            (self._broker, self.to_client, self.to_broker),
        ):
            side.conn, side.reads, side.writes = self, reads, writes
        self.to_broker.source = transport
        self.to_client.dest = transport
        self.to_broker.stop("connecting")
        self._task = loop.create_task(self._connect())

    def __repr__(self) -> str:
        return f"<ProxiedConnection client port {self.client_port} -> {self.upstream_port}>"

    @property
    def bytes_to_broker(self) -> int:
        return self.to_broker.count

    @property
    def bytes_to_client(self) -> int:
        return self.to_client.count

    @property
    def frozen(self) -> bool:
        return self.to_broker.frozen

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await loop.create_connection(
                lambda: self._broker, self._proxy.target_host, self._proxy.target_port
            )
        except OSError:
            self.reset()
            return
        assert isinstance(transport, asyncio.Transport)
        if self._client.lost:
            transport.abort()
            return
        self.upstream_port = transport.get_extra_info("sockname")[1]
        self.to_client.source = transport
        self.to_client._update_reading()  # it may have been frozen while connecting
        self.to_broker.attach_dest(transport)
        self.to_broker.go("connecting")
        self.connected.set_result(None)

    # -- controls ----------------------------------------------------------------------------

    def reset(self) -> None:
        """Abort both sockets with a TCP RST, as a crashed host or a firewall does."""
        for side in (self._client, self._broker):
            transport = side.transport
            if transport is not None and not side.lost:
                sock = transport.get_extra_info("socket")
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
                transport.abort()
        if not self._task.done():
            self._task.cancel()

    def freeze(self) -> None:
        """Forward nothing and read nothing, either way: a dead peer (back-pressure builds)."""
        self.to_broker.freeze()
        self.to_client.freeze()

    def thaw(self) -> None:
        self.to_broker.thaw()
        self.to_client.thaw()

    def slow(self, delay_seconds: float, bytes_per_second: float | None = None) -> None:
        """Add ``delay_seconds`` to each direction (a round trip gains twice that), and cap
        each direction at ``bytes_per_second``; ``slow(0)`` is full speed again."""
        if delay_seconds < 0 or (bytes_per_second is not None and bytes_per_second <= 0):
            raise ValueError("slow() needs delay_seconds >= 0 and bytes_per_second > 0")
        self.to_broker.set_slow(delay_seconds, bytes_per_second)
        self.to_client.set_slow(delay_seconds, bytes_per_second)

    def block(self, reason: str = "low on memory") -> None:
        """Send Connection.Blocked to the client and stop reading what it sends, as a broker
        under a memory or disk alarm does. The broker gets heartbeats from the proxy meanwhile
        (a blocked broker does not time out its blocked clients)."""
        if self.to_client.frames is None or self.to_client.frames.broken:
            raise RuntimeError("block() needs a plain AMQP stream (FaultProxy(amqp=True))")
        if not self.blocked:
            self.blocked = True
            self.to_client.inject(blocked_frame(reason))
            self.to_broker.hold(keepalive=HEARTBEAT)

    def unblock(self) -> None:
        """Send Connection.Unblocked and forward the client's data again."""
        if self.blocked:
            self.blocked = False
            self.to_client.inject(UNBLOCKED)
            self.to_broker.release()

    # -- teardown ----------------------------------------------------------------------------

    def _side_lost(self, exc: Exception | None) -> None:
        if exc is not None:  # a reset on one side is a reset on the other
            self.reset()
        for side in (self._client, self._broker):
            if side.lost and side.reads is not None and side.writes is not None:
                side.reads.source_eof()  # nothing more comes from it,
                side.writes.done = True  # and nothing more can reach it
        self._check_done()
        if self._client.lost and (self._broker.lost or self._broker.transport is None):
            self._finish()

    def _check_done(self) -> None:
        if self.to_broker.done and self.to_client.done:
            for side in (self._client, self._broker):
                if side.transport is not None and not side.transport.is_closing():
                    side.transport.close()

    def _finish(self) -> None:
        if self.closed.done():
            return
        if not self._task.done():
            self._task.cancel()
        self.to_broker.close()
        self.to_client.close()
        self.closed.set_result(None)
        self._proxy._forget(self)


class FaultProxy:
    """Listens on 127.0.0.1 (``port`` 0: a free port, then ``.port``) and forwards each
    connection to ``target_host:target_port``. Start and stop it with ``async with``."""

    def __init__(
        self, target_host: str = "127.0.0.1", target_port: int = 5672, *, amqp: bool = True
    ) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.amqp = amqp
        self.port = 0
        self.connections: list[ProxiedConnection] = []  # open now, oldest first
        self.accepted = 0  # connections forwarded since start
        self.refused = 0  # connections cut by refuse()
        self.refusing = False
        self._closed_to_broker = 0
        self._closed_to_client = 0
        self._server: asyncio.Server | None = None
        self._changed = asyncio.Event()

    def __repr__(self) -> str:
        return f"<FaultProxy 127.0.0.1:{self.port} -> {self.target_host}:{self.target_port}>"

    async def __aenter__(self) -> FaultProxy:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Side(self), "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        self.reset()
        waits = [c.closed for c in self.connections]
        if waits:
            await asyncio.wait(waits, timeout=5)
        await self._server.wait_closed()

    @property
    def bytes_to_broker(self) -> int:
        """Bytes read from clients since start (closed connections included)."""
        return self._closed_to_broker + sum(c.bytes_to_broker for c in self.connections)

    @property
    def bytes_to_client(self) -> int:
        """Bytes read from the broker since start (injected frames not included)."""
        return self._closed_to_client + sum(c.bytes_to_client for c in self.connections)

    # -- controls (all current connections, or the one given) ---------------------------------

    def _targets(self, connection: ProxiedConnection | None) -> list[ProxiedConnection]:
        return [connection] if connection is not None else list(self.connections)

    def reset(self, connection: ProxiedConnection | None = None) -> int:
        targets = self._targets(connection)
        for conn in targets:
            conn.reset()
        return len(targets)

    def freeze(self, connection: ProxiedConnection | None = None) -> int:
        targets = self._targets(connection)
        for conn in targets:
            conn.freeze()
        return len(targets)

    def thaw(self, connection: ProxiedConnection | None = None) -> int:
        targets = self._targets(connection)
        for conn in targets:
            conn.thaw()
        return len(targets)

    def slow(
        self,
        delay_seconds: float,
        bytes_per_second: float | None = None,
        connection: ProxiedConnection | None = None,
    ) -> int:
        targets = self._targets(connection)
        for conn in targets:
            conn.slow(delay_seconds, bytes_per_second)
        return len(targets)

    def block(
        self, reason: str = "low on memory", connection: ProxiedConnection | None = None
    ) -> int:
        targets = self._targets(connection)
        for conn in targets:
            conn.block(reason)
        return len(targets)

    def unblock(self, connection: ProxiedConnection | None = None) -> int:
        targets = self._targets(connection)
        for conn in targets:
            conn.unblock()
        return len(targets)

    def refuse(self) -> None:
        """Cut every new connection at once (RST), until :meth:`accept`."""
        self.refusing = True

    def accept(self) -> None:
        self.refusing = False

    async def wait_connections(
        self, count: int = 1, timeout: float = 10.0
    ) -> list[ProxiedConnection]:
        """Wait until ``count`` connections are open and linked to the target (for example a
        client's reconnect after a reset); returns them. Raises TimeoutError."""
        async with asyncio.timeout(timeout):
            while True:
                linked = [c for c in self.connections if c.connected.done()]
                if len(linked) >= count:
                    return linked
                self._changed.clear()
                pending = [c.connected for c in self.connections if not c.connected.done()]
                changed = asyncio.ensure_future(self._changed.wait())
                try:
                    await asyncio.wait([changed, *pending], return_when=asyncio.FIRST_COMPLETED)
                finally:
                    changed.cancel()

    # -- bookkeeping -------------------------------------------------------------------------

    def _accepted(self, side: _Side, transport: asyncio.Transport) -> None:
        if self.refusing or self._server is None or not self._server.is_serving():
            self.refused += 1
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
            transport.abort()
            return
        self.accepted += 1
        self.connections.append(ProxiedConnection(self, side, transport))
        self._changed.set()

    def _forget(self, conn: ProxiedConnection) -> None:
        if conn in self.connections:
            self.connections.remove(conn)
            self._closed_to_broker += conn.bytes_to_broker
            self._closed_to_client += conn.bytes_to_client
        self._changed.set()
