"""The RabbitMQ producer: persistent, confirmed, pipelined publishes; request-reply.

A send writes the publish into the connection's write buffer at once (many sends of one loop
iteration go out in one socket write) and returns an awaitable that completes when the broker
confirms it. Routes that send many messages therefore pipeline their confirms instead of
waiting for each one. A nack, an unroutable ``mandatory`` publish (returned by the broker), a
confirm that does not come within ``publish_timeout`` or a connection lost before the confirm
fail the exchange with an :class:`~eip.errors.EndpointError` naming the exchange and routing
key; the route's error handling then redelivers or dead-letters it. While the connection is
down, sends wait for it to come back (up to ``publish_timeout``).

The routing key is ``routing_key``, or per message the header named by ``routing_key_header``.

**Request-reply.** An in-out exchange is sent with RabbitMQ's direct reply-to
(``amq.rabbitmq.reply-to``) and a correlation id, and waits up to ``request_timeout`` for the
reply, which becomes the exchange's message.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
from typing import TYPE_CHECKING, Any

from eip.components.base import Producer
from eip.components.rabbitmq._amqp import AmqpError, Channel, Connection, Delivery
from eip.components.rabbitmq.consumer import declare_topology
from eip.components.rabbitmq.mapping import exchange_from_delivery, properties_for
from eip.components.rabbitmq.spec import RabbitMQSpec
from eip.errors import EndpointError, ExchangeTimeoutError
from eip.message import Exchange, ExchangePattern

if TYPE_CHECKING:
    from eip.components.rabbitmq import RabbitMQComponent

__all__ = ["RabbitMQProducer"]

log = logging.getLogger("eip.rabbitmq")

REPLY_TO = "amq.rabbitmq.reply-to"
_correlation = itertools.count(1)
_CORRELATION_PREFIX = f"{os.getpid():x}-{os.urandom(4).hex()}-"


class RabbitMQProducer(Producer):
    def __init__(self, component: RabbitMQComponent, spec: RabbitMQSpec) -> None:
        self.component = component
        self.spec = spec
        self.link = component.link(spec.broker_url)
        self.channel: Channel | None = None
        self._tracing = False
        self._replies: dict[str, asyncio.Future[Delivery]] = {}
        self._reply_consumer = False
        self._where = spec.uri

    async def start(self) -> None:
        self._tracing = self.component.context.tracing.enabled
        await self.link.acquire(self._resume)

    async def _resume(self, connection: Connection) -> None:
        channel = await connection.channel(publisher_confirms=self.spec.confirm)
        if self.spec.exchange:
            await declare_topology(channel, self.spec, consumer=False)
        self._reply_consumer = False
        for waiter in self._replies.values():
            if not waiter.done():
                waiter.set_exception(EndpointError("connection lost before the reply came"))
        self._replies.clear()
        self.channel = channel

    async def stop(self) -> None:
        channel, self.channel = self.channel, None
        if channel is not None and channel.is_open:
            try:
                await asyncio.wait_for(channel.drain(), 5)
            except Exception as exc:
                log.warning("rabbitmq producer %s: %s while flushing at stop", self._where, exc)
        await self.link.release(self._resume)

    def process(self, exchange: Exchange) -> Any:
        channel = self.channel
        if channel is None or not channel.is_open:
            return self._send_when_connected(exchange)
        if exchange.pattern is ExchangePattern.IN_OUT:
            return self._request(channel, exchange)
        return self._publish(channel, exchange)

    def _publish(self, channel: Channel, exchange: Exchange) -> Any:
        body = self._body(exchange)
        routing_key = self._routing_key(exchange)
        properties = properties_for(
            exchange, persistent=self.spec.persistent, tracing=self._tracing
        )
        try:
            seq = channel.publish(
                body, self.spec.exchange, routing_key, properties, mandatory=self.spec.mandatory
            )
        except AmqpError as exc:
            raise EndpointError(f"publish failed: {exc}", endpoint=self._where) from exc
        if not self.spec.confirm:
            return None
        return self._confirmed(channel, seq, routing_key)

    async def _confirmed(self, channel: Channel, seq: int, routing_key: str) -> None:
        try:
            await channel.wait_confirm(seq)
        except AmqpError as exc:
            raise EndpointError(
                f"publish to exchange {self.spec.exchange!r} with routing key {routing_key!r} "
                f"failed: {exc}",
                endpoint=self._where,
            ) from exc

    async def _send_when_connected(self, exchange: Exchange) -> None:
        try:
            await self.link.wait_connected(self.spec.publish_timeout)
            for _ in range(100):  # the channel opens right after the connection
                if self.channel is not None and self.channel.is_open:
                    break
                await asyncio.sleep(0.01)
        except TimeoutError:
            raise EndpointError(
                f"RabbitMQ is unreachable ({self.link.state.value}) "
                f"for {self.spec.publish_timeout}s",
                endpoint=self._where,
            ) from None
        result = self.process(exchange)
        if result is not None:
            await result

    def _body(self, exchange: Exchange) -> bytes:
        body = exchange.body
        if isinstance(body, bytes):
            return body
        if isinstance(body, str):
            return body.encode()
        if isinstance(body, bytearray | memoryview):
            return bytes(body)
        raise EndpointError(
            f"the rabbitmq producer needs a bytes or str body, got {type(body).__name__} "
            "(marshal it first, e.g. .marshal(json()))",
            endpoint=self._where,
        )

    def _routing_key(self, exchange: Exchange) -> str:
        if self.spec.routing_key_header:
            value = exchange.headers.get(self.spec.routing_key_header)
            if value is not None:
                return str(value)
        return self.spec.routing_key

    async def _request(self, channel: Channel, exchange: Exchange) -> None:
        if not self._reply_consumer:
            await channel.basic_consume(REPLY_TO, self._on_replies, no_ack=True)
            self._reply_consumer = True
        correlation_id = f"{_CORRELATION_PREFIX}{next(_correlation)}"
        waiter: asyncio.Future[Delivery] = asyncio.get_running_loop().create_future()
        self._replies[correlation_id] = waiter
        properties = properties_for(
            exchange, persistent=self.spec.persistent, tracing=self._tracing
        )
        properties.correlation_id = correlation_id
        properties.reply_to = REPLY_TO
        routing_key = self._routing_key(exchange)
        try:
            seq = channel.publish(self._body(exchange), self.spec.exchange, routing_key, properties)
            if self.spec.confirm:
                await self._confirmed(channel, seq, routing_key)
            reply = await asyncio.wait_for(waiter, self.spec.request_timeout)
        except TimeoutError:
            raise ExchangeTimeoutError(
                f"no reply within {self.spec.request_timeout}s "
                f"(exchange {self.spec.exchange!r}, routing key {routing_key!r})",
                endpoint=self._where,
            ) from None
        finally:
            self._replies.pop(correlation_id, None)
        answer = exchange_from_delivery(reply, tracing=False)
        exchange.body = answer.body
        exchange.headers.update(answer.headers)

    def _on_replies(self, deliveries: list[Delivery]) -> None:
        for delivery in deliveries:
            waiter = self._replies.get(delivery.properties.correlation_id or "")
            if waiter is not None and not waiter.done():
                waiter.set_result(delivery)
