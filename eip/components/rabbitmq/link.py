"""One shared, self-healing connection per broker URL and connection options.

Consumers and producers of a context that use the same broker with the same connection
options share one AMQP connection, each with its own channel. When the connection drops
(broker restart, network, a forced close, missed heartbeats), the link reconnects with
exponential backoff (``reconnect_delay`` doubling to ``reconnect_max_delay``, spread by
``reconnect_jitter``); every endpoint notices on its own channel and re-attaches through its
:class:`~eip.components.rabbitmq.recovery.Recovery`. Each state change is logged once, on
logger ``eip.rabbitmq``, with the URL redacted.

``problem`` is None while the link is usable, else why not: connecting, reconnecting after a
loss, or blocked by the broker (a memory or disk alarm, from Connection.Blocked): readiness
checks show it.

The connections come from the endpoint's client (:mod:`.client`): :class:`LeanConnector`
dials eip's own client afresh for each attempt; the aio-pika connector keeps one
``connect_robust`` connection and hands over each transport it restores.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import ssl
from typing import Any

from eip.components.rabbitmq._amqp import connect
from eip.components.rabbitmq.client import AmqpConnection, connector_for
from eip.components.rabbitmq.recovery import Backoff
from eip.components.rabbitmq.spec import RabbitMQSpec
from eip.errors import EndpointError, redact_uri

__all__ = ["BrokerLink", "LeanConnector", "LinkState", "tls_context_for"]

log = logging.getLogger("eip.rabbitmq")


class LinkState(enum.Enum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    CLOSED = "closed"


class BrokerLink:
    """The connection to one broker, shared by the endpoints of one context."""

    def __init__(self, spec: RabbitMQSpec) -> None:
        self.spec = spec
        self.url = spec.broker_url
        self.safe_url = redact_uri(self.url)
        self.heartbeat = spec.heartbeat
        self.connect_timeout = spec.connect_timeout
        self.backoff = Backoff(
            spec.reconnect_delay, spec.reconnect_max_delay, spec.reconnect_jitter
        )
        self.state = LinkState.CLOSED
        self.connection: AmqpConnection | None = None
        self.connector = connector_for(spec)
        self._users = 0
        self._watcher: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self._detail = ""
        self.reconnects = 0

    @property
    def ready(self) -> bool:
        return self.problem is None

    @property
    def is_open(self) -> bool:
        connection = self.connection
        return connection is not None and connection.is_open

    @property
    def problem(self) -> str | None:
        """Why the link cannot be used now, or None."""
        if self.state is LinkState.CONNECTED and not self.is_open:
            lost = self.connection.error if self.connection is not None else None
            return f"rabbitmq {self.safe_url} connection lost: {lost}"
        if self.state is not LinkState.CONNECTED:
            detail = f": {self._detail}" if self._detail else ""
            return f"rabbitmq {self.safe_url} {self.state.value}{detail}"
        assert self.connection is not None
        if self.connection.blocked:
            return (
                f"rabbitmq {self.safe_url} blocked by the broker: {self.connection.blocked_reason}"
            )
        return None

    def _set_state(self, state: LinkState, detail: str = "") -> None:
        self._detail = detail
        if state is not self.state:
            self.state = state
            log.info(
                "rabbitmq %s: %s%s", self.safe_url, state.value, f" ({detail})" if detail else ""
            )
        self._wake()

    def _wake(self) -> None:
        """Wake whoever waits in :meth:`wait_open` to look again."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def acquire(self) -> AmqpConnection:
        """Join the link and return its open connection.

        The first connect must succeed, so a route does not report started while its broker
        is unreachable; later losses are healed in the background.
        """
        if not self.is_open:
            if self._watcher is None:
                await self._first_connect()
            else:
                await asyncio.wait_for(self.wait_open(), self.connect_timeout)
        self._users += 1
        assert self.connection is not None
        return self.connection

    async def release(self) -> None:
        self._users -= 1
        if self._users <= 0:
            await self.close()

    async def wait_open(self) -> AmqpConnection:
        """The open connection, once there is one."""
        while True:
            connection = self.connection
            if connection is not None and connection.is_open and self.state is LinkState.CONNECTED:
                return connection
            if self.state is LinkState.CLOSED and self._watcher is None:
                raise EndpointError(f"rabbitmq {self.safe_url} is closed", endpoint=self.safe_url)
            await self._changed.wait()

    async def _first_connect(self) -> None:
        self._set_state(LinkState.CONNECTING)
        try:
            self.connection = await self.connector.connect()
        except Exception as exc:
            self._set_state(LinkState.CLOSED, f"{type(exc).__name__}: {exc}")
            await self.connector.close()
            raise EndpointError(
                f"cannot connect to RabbitMQ at {self.safe_url}: {exc}", endpoint=self.safe_url
            ) from exc
        self._set_state(LinkState.CONNECTED)
        self._watcher = asyncio.create_task(self._watch(), name=f"rabbitmq-link {self.safe_url}")

    async def _watch(self) -> None:
        while True:
            assert self.connection is not None
            self.connection.on_blocked = self._on_blocked
            reason = await asyncio.shield(self.connection.closed)
            if self.state is LinkState.CLOSED:
                return
            self._set_state(LinkState.RECONNECTING, f"connection lost: {reason}")
            await self._reconnect()

    def _on_blocked(self, blocked: bool) -> None:
        self._wake()
        if blocked:
            log.warning("rabbitmq %s: not ready: %s", self.safe_url, self.problem)
        else:
            log.info("rabbitmq %s: unblocked by the broker", self.safe_url)

    async def _reconnect(self) -> None:
        backoff = self.backoff
        while self.state is not LinkState.CLOSED:
            lost = self.connection
            assert lost is not None
            try:
                self.connection = await self.connector.reconnect(lost)
            except Exception as exc:
                delay = backoff.next()
                log.warning(
                    "rabbitmq %s: reconnect failed (%s: %s); retrying in %.2fs",
                    self.safe_url,
                    type(exc).__name__,
                    exc,
                    delay,
                )
                self._detail = f"reconnect failed: {type(exc).__name__}: {exc}"
                await asyncio.sleep(delay)
                continue
            backoff.reset()
            self.reconnects += 1
            self._set_state(LinkState.CONNECTED, f"reconnect #{self.reconnects}")
            return

    async def close(self) -> None:
        self._set_state(LinkState.CLOSED)
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        connection, self.connection = self.connection, None
        if connection is not None and connection.is_open:
            with contextlib.suppress(Exception):
                await connection.close()
        with contextlib.suppress(Exception):
            await self.connector.close()
        self._set_state(LinkState.CLOSED)


