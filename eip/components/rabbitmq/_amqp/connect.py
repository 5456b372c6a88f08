"""Opening a connection: URL parsing, the AMQP 0-9-1 handshake, tuning.

``amqp://user:password@host:port/vhost`` (``amqps://`` for TLS with the default context):
user and password default to guest/guest, the port to 5672 (5671), the vhost to ``/``; the
vhost is URL-decoded, so ``/%2F`` and ``/`` both mean ``/``. Options are keyword arguments of
:func:`connect`; a query string is refused rather than silently ignored.

Handshake: protocol header -> Connection.Start (PLAIN must be offered) -> StartOk (PLAIN
credentials, client properties with capabilities) -> Tune -> TuneOk -> Open(vhost) -> OpenOk.
A refused login arrives as Connection.Close 403 ACCESS_REFUSED (we announce
``authentication_failure_close``) and is raised as :class:`ConnectionClosedError`.

Negotiation: ``frame_max`` and ``channel_max`` take the smaller of the two proposals, 0 meaning
"no limit" (so the other side's value wins). ``heartbeat=0`` from the client turns heartbeats
off; otherwise the smaller of the two, the broker's 0 meaning "whatever the client wants".
The whole of it (TCP connect included) is bounded by ``connect_timeout`` (``TimeoutError``);
socket errors propagate as ``OSError``.
"""

from __future__ import annotations

import asyncio
import platform
import ssl
from typing import Any
from urllib.parse import unquote, urlsplit

from pamqp import commands

from .codec import FRAME_MIN_SIZE, PROTOCOL_HEADER, marshal
from .connection import Connection
from .errors import AmqpError

__all__ = ["ConnectionParameters", "connect", "parse_url"]

CAPABILITIES = {
    "publisher_confirms": True,
    "consumer_cancel_notify": True,
    "basic.nack": True,
    "connection.blocked": True,
    "authentication_failure_close": True,
    "exchange_exchange_bindings": True,
    "per_consumer_qos": True,
}


class ConnectionParameters:
    __slots__ = ("host", "password", "port", "ssl", "username", "vhost")

    def __init__(
        self, host: str, port: int, username: str, password: str, vhost: str, tls: bool
    ) -> None:
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.vhost = vhost
        self.ssl = tls

    def __repr__(self) -> str:  # no password
        scheme = "amqps" if self.ssl else "amqp"
        return f"{scheme}://{self.username}@{self.host}:{self.port}/{self.vhost}"


def parse_url(url: str) -> ConnectionParameters:
    parts = urlsplit(url)
    if parts.scheme not in ("amqp", "amqps"):
        raise ValueError(f"not an amqp:// or amqps:// URL: {url!r}")
    if parts.query:
        raise ValueError("AMQP URL query options are not supported; use keyword arguments")
    tls = parts.scheme == "amqps"
    path = parts.path
    vhost = "/" if path in ("", "/") else unquote(path[1:])
    return ConnectionParameters(
        host=parts.hostname or "localhost",
        port=parts.port or (5671 if tls else 5672),
        username=unquote(parts.username) if parts.username is not None else "guest",
        password=unquote(parts.password) if parts.password is not None else "guest",
        vhost=vhost,
        tls=tls,
    )


def _smaller(client: int, server: int) -> int:
    """The smaller proposal, where 0 means "no limit"."""
    if not client or not server:
        return client or server
    return min(client, server)


async def connect(
    url: str,
    *,
    heartbeat: int = 60,
    client_name: str = "eip",
    connect_timeout: float = 10.0,
    frame_max: int = 131072,
) -> Connection:
    """Connect and log in; returns an open :class:`Connection`."""
    params = parse_url(url)
    if frame_max and frame_max < FRAME_MIN_SIZE:
        raise ValueError(f"frame_max must be at least {FRAME_MIN_SIZE} (or 0)")
    loop = asyncio.get_running_loop()
    connection = Connection(loop, close_timeout=connect_timeout)
    try:
        async with asyncio.timeout(connect_timeout):
            await loop.create_connection(
                lambda: connection,
                params.host,
                params.port,
                ssl=ssl.create_default_context() if params.ssl else None,
            )
            await _handshake(connection, params, client_name, heartbeat, frame_max)
    except BaseException:
        transport = connection._transport
        if transport is not None:
            transport.abort()
        raise
    return connection


async def _handshake(
    connection: Connection,
    params: ConnectionParameters,
    client_name: str,
    heartbeat: int,
    frame_max: int,
) -> None:
    connection._write_now(PROTOCOL_HEADER)
    start = await connection._expect(commands.Connection.Start)
    mechanisms = str(start.mechanisms)
    if "PLAIN" not in mechanisms.split():
        raise AmqpError(f"the broker does not offer PLAIN authentication ({mechanisms})")
    connection.server_properties = dict(start.server_properties or {})
    client_properties: dict[str, Any] = {
        "product": "eip",
        "platform": f"Python {platform.python_version()}",
        "information": "eip lean AMQP 0-9-1 client",
        "connection_name": client_name,
        "capabilities": CAPABILITIES,
    }
    start_ok = commands.Connection.StartOk(
        client_properties=client_properties,
        mechanism="PLAIN",
        response=f"\0{params.username}\0{params.password}",
        locale="en_US",
    )
    connection._write_now(marshal(0, start_ok))
    tune = await connection._expect(commands.Connection.Tune)
    connection.channel_max = _smaller(65535, tune.channel_max or 0)
    connection.frame_max = _smaller(frame_max, tune.frame_max or 0) or 131072
    if connection.frame_max < FRAME_MIN_SIZE:
        raise AmqpError(f"the broker's frame_max {tune.frame_max} is below {FRAME_MIN_SIZE}")
    connection.heartbeat = _smaller(heartbeat, tune.heartbeat or 0) if heartbeat else 0
    connection._max_payload = connection.frame_max - 8
    tune_ok = commands.Connection.TuneOk(
        channel_max=connection.channel_max,
        frame_max=connection.frame_max,
        heartbeat=connection.heartbeat,
    )
    connection._write_now(marshal(0, tune_ok))
    connection._start_heartbeat()
    connection._write_now(marshal(0, commands.Connection.Open(virtual_host=params.vhost)))
    await connection._expect(commands.Connection.OpenOk)
    connection._opened = True
