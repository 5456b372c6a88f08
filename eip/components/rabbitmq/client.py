"""What the RabbitMQ endpoints need from an AMQP client, and which clients provide it.

The consumer, the producer, the ack window and the recovery loop are written once, against
the small interfaces here: :class:`AmqpConnection` (open channels, say when it is lost or
blocked) and :class:`AmqpChannel` (declare, consume, settle, publish with confirms). Two
clients implement them:

- ``client=lean`` (the default): eip's own AMQP client (:mod:`._amqp`), built for the hot
  path: no task or future per message, one socket write per loop iteration.
- ``client=aio-pika``: an adapter over aio-pika's ``connect_robust`` (:mod:`._aiopika`), for
  shops that mandate aio-pika; the same at-least-once semantics, at aio-pika's speed.

A :class:`Connector` makes a client's connections for the shared :class:`~.link.BrokerLink`:
the first one, and a fresh one after each loss. Every connection the link holds is one
transport: when it is lost, its channels are dead for good (delivery tags belong to their
channel), and the endpoints re-attach on the next one.

The hot-path calls are synchronous on both clients (``publish``, ``ack``, ``nack``,
``reject``): they queue the frame and return; ``wait_confirm`` and ``drain`` are where a
caller waits. Failures are :mod:`._amqp.errors` on both clients, so the endpoints map them to
eip's outcomes (failed, unknown) in one place.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from eip.components.rabbitmq._amqp import AmqpError, DeliveriesCallback, Properties

if TYPE_CHECKING:
    from eip.components.rabbitmq.spec import RabbitMQSpec

__all__ = [
    "CLIENTS",
    "AmqpChannel",
    "AmqpConnection",
    "Connector",
    "check_client",
    "connector_for",
]

#: The values of the ``client`` option.
CLIENTS = ("lean", "aio-pika")


class AmqpChannel(Protocol):
    """One AMQP channel. ``closed`` resolves (never raises) with why it closed: ``None`` after
    :meth:`close`, a ``ConnectionClosedError`` when its connection was lost, a
    ``ChannelClosedError`` when the broker closed it."""

    closed: asyncio.Future[BaseException | None]
    #: Called with the consumer tag when the broker cancels a consumer (queue deleted...).
    on_cancel: Callable[[str], None] | None

    @property
    def is_open(self) -> bool: ...

    @property
    def writable(self) -> bool:
        """False while a publish should wait for :meth:`drain` (a full socket or window, a
        blocked broker)."""
        ...

    @property
    def next_publish_seq(self) -> int: ...

    def publish(
        self,
        body: bytes,
        exchange: str = "",
        routing_key: str = "",
        properties: Properties | None = None,
        *,
        mandatory: bool = False,
    ) -> int:
        """Queue a publish; its sequence number for :meth:`wait_confirm` (0 without
        confirms)."""
        ...

    def ack(self, delivery_tag: int, multiple: bool = False) -> None: ...

    def nack(self, delivery_tag: int, multiple: bool = False, requeue: bool = True) -> None: ...

    def reject(self, delivery_tag: int, requeue: bool) -> None: ...

    async def drain(self) -> None: ...

    async def wait_confirm(self, seq: int) -> None: ...

    def expire_confirms(self, before: int, error: AmqpError) -> int: ...

    async def basic_qos(self, prefetch_count: int) -> None: ...

    async def exchange_declare(
        self,
        exchange: str,
        type: str = "direct",  # the AMQP argument name
        *,
        durable: bool = True,
        passive: bool = False,
        arguments: dict[str, Any] | None = None,
    ) -> None: ...

    async def exchange_bind(
        self,
        destination: str,
        source: str,
        routing_key: str = "",
        arguments: dict[str, Any] | None = None,
    ) -> None: ...

    async def queue_declare(
        self,
        queue: str = "",
        *,
        durable: bool = True,
        exclusive: bool = False,
        auto_delete: bool = False,
        passive: bool = False,
        arguments: dict[str, Any] | None = None,
    ) -> tuple[str, int, int]: ...

    async def queue_bind(
        self,
        queue: str,
        exchange: str,
        routing_key: str = "",
        arguments: dict[str, Any] | None = None,
    ) -> None: ...

    async def basic_consume(
        self,
        queue: str,
        on_deliveries: DeliveriesCallback,
        *,
        consumer_tag: str = "",
        no_ack: bool = False,
        exclusive: bool = False,
        arguments: dict[str, Any] | None = None,
    ) -> str: ...

    async def basic_cancel(self, consumer_tag: str) -> None: ...

    async def close(self) -> None: ...

    def close_soon(self, reason: str) -> None:
        """Start closing without waiting (``closed`` resolves with ``None``)."""
        ...


class AmqpConnection(Protocol):
    """One transport to the broker; ``closed`` resolves with why it was lost (``None`` after
    :meth:`close`)."""

    closed: asyncio.Future[BaseException | None]
    #: Called with True / False when the broker blocks / unblocks the connection.
    on_blocked: Callable[[bool], None] | None

    @property
    def is_open(self) -> bool: ...

    @property
    def error(self) -> AmqpError | None: ...

    @property
    def blocked(self) -> bool: ...

    @property
    def blocked_reason(self) -> str: ...

    async def channel(self, *, publisher_confirms: bool = False) -> AmqpChannel: ...

    async def close(self) -> None: ...


class Connector(Protocol):
    """Makes the connections of one :class:`~.link.BrokerLink`."""

    async def connect(self) -> AmqpConnection:
        """The first connection; raises when the broker cannot be reached."""
        ...

    async def reconnect(self, lost: AmqpConnection) -> AmqpConnection:
        """A working connection after ``lost`` was lost; raises when there is none yet (the
        link retries with backoff)."""
        ...

    async def close(self) -> None:
        """The link is closing: stop whatever reconnects in the background."""
        ...


def check_client(spec: RabbitMQSpec) -> None:
    """Refuse an unknown ``client``, or aio-pika when it is not installed or cannot do what
    the endpoint asks (``ValueError``, reported at route start)."""
    if spec.client not in CLIENTS:
        valid = ", ".join(repr(name) for name in CLIENTS)
        raise ValueError(f"client must be one of {valid}, got {spec.client!r}")
    if spec.client == "aio-pika":
        try:
            import aio_pika  # noqa: F401  (only to say clearly when it is missing)
        except ImportError as exc:
            raise ValueError(
                f"client=aio-pika needs the aio-pika package, which cannot be imported ({exc}): "
                "pip install 'eip[aio-pika]' (or use client=lean, the default)"
            ) from None
        from eip.components.rabbitmq._aiopika import check_spec

        check_spec(spec)


def connector_for(spec: RabbitMQSpec) -> Connector:
    """The connector of ``spec.client`` (validated by :func:`check_client`)."""
    if spec.client == "aio-pika":
        from eip.components.rabbitmq._aiopika import AioPikaConnector

        return AioPikaConnector(spec)
    from eip.components.rabbitmq.link import LeanConnector

    return LeanConnector(spec)