class LeanConnector:
    """Connections of eip's own client: a fresh dial for every attempt."""

    def __init__(self, spec: RabbitMQSpec) -> None:
        self.spec = spec
        self._ssl: ssl.SSLContext | None = None

    async def connect(self) -> AmqpConnection:
        spec = self.spec
        url = spec.broker_url
        options: dict[str, Any] = {}
        if url.startswith("amqps://"):
            if self._ssl is None:
                self._ssl = tls_context_for(spec)
            options["ssl_context"] = self._ssl
        if spec.auth_mechanism != "PLAIN":
            options["auth_mechanism"] = spec.auth_mechanism
        return await connect(
            url, heartbeat=spec.heartbeat, connect_timeout=spec.connect_timeout, **options
        )

    async def reconnect(self, lost: AmqpConnection) -> AmqpConnection:
        return await self.connect()

    async def close(self) -> None:
        return None


def tls_context_for(spec: RabbitMQSpec) -> ssl.SSLContext:
    """The TLS context of an ``amqps://`` endpoint (private CA, client certificate,
    ``verify``), the same for both clients."""
    from eip.components.rabbitmq._amqp.tls import tls_context

    return tls_context(
        ca_file=spec.ca_file, cert_file=spec.cert_file, key_file=spec.key_file, verify=spec.verify
    )
