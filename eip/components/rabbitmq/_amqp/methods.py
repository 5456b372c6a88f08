"""Declarations and consumers on a channel: exchanges, queues, bindings, qos, consume.

These are synchronous AMQP methods (request then reply). They are rare, so they are plain
coroutines over :meth:`Channel._call`, which appends the request to the channel's ordered
queue of pending replies: several may be in flight on one channel, the broker answers them
in order, and a failure (the broker closing the channel) fails every pending one.

The requests are encoded with :mod:`.codec`'s helpers rather than pamqp, so that exchange and
queue names are not limited to pamqp's validation regex; replies are decoded with pamqp.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from typing import Any, TypeVar, cast

from pamqp import base, commands

from .codec import bits, method_frame, shortstr, table
from .errors import AmqpError
from .incoming import DeliveriesCallback

__all__ = ["ChannelMethods"]

_F = TypeVar("_F", bound=base.Frame)
_TICKET = b"\x00\x00"
_QOS = struct.Struct(">IH")

EXCHANGE_DECLARE = 0x0028000A
EXCHANGE_DELETE = 0x00280014
EXCHANGE_BIND = 0x0028001E
QUEUE_DECLARE = 0x0032000A
QUEUE_BIND = 0x00320014
QUEUE_PURGE = 0x0032001E
QUEUE_DELETE = 0x00320028
QUEUE_UNBIND = 0x00320032
BASIC_QOS = 0x003C000A
BASIC_CONSUME = 0x003C0014
BASIC_CANCEL = 0x003C001E


class ChannelMethods:
    """Mixin of :class:`~.channel.Channel`: the declaration API."""

    number: int
    _loop: asyncio.AbstractEventLoop
    _consumers: dict[str, DeliveriesCallback]
    _error: AmqpError | None

    async def _call(
        self, frame: bytes, expect: type[_F], hook: Callable[[_F], None] | None = None
    ) -> _F:
        raise NotImplementedError  # pragma: no cover - implemented by Channel

    def _send_rpc(
        self,
        frame: bytes,
        expect: type[_F],
        hook: Callable[[_F], None] | None,
        future: asyncio.Future[Any] | None,
    ) -> None:
        raise NotImplementedError  # pragma: no cover - implemented by Channel

    async def exchange_declare(
        self,
        exchange: str,
        type: str = "direct",  # the AMQP argument name
        *,
        durable: bool = True,
        auto_delete: bool = False,
        internal: bool = False,
        passive: bool = False,
        arguments: dict[str, Any] | None = None,
    ) -> None:
        """Declare an exchange (``passive``: only check that it exists, 404 if not)."""
        payload = b"".join(
            (
                _TICKET,
                shortstr(exchange),
                shortstr(type),
                bits(passive, durable, auto_delete, internal, False),
                table(arguments),
            )
        )
        await self._call(
            method_frame(self.number, EXCHANGE_DECLARE, payload), commands.Exchange.DeclareOk
        )

    async def exchange_bind(
        self,
        destination: str,
        source: str,
        routing_key: str = "",
        arguments: dict[str, Any] | None = None,
    ) -> None:
        """Bind exchange ``destination`` to ``source``: what is routed to ``source`` with a
        matching key is routed on to ``destination`` (a RabbitMQ extension)."""
        payload = b"".join(
            (
                _TICKET,
                shortstr(destination),
                shortstr(source),
                shortstr(routing_key),
                bits(False),
                table(arguments),
            )
        )
        await self._call(
            method_frame(self.number, EXCHANGE_BIND, payload), commands.Exchange.BindOk
        )

    async def exchange_delete(self, exchange: str, *, if_unused: bool = False) -> None:
        payload = _TICKET + shortstr(exchange) + bits(if_unused, False)
        await self._call(
            method_frame(self.number, EXCHANGE_DELETE, payload), commands.Exchange.DeleteOk
        )

    async def queue_declare(
        self,
        queue: str = "",
        *,
        durable: bool = True,
        exclusive: bool = False,
        auto_delete: bool = False,
        passive: bool = False,
        arguments: dict[str, Any] | None = None,
    ) -> tuple[str, int, int]:
        """Declare a queue; returns its name (generated for ``""``), message count and
        consumer count. ``passive`` only checks that it exists (404 closes the channel)."""
        payload = b"".join(
            (
                _TICKET,
                shortstr(queue),
                bits(passive, durable, exclusive, auto_delete, False),
                table(arguments),
            )
        )
        ok = await self._call(
            method_frame(self.number, QUEUE_DECLARE, payload), commands.Queue.DeclareOk
        )
        return str(ok.queue), int(ok.message_count or 0), int(ok.consumer_count or 0)

    async def queue_bind(
        self,
        queue: str,
        exchange: str,
        routing_key: str = "",
        arguments: dict[str, Any] | None = None,
    ) -> None:
        payload = b"".join(
            (
                _TICKET,
                shortstr(queue),
                shortstr(exchange),
                shortstr(routing_key),
                bits(False),
                table(arguments),
            )
        )
        await self._call(method_frame(self.number, QUEUE_BIND, payload), commands.Queue.BindOk)

    async def queue_unbind(
        self,
        queue: str,
        exchange: str,
        routing_key: str = "",
        arguments: dict[str, Any] | None = None,
    ) -> None:
        payload = b"".join(
            (_TICKET, shortstr(queue), shortstr(exchange), shortstr(routing_key), table(arguments))
        )
        await self._call(method_frame(self.number, QUEUE_UNBIND, payload), commands.Queue.UnbindOk)

    async def queue_purge(self, queue: str) -> int:
        """Remove every ready message; returns how many were removed."""
        payload = _TICKET + shortstr(queue) + bits(False)
        ok = await self._call(
            method_frame(self.number, QUEUE_PURGE, payload), commands.Queue.PurgeOk
        )
        return int(ok.message_count or 0)

    async def queue_delete(
        self, queue: str, *, if_unused: bool = False, if_empty: bool = False
    ) -> int:
        """Delete a queue; returns how many messages it held. Deleting a queue that does not
        exist succeeds (RabbitMQ 3.x) with 0."""
        payload = _TICKET + shortstr(queue) + bits(if_unused, if_empty, False)
        ok = await self._call(
            method_frame(self.number, QUEUE_DELETE, payload), commands.Queue.DeleteOk
        )
        return int(ok.message_count or 0)

    async def basic_qos(self, prefetch_count: int, *, global_: bool = False) -> None:
        """Limit unacked deliveries to ``prefetch_count`` per consumer (0: no limit);
        ``global_`` applies the limit to the whole channel instead (RabbitMQ semantics)."""
        if not 0 <= prefetch_count <= 0xFFFF:
            raise ValueError(f"prefetch_count must be 0..65535, not {prefetch_count}")
        payload = _QOS.pack(0, prefetch_count) + bits(global_)
        await self._call(method_frame(self.number, BASIC_QOS, payload), commands.Basic.QosOk)

    async def basic_consume(
        self,
        queue: str,
        on_deliveries: DeliveriesCallback,
        *,
        consumer_tag: str = "",
        no_ack: bool = False,
        exclusive: bool = False,
        arguments: dict[str, Any] | None = None,
    ) -> str:
        """Start a consumer; ``on_deliveries`` is called synchronously with each batch of
        deliveries parsed from one socket read. Returns the consumer tag."""
        if consumer_tag and consumer_tag in self._consumers:
            raise ValueError(f"consumer tag {consumer_tag!r} is already in use on this channel")
        payload = b"".join(
            (
                b"\x00\x00",
                shortstr(queue),
                shortstr(consumer_tag),
                bits(False, no_ack, exclusive, False),
                table(arguments),
            )
        )
        future: asyncio.Future[Any] = self._loop.create_future()

        def registered(ok: commands.Basic.ConsumeOk) -> None:
            # Runs inside data_received, before any delivery for this consumer is parsed.
            tag = str(ok.consumer_tag)
            self._consumers[tag] = on_deliveries
            if future.cancelled() and self._error is None:  # caller gave up: leave no consumer
                self._send_rpc(
                    method_frame(self.number, BASIC_CANCEL, shortstr(tag) + bits(False)),
                    commands.Basic.CancelOk,
                    self._forget_consumer,
                    None,
                )

        self._send_rpc(
            method_frame(self.number, BASIC_CONSUME, payload),
            commands.Basic.ConsumeOk,
            registered,
            future,
        )
        ok = cast(commands.Basic.ConsumeOk, await future)
        return str(ok.consumer_tag)

    async def basic_cancel(self, consumer_tag: str) -> None:
        """Stop a consumer; deliveries already sent to it are still handed to its callback
        until the broker's CancelOk."""
        frame = method_frame(self.number, BASIC_CANCEL, shortstr(consumer_tag) + bits(False))
        await self._call(frame, commands.Basic.CancelOk, self._forget_consumer)

    def _forget_consumer(self, ok: commands.Basic.CancelOk) -> None:
        self._consumers.pop(str(ok.consumer_tag), None)
