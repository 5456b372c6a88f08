"""How the consumer settles a delivery once its exchange's unit of work has completed: ack,
reject to the dead letter exchange, or requeue an outcome that is unknown (see the rules in
:mod:`.consumer`'s docstring); and the reply to a ``reply_to`` and the quorum queue's poison
check. A mixin of :class:`~.consumer.RabbitMQConsumer`, kept apart so the consumer's module
holds its life cycle (attach, work, recover, stop) and this one its verdicts."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from eip.components.rabbitmq._amqp import Delivery, Properties
from eip.components.rabbitmq.client import AmqpChannel
from eip.components.rabbitmq.mapping import DELIVERY_COUNT
from eip.components.rabbitmq.settlement import AckWindow, RequeueCounts
from eip.components.rabbitmq.spec import RabbitMQSpec
from eip.errors import OutcomeUnknownError
from eip.logs import exchange_fields
from eip.message import Exchange

if TYPE_CHECKING:
    from eip.runtime.route import Route

__all__ = ["Verdicts"]

log = logging.getLogger("eip.rabbitmq")
_failures = logging.getLogger("eip.route.failures")


def _outcome_unknown(error: BaseException | None) -> bool:
    seen = 0
    while error is not None and seen < 8:
        if isinstance(error, OutcomeUnknownError):
            return True
        error = error.__cause__
        seen += 1
    return False


class Verdicts:
    """Mixin of :class:`~.consumer.RabbitMQConsumer`; the state lives in its ``__init__``."""

    route: Route
    spec: RabbitMQSpec
    _window: AckWindow | None
    _requeues: RequeueCounts
    _dead_letter: str

    def _settle(self, window: AckWindow, delivery: Delivery, exchange: Exchange) -> None:
        if window is not self._window or not window.open:
            return  # the channel died meanwhile: the broker redelivers this message
        tag = delivery.delivery_tag
        error = exchange.exception
        if error is None:
            if delivery.properties.reply_to:
                self._reply(window.channel, delivery, exchange)
            self._requeues.completed(delivery)
            window.done(tag)
            return
        if _outcome_unknown(error):
            count = self._requeues.requeued(delivery)
            if count <= self.spec.max_redeliveries:
                self._log_failure(
                    exchange,
                    delivery,
                    error,
                    f"requeued ({count} of {self.spec.max_redeliveries}): its outcome is unknown",
                )
                window.reject(tag, requeue=True)
                return
            self._log_failure(
                exchange, delivery, error, f"outcome unknown {count} times; {self._rejected()}"
            )
            self._requeues.completed(delivery)
        else:
            self._log_failure(exchange, delivery, error, self._rejected())
        window.reject(tag, requeue=False)

    def _rejected(self) -> str:
        if self._dead_letter:
            return f"rejected to dead letter exchange {self._dead_letter!r}"
        return (
            f"rejected without requeue; the endpoint configures no dead letter exchange for "
            f"queue {self.spec.queue_name!r}, so unless a broker policy sets one it is dropped"
        )

    def _log_failure(
        self, exchange: Exchange, delivery: Delivery, error: BaseException, outcome: str
    ) -> None:
        _failures.error(
            "route %s failed exchange %s (message id %s, delivery %d of queue %s%s): %s: %s; %s",
            self.route.id,
            exchange.id,
            delivery.properties.message_id,
            delivery.delivery_tag,
            self.spec.queue_name,
            ", redelivered" if delivery.redelivered else "",
            type(error).__name__,
            error,
            outcome,
            extra=exchange_fields(exchange, self.route.id),
        )

    def _reply(self, channel: AmqpChannel, delivery: Delivery, exchange: Exchange) -> None:
        body = exchange.body
        if isinstance(body, str):
            body = body.encode()
        elif not isinstance(body, bytes | bytearray | memoryview):
            log.error(
                "route %s: a reply needs a bytes or str body, got %s",
                self.route.id,
                type(body).__name__,
            )
            return
        properties = Properties(correlation_id=delivery.properties.correlation_id)
        channel.publish(bytes(body), "", delivery.properties.reply_to or "", properties)

    def _poisoned(self, window: AckWindow, delivery: Delivery) -> bool:
        """A quorum queue's delivery count over the limit: reject before processing."""
        headers = delivery.properties.headers
        if not headers or not delivery.redelivered:
            return False
        count = headers.get(DELIVERY_COUNT)
        if count is None or int(count) <= self.spec.max_redeliveries:
            return False
        log.error(
            "route %s: message %s (delivery %d of queue %s) was delivered %s times (limit %d); "
            "%s, without processing",
            self.route.id,
            delivery.properties.message_id,
            delivery.delivery_tag,
            self.spec.queue_name,
            count,
            self.spec.max_redeliveries,
            self._rejected(),
        )
        window.reject(delivery.delivery_tag, requeue=False)
        return True
