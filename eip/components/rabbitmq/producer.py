"""The RabbitMQ producer: persistent, confirmed, pipelined publishes; request-reply.

A send writes the publish into the connection's write buffer at once (many sends of one loop
iteration go out in one socket write) and returns an awaitable that completes when the broker
confirms it. Routes that send many messages therefore pipeline their confirms instead of
waiting for each one. The routing key is ``routing_key``, or per message the header named by
``routing_key_header``.

**Outcomes** (the rule the consumer's settlement builds on, see the README's design notes):

- *failed* (:class:`~eip.errors.EndpointError`): the broker nacked the publish, returned an
  unroutable ``mandatory`` publish, or the message itself is unfit (a body that is not bytes,
  an ``expiration`` that is not a whole number of milliseconds). The route's error handling
  decides: redeliver, dead-letter, reject.
- *unknown* (:class:`~eip.errors.OutcomeUnknownError`): the connection or the channel died
  before the confirm (the broker's reason, code and text, is in the message), the confirm did
  not come within ``confirm_timeout``, or the broker blocked publishing (or the socket did not
  drain) for ``publish_timeout``. The message may or may not be on the broker; it is never
  dead-lettered, and a RabbitMQ source message is requeued.

**Recovery.** A channel closed by the broker (a 406 or 404 caused by a publish) is reopened
with backoff; the publishes it had not confirmed fail with an unknown outcome, and the next
send uses the fresh channel. While the producer has no channel (the connection is down, the
channel is being reopened), sends wait for one, up to ``publish_timeout``.

**Back-pressure.** While the socket's buffer is above its high-water mark or the broker has
blocked the connection (a memory or disk alarm), a send waits until it drains before it
writes, so a blocked broker slows the route down instead of filling memory. Confirms are
swept by one timer per producer (no timer per message).

**Request-reply.** An in-out exchange is sent with RabbitMQ's direct reply-to
(``amq.rabbitmq.reply-to``) and a correlation id, and waits up to ``request_timeout`` for the
reply, which becomes the exchange's message.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import os
from typing import TYPE_CHECKING, Any

from eip.components.base import Producer
from eip.components.rabbitmq._amqp import (
    AmqpError,
    Channel,
    ChannelClosedError,
    ConfirmTimeoutError,
    ConnectionClosedError,
    Delivery,
    Properties,
)
from eip.components.rabbitmq.client import AmqpChannel, AmqpConnection
from eip.components.rabbitmq.confirmed import ConfirmSettler
from eip.components.rabbitmq.mapping import exchange_from_delivery, properties_for
from eip.components.rabbitmq.recovery import Backoff, Recovery
from eip.components.rabbitmq.spec import RabbitMQSpec
from eip.components.rabbitmq.topology import declare_topology
from eip.errors import EndpointError, ExchangeTimeoutError, OutcomeUnknownError, redact_uri
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
        self.link = component.link(spec)
        self.channel: AmqpChannel | None = None
        self._tracing = False
        self._replies: dict[str, asyncio.Future[Delivery]] = {}
        self._reply_consumer = False
        self._where = redact_uri(spec.uri)
        self._attached = asyncio.Event()
        self._recovery = Recovery(
            f"producer {self._where}",
            self.link,
            self._attach,
            Backoff(spec.reconnect_delay, spec.reconnect_max_delay, spec.reconnect_jitter),
        )
        self._checkpoints: collections.deque[tuple[float, int]] = collections.deque()
        self._sweeper: asyncio.TimerHandle | None = None
        self._handoff = component.handoff
        #: Settles fast-path deliveries from the confirms (see :mod:`.confirmed`); only on
        #: eip's own client, with confirms and without ``mandatory``.
        self._settler: ConfirmSettler | None = None

    @property
    def problem(self) -> str | None:
        """Why this producer cannot send now, or None (for readiness checks)."""
        if self.link.problem is not None:
            return self.link.problem
        if self.channel is None or not self.channel.is_open:
            return self._recovery.problem or "producer channel not open"
        return None

    async def start(self) -> None:
        self._tracing = self.component.context.tracing.enabled
        await self._attach(await self.link.acquire())
        self._schedule_sweep()

    async def _attach(self, connection: AmqpConnection) -> None:
        """Open a confirming channel and declare the exchange (idempotent)."""
        if self.channel is not None and self.channel.is_open:
            return
        async with asyncio.timeout(self.spec.connect_timeout):  # a blocked broker stalls this
            channel = await connection.channel(publisher_confirms=self.spec.confirm)
            try:
                if self.spec.exchange:
                    await declare_topology(channel, self.spec, consumer=False)
            except BaseException:
                if channel.is_open:
                    channel.close_soon("attach failed")
                raise
        self._reply_consumer = False
        for waiter in self._replies.values():
            if not waiter.done():
                waiter.set_exception(
                    OutcomeUnknownError("the channel was lost before the reply came")
                )
        self._replies.clear()
        self._checkpoints.clear()
        if isinstance(channel, Channel) and self.spec.confirm and not self.spec.mandatory:
            self._settler = ConfirmSettler(channel, self)
        self.channel = channel
        self._attached.set()
        channel.closed.add_done_callback(lambda closed: self._lost(channel, closed))

    def _lost(self, channel: AmqpChannel, closed: asyncio.Future[BaseException | None]) -> None:
        if channel is not self.channel:
            return
        self._attached.clear()
        reason = closed.result() if not closed.cancelled() else None
        if reason is None:
            return  # closed by us (stop)
        if isinstance(reason, ConnectionClosedError):
            detail = "connection lost"
        else:
            detail = f"channel closed by the broker: {reason}"
            log.warning("rabbitmq producer %s: %s; reopening it", self._where, reason)
        self._recovery.trigger(detail)

    async def stop(self) -> None:
        await self._recovery.stop()
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        channel, self.channel = self.channel, None
        self._attached.clear()
        if channel is not None and channel.is_open:
            try:
                await asyncio.wait_for(channel.drain(), 5)
            except Exception as exc:
                log.warning("rabbitmq producer %s: %s while flushing at stop", self._where, exc)
            await channel.close()
        await self.link.release()

    # -- sending -----------------------------------------------------------------------------
    def process(self, exchange: Exchange) -> Any:
        channel = self.channel
        if channel is None or not channel.is_open or not channel.writable:
            return self._send_when_ready(exchange)
        if exchange.pattern is ExchangePattern.IN_OUT:
            return self._request(channel, exchange)
        return self._publish(channel, exchange)

    def _publish(self, channel: AmqpChannel, exchange: Exchange) -> Any:
        body = exchange.body
        if body.__class__ is not bytes:
            body = self._body(exchange)
        spec = self.spec
        routing_key = self._routing_key(exchange) if spec.routing_key_header else spec.routing_key
        properties = properties_for(exchange, persistent=spec.persistent, tracing=self._tracing)
        if properties.expiration is not None:
            properties.expiration = _expiration(properties.expiration, self._where)
        try:
            seq = channel.publish(
                body, spec.exchange, routing_key, properties, mandatory=spec.mandatory
            )
        except AmqpError as exc:
            raise OutcomeUnknownError(f"publish failed: {exc}", endpoint=self._where) from exc
        if not self.spec.confirm:
            return None
        handoff = self._handoff
        if handoff.exchange is exchange and handoff.producer is self:  # settled from the confirm
            settler = self._settler
            if settler is not None and settler.channel is channel:
                handoff.exchange = None
                handoff.settler = settler
                handoff.seq = seq
                handoff.routing_key = routing_key
                return None
        return self.confirmed(channel, seq, routing_key)

    async def confirmed(self, channel: AmqpChannel, seq: int, routing_key: str) -> None:
        """Wait for the confirm of publish ``seq``; raise what its failure means."""
        try:
            await channel.wait_confirm(seq)
        except AmqpError as exc:
            raise self.confirm_error(exc, routing_key) from exc

    def confirm_error(self, exc: AmqpError, routing_key: str) -> EndpointError:
        """What a failed confirm wait means for the route: an unknown outcome (the channel or
        connection closed first, no confirm in time) or a failed send (nacked, returned)."""
        where = f"publish to exchange {self.spec.exchange!r} with routing key {routing_key!r}"
        error: EndpointError
        if isinstance(exc, ChannelClosedError | ConnectionClosedError):
            error = OutcomeUnknownError(f"{where}: outcome unknown, {exc}", endpoint=self._where)
        elif isinstance(exc, ConfirmTimeoutError):
            error = OutcomeUnknownError(f"{where}: {exc}", endpoint=self._where)
        else:
            error = EndpointError(f"{where} failed: {exc}", endpoint=self._where)
        error.__cause__ = exc
        return error

    async def _send_when_ready(self, exchange: Exchange) -> None:
        """No open channel, or the socket/broker is not taking writes: wait, bounded."""
        timeout = self.spec.publish_timeout
        try:
            async with asyncio.timeout(timeout):
                while True:
                    await self._attached.wait()
                    channel = self.channel
                    if channel is None or not channel.is_open:
                        continue
                    with contextlib.suppress(AmqpError):  # died while draining: wait again
                        await channel.drain()
                    if channel is self.channel and channel.is_open and channel.writable:
                        break
        except TimeoutError:
            raise OutcomeUnknownError(
                f"not sent: {self.problem or 'the socket did not drain'} for {timeout}s",
                endpoint=self._where,
            ) from None
        result = self.process(exchange)
        if result is not None:
            await result

    # -- confirm timeouts: one timer per producer ------------------------------------------
    def _schedule_sweep(self) -> None:
        interval = min(1.0, self.spec.confirm_timeout / 4)
        self._sweeper = asyncio.get_running_loop().call_later(interval, self._sweep)

    def _sweep(self) -> None:
        """Fail the confirm waits older than ``confirm_timeout`` (unknown outcome)."""
        channel = self.channel
        if channel is not None and channel.is_open and self.spec.confirm:
            now = asyncio.get_running_loop().time()
            checkpoints = self._checkpoints
            checkpoints.append((now, channel.next_publish_seq))
            boundary = 0
            limit = now - self.spec.confirm_timeout
            while checkpoints and checkpoints[0][0] <= limit:
                boundary = checkpoints.popleft()[1]
            if boundary:
                timeout = ConfirmTimeoutError(
                    f"no publisher confirm within {self.spec.confirm_timeout}s "
                    f"(outcome unknown){self._blocked_note()}"
                )
                expired = channel.expire_confirms(boundary, timeout)
                settler = self._settler
                if settler is not None and settler.channel is channel:
                    expired += settler.expire(boundary, timeout)
                if expired:
                    log.warning(
                        "rabbitmq producer %s: %d publishes unconfirmed after %ss%s",
                        self._where,
                        expired,
                        self.spec.confirm_timeout,
                        self._blocked_note(),
                    )
        self._schedule_sweep()

    def _blocked_note(self) -> str:
        problem = self.link.problem
        return f"; {problem}" if problem else ""

    # -- helpers -----------------------------------------------------------------------------
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

    def _properties(self, exchange: Exchange) -> Properties:
        """The AMQP properties of a send, with its expiration checked."""
        properties = properties_for(
            exchange, persistent=self.spec.persistent, tracing=self._tracing
        )
        if properties.expiration is not None:
            properties.expiration = _expiration(properties.expiration, self._where)
        return properties

    def _routing_key(self, exchange: Exchange) -> str:
        if self.spec.routing_key_header:
            value = exchange.headers.get(self.spec.routing_key_header)
            if value is not None:
                return str(value)
        return self.spec.routing_key

    async def _request(self, channel: AmqpChannel, exchange: Exchange) -> None:
        if not self._reply_consumer:
            await channel.basic_consume(REPLY_TO, self._on_replies, no_ack=True)
            self._reply_consumer = True
        properties = self._properties(exchange)  # before the waiter: it may refuse the message
        correlation_id = f"{_CORRELATION_PREFIX}{next(_correlation)}"
        waiter: asyncio.Future[Delivery] = asyncio.get_running_loop().create_future()
        self._replies[correlation_id] = waiter
        properties.correlation_id = correlation_id
        properties.reply_to = REPLY_TO
        routing_key = self._routing_key(exchange)
        try:
            seq = channel.publish(self._body(exchange), self.spec.exchange, routing_key, properties)
            if self.spec.confirm:
                await self.confirmed(channel, seq, routing_key)
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


def _expiration(value: Any, where: str) -> str:
    """The broker closes the channel (406) over an expiration that is not a whole number of
    milliseconds; say so before sending, naming the header."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return str(value)
    if isinstance(value, str) and value.isdigit():
        return value
    raise EndpointError(
        f"header 'rabbitmq.expiration' must be a whole number of milliseconds as a string, "
        f"got {value!r}",
        endpoint=where,
    )
