"""aio-pika's robust connection, handed to the link one transport at a time.

:class:`AioPikaConnector` opens one ``aio_pika.connect_robust`` connection per link. aio-pika
reconnects it by itself (every ``reconnect_delay`` seconds: its ``reconnect_interval`` is
fixed). The link sees each transport as an :class:`AioPikaConnection` of its own: when a
transport is lost, that connection's ``closed`` resolves and its channels are dead; the link
then waits in :meth:`AioPikaConnector.reconnect` for the transport aio-pika restores, and the
endpoints re-attach on it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import aio_pika
import aiormq

from eip.components.rabbitmq._amqp.errors import AmqpError, ConnectionClosedError, fresh

from .channel import AioPikaChannel
from .convert import connection_error

if TYPE_CHECKING:
    from aio_pika.abc import AbstractRobustConnection

    from eip.components.rabbitmq.spec import RabbitMQSpec

__all__ = ["AioPikaConnection", "AioPikaConnector"]

_POLL = 0.02


class AioPikaConnector:
    """Makes the :class:`AioPikaConnection` s of one link from one robust connection."""

    def __init__(self, spec: RabbitMQSpec) -> None:
        self.spec = spec
        self._robust: AbstractRobustConnection | None = None

    async def connect(self) -> AioPikaConnection:
        spec = self.spec
        options: dict[str, Any] = {
            "heartbeat": spec.heartbeat,
            "reconnect_interval": spec.reconnect_delay,
            "fail_fast": True,
            "client_properties": {"connection_name": "eip (aio-pika)"},
        }
        if spec.auth_mechanism == "EXTERNAL":
            options["auth"] = "external"
        if spec.broker_url.startswith("amqps://"):
            from eip.components.rabbitmq.link import tls_context_for

            options["ssl_context"] = tls_context_for(spec)
        try:
            robust = await aio_pika.connect_robust(
                spec.broker_url, timeout=spec.connect_timeout, **options
            )
        except Exception as exc:
            # aiormq's messages can carry the URL; say what failed, never with the password
            raise ConnectionClosedError(0, _safe(exc, spec.broker_url)) from None
        self._robust = robust
        return self._current(None)

    async def reconnect(self, lost: Any) -> AioPikaConnection:
        """The transport aio-pika restores after ``lost``, once it is up. aio-pika keeps
        trying (every ``reconnect_delay``) and the link shows "reconnecting" meanwhile, so
        this waits for it without a deadline (the link cancels the wait when it closes).
        Should the robust connection itself be gone, it is dialled again."""
        robust = self._robust
        if robust is None or robust.is_closed:
            return await self.connect()
        previous = lost._wire if isinstance(lost, AioPikaConnection) else None
        while True:
            with contextlib.suppress(ConnectionClosedError):
                return self._current(previous)
            if robust.is_closed:
                raise ConnectionClosedError(0, "the aio-pika connection was closed")
            await asyncio.sleep(_POLL)

    def _current(self, previous: Any) -> AioPikaConnection:
        robust = self._robust
        transport = robust.transport if robust is not None else None
        if robust is None or transport is None or not robust.connected.is_set():
            raise ConnectionClosedError(0, "aio-pika is not connected")
        wire = transport.connection
        if wire is previous or wire.is_closed:
            raise ConnectionClosedError(0, "aio-pika has not reconnected yet")
        return AioPikaConnection(self, robust, wire)

    async def close(self) -> None:
        robust, self._robust = self._robust, None
        if robust is not None and not robust.is_closed:
            with contextlib.suppress(Exception):
                await robust.close()


def _safe(error: BaseException, url: str) -> str:
    text = f"{type(error).__name__}: {error}"
    password = aio_pika.connection.make_url(url).password
    return text.replace(password, "***") if password else text


class AioPikaConnection:
    """One transport of the robust connection, as the link's :class:`AmqpConnection`."""

    def __init__(
        self,
        connector: AioPikaConnector,
        robust: AbstractRobustConnection,
        wire: aiormq.abc.AbstractConnection,
    ) -> None:
        self._connector = connector
        self._robust = robust
        self._wire = wire
        self.closed: asyncio.Future[BaseException | None] = (
            asyncio.get_running_loop().create_future()
        )
        #: Never called: aiormq keeps Connection.Blocked to itself; ``blocked`` reads it.
        self.on_blocked: Callable[[bool], None] | None = None
        self._error: AmqpError | None = None
        self._closing = False
        wire.closing.add_done_callback(self._on_wire_closed)

    def __repr__(self) -> str:
        return f"<AioPikaConnection {'open' if self.is_open else 'closed'}>"

    def _on_wire_closed(self, closing: asyncio.Future[Any]) -> None:
        if self._closing:
            self._error = ConnectionClosedError(200, "connection closed by the client")
            reason: BaseException | None = None
        else:
            exc = None if closing.cancelled() else closing.exception()
            self._error = reason = connection_error(exc)
        if not self.closed.done():
            self.closed.set_result(reason)

    @property
    def is_open(self) -> bool:
        return self._error is None and not self._wire.is_closed

    @property
    def error(self) -> AmqpError | None:
        if self._error is None and self._wire.is_closed:
            return ConnectionClosedError(0, "connection lost")
        return self._error

    @property
    def blocked(self) -> bool:
        """Whether the broker blocked this connection (a memory or disk alarm), read from
        aiormq's own flag (it has no public one; absent, never blocked)."""
        unblocked = getattr(self._wire, "_Connection__connection_unblocked", None)
        return isinstance(unblocked, asyncio.Event) and not unblocked.is_set() and self.is_open

    @property
    def blocked_reason(self) -> str:
        return "a resource alarm (aio-pika does not pass on the broker's reason)"

    async def channel(self, *, publisher_confirms: bool = False) -> AioPikaChannel:
        """A plain (not robust) aio-pika channel on this transport: eip re-attaches its
        endpoints itself, on a fresh channel, after a loss."""
        if not self.is_open:
            raise fresh(self.error or ConnectionClosedError(0, "connection lost"))
        channel = aio_pika.Channel(
            self._robust,
            publisher_confirms=publisher_confirms,
            on_return_raises=publisher_confirms,
        )
        try:
            await channel.initialize()
            wire = cast(aiormq.Channel, await channel.get_underlay_channel())
        except Exception as exc:
            if not self.is_open:
                raise fresh(self.error or ConnectionClosedError(0, "connection lost")) from exc
            raise AmqpError(f"cannot open a channel: {exc!r}") from exc
        if wire.connection is not self._wire:  # the transport changed while it opened
            with contextlib.suppress(Exception):
                await channel.close()
            raise fresh(self.error or ConnectionClosedError(0, "connection lost"))
        return AioPikaChannel(self, channel, wire, publisher_confirms)

    async def close(self) -> None:
        """Close the robust connection (and stop its reconnecting)."""
        self._closing = True
        await self._connector.close()
