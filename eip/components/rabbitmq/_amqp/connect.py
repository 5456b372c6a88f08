"""Opening a connection: URL parsing, the AMQP 0-9-1 handshake, tuning.

``amqp://user:password@host:port/vhost`` (``amqps://`` for TLS): user and password default to
guest/guest, the port to 5672 (5671), the vhost to ``/``; the vhost is URL-decoded, so
``/%2F`` and ``/`` both mean ``/``. Options are keyword arguments of :func:`connect`; a query
string is refused rather than silently ignored.

Handshake: protocol header -> Connection.Start (the chosen mechanism must be offered) ->
StartOk (credentials, client properties with capabilities) -> Tune -> TuneOk -> Open(vhost)
-> OpenOk. A refused login arrives as Connection.Close 403 ACCESS_REFUSED (we announce
``authentication_failure_close``) and is raised as :class:`ConnectionClosedError`.

TLS and SASL (decisions):

- ``amqps://`` uses ``ssl_context`` (see :func:`.tls.tls_context` for a private CA, a client
  certificate, ``verify=False``), else the system's default context. The TLS server name is
  always the URL's host, so the certificate is checked against the name the user wrote (and
  SNI names it) unless the context turns the host-name check off. A context with an
  ``amqp://`` URL is refused: TLS options on a plain connection are a mistake, not a no-op.
- A certificate the client cannot verify raises :class:`AmqpError` naming the host, OpenSSL's
  reason and the options that fix it (``ca_file``, ``verify``), from the ``ssl`` error.
- ``auth_mechanism="PLAIN"`` (default) sends the URL's user and password.
  ``"EXTERNAL"`` sends an empty response: the broker takes the user from the client
  certificate (RabbitMQ: plugin ``rabbitmq_auth_mechanism_ssl``, ``EXTERNAL`` in
  ``auth_mechanisms``, ``ssl_cert_login_from``). It needs ``amqps://`` and a client
  certificate, refused with a ``ValueError`` before connecting when missing (a context not
  made by ``tls_context`` is trusted to hold one); a user or password in the URL is ignored.
  When the broker does not offer the mechanism, :class:`AmqpError` says what it offers.

Negotiation: ``frame_max`` and ``channel_max`` take the smaller of the two proposals, 0 meaning
"no limit" (so the other side's value wins). ``heartbeat=0`` from the client turns heartbeats
off; otherwise the smaller of the two, the broker's 0 meaning "whatever the client wants".
The whole of it (TCP connect and TLS handshake included) is bounded by ``connect_timeout``
(``TimeoutError``); other socket errors propagate as ``OSError``.
"""

from __future__ import annotations

import asyncio
import platform
import ssl
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from pamqp import commands

from .codec import FRAME_MIN_SIZE, PROTOCOL_HEADER, marshal
from .connection import Connection
from .errors import AmqpError
from .tls import has_client_certificate

__all__ = ["AuthMechanism", "ConnectionParameters", "connect", "parse_url"]

AuthMechanism = Literal["PLAIN", "EXTERNAL"]

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
        scheme = parts.scheme or "no scheme"
        raise ValueError(f"not an amqp:// or amqps:// URL (got {scheme}://...)")
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
    ssl_context: ssl.SSLContext | None = None,
    auth_mechanism: AuthMechanism = "PLAIN",
) -> Connection:
    """Connect and log in; returns an open :class:`Connection`."""
    params = parse_url(url)
    if frame_max and frame_max < FRAME_MIN_SIZE:
        raise ValueError(f"frame_max must be at least {FRAME_MIN_SIZE} (or 0)")
    context = _tls_for(params, ssl_context, auth_mechanism)
    loop = asyncio.get_running_loop()
    connection = Connection(loop, close_timeout=connect_timeout)
    try:
        async with asyncio.timeout(connect_timeout):
            try:
                await loop.create_connection(
                    lambda: connection,
                    params.host,
                    params.port,
                    ssl=context,
                    server_hostname=params.host if context is not None else None,
                )
            except ssl.SSLCertVerificationError as exc:
                raise AmqpError(
                    f"TLS: the certificate of the broker at {params.host}:{params.port} is not "
                    f"trusted ({exc.verify_message or exc.reason}); set ca_file to the CA that "
                    "signed it, or verify=false to skip verification (insecure)"
                ) from exc
            await _handshake(connection, params, client_name, heartbeat, frame_max, auth_mechanism)
    except BaseException:
        transport = connection._transport
        if transport is not None:
            transport.abort()
        raise
    return connection


def _tls_for(
    params: ConnectionParameters, ssl_context: ssl.SSLContext | None, mechanism: str
) -> ssl.SSLContext | None:
    """The context to wrap the socket in, after refusing combinations that cannot work."""
    if mechanism not in ("PLAIN", "EXTERNAL"):
        raise ValueError(f"auth_mechanism must be 'PLAIN' or 'EXTERNAL', not {mechanism!r}")
    if not params.ssl:
        if ssl_context is not None:
            raise ValueError(
                f"TLS options were given but the URL is amqp:// ({params!r}); use amqps://"
            )
        if mechanism == "EXTERNAL":
            raise ValueError(
                "auth_mechanism EXTERNAL needs TLS with a client certificate: use an amqps:// "
                "URL with cert_file (and key_file)"
            )
        return None
    no_certificate = ssl_context is None or has_client_certificate(ssl_context) is False
    if mechanism == "EXTERNAL" and no_certificate:
        raise ValueError(
            "auth_mechanism EXTERNAL needs a client certificate: give cert_file (and "
            "key_file) so the broker can take the user from it"
        )
    return ssl_context if ssl_context is not None else ssl.create_default_context()


async def _handshake(
    connection: Connection,
    params: ConnectionParameters,
    client_name: str,
    heartbeat: int,
    frame_max: int,
    mechanism: AuthMechanism,
) -> None:
    connection._write_now(PROTOCOL_HEADER)
    start = await connection._expect(commands.Connection.Start)
    offered = str(start.mechanisms).split()
    if mechanism not in offered:
        hint = (
            "; EXTERNAL needs the rabbitmq_auth_mechanism_ssl plugin and EXTERNAL in the "
            "broker's auth_mechanisms"
            if mechanism == "EXTERNAL"
            else ""
        )
        raise AmqpError(
            f"the broker does not offer {mechanism} authentication (it offers: "
            f"{' '.join(offered) or 'nothing'}){hint}"
        )
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
        mechanism=mechanism,
        response="" if mechanism == "EXTERNAL" else f"\0{params.username}\0{params.password}",
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
