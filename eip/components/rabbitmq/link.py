"""One shared, self-healing connection per broker URL.

Consumers and producers of a context that use the same broker share one AMQP connection, each
with its own channel. When the connection drops (broker restart, network, a forced close),
the link reconnects with exponential backoff (0.5 s doubling to 30 s) and tells every user,
which then opens a new channel, re-declares its topology and resumes. Each state change is
logged once, on logger ``eip.rabbitmq``, with the URL redacted; ``state`` is exposed for
readiness checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import Awaitable, Callable

from eip.components.rabbitmq._amqp import Channel, Connection, connect
from eip.errors import EndpointError, redact_uri

__all__ = ["BrokerLink", "LinkState"]

log = logging.getLogger("eip.rabbitmq")

Listener = Callable[[Connection], Awaitable[None]]


class LinkState(enum.Enum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    CLOSED = "closed"


class BrokerLink:
    """The connection to one broker, shared by the endpoints of one context."""

    def __init__(
        self,
        url: str,
        *,
        heartbeat: int = 30,
        initial_backoff: float = 0.5,
        max_backoff: float = 30.0,
        connect_timeout: float = 10.0,
    ) -> None:
        self.url = url
        self.safe_url = redact_uri(url)
        self.heartbeat = heartbeat
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.connect_timeout = connect_timeout
        self.state = LinkState.CLOSED
        self.connection: Connection | None = None
        self._listeners: list[Listener] = []
        self._users = 0
        self._watcher: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self.reconnects = 0

    @property
    def ready(self) -> bool:
        return self.state is LinkState.CONNECTED

    def _set_state(self, state: LinkState, detail: str = "") -> None:
        if state is not self.state:
            self.state = state
            log.info(
                "rabbitmq %s: %s%s", self.safe_url, state.value, f" ({detail})" if detail else ""
            )

    async def acquire(self, on_connected: Listener) -> None:
        """Join the link; ``on_connected`` runs now (connected) and after every reconnect.

        The first connect must succeed, so a route does not report started while its broker
        is unreachable; later losses are healed in the background.
        """
        if self.connection is None or not self.connection.is_open:
            if self._watcher is None:
                await self._first_connect()
            else:
                await self._connected.wait()
        assert self.connection is not None
        await on_connected(self.connection)
        self._users += 1
        self._listeners.append(on_connected)  # after: a reconnect must not run it twice

    async def release(self, on_connected: Listener) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(on_connected)
        self._users -= 1
        if self._users <= 0:
            await self.close()

    async def channel(self, *, publisher_confirms: bool = False) -> Channel:
        if self.connection is None or not self.connection.is_open:
            await asyncio.wait_for(self._connected.wait(), self.connect_timeout)
        assert self.connection is not None
        return await self.connection.channel(publisher_confirms=publisher_confirms)

    async def wait_connected(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(self._connected.wait(), timeout)

    async def _first_connect(self) -> None:
        self._set_state(LinkState.CONNECTING)
        try:
            self.connection = await connect(
                self.url, heartbeat=self.heartbeat, connect_timeout=self.connect_timeout
            )
        except Exception as exc:
            self._set_state(LinkState.CLOSED, f"{type(exc).__name__}: {exc}")
            raise EndpointError(
                f"cannot connect to RabbitMQ at {self.safe_url}: {exc}", endpoint=self.safe_url
            ) from exc
        self._connected.set()
        self._set_state(LinkState.CONNECTED)
        self._watcher = asyncio.create_task(self._watch(), name=f"rabbitmq-link {self.safe_url}")

    async def _watch(self) -> None:
        while True:
            assert self.connection is not None
            reason = await asyncio.shield(self.connection.closed)
            if self.state is LinkState.CLOSED:
                return
            self._connected.clear()
            self._set_state(LinkState.RECONNECTING, f"connection lost: {reason}")
            await self._reconnect()

    async def _reconnect(self) -> None:
        delay = self.initial_backoff
        while self.state is not LinkState.CLOSED:
            try:
                self.connection = await connect(
                    self.url, heartbeat=self.heartbeat, connect_timeout=self.connect_timeout
                )
            except Exception as exc:
                log.warning(
                    "rabbitmq %s: reconnect failed (%s: %s); retrying in %.1fs",
                    self.safe_url,
                    type(exc).__name__,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_backoff)
                continue
            self.reconnects += 1
            self._connected.set()
            self._set_state(LinkState.CONNECTED, f"reconnect #{self.reconnects}")
            for listener in list(self._listeners):
                try:
                    await listener(self.connection)
                except Exception:
                    log.exception("rabbitmq %s: resuming an endpoint failed", self.safe_url)
            return

    async def close(self) -> None:
        self._set_state(LinkState.CLOSED)
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        connection, self.connection = self.connection, None
        self._connected.clear()
        if connection is not None and connection.is_open:
            with contextlib.suppress(Exception):
                await connection.close()
