"""The consumer's half of the confirm-aware fast path (see :mod:`.confirmed`): whether a
route may take it, and settling its deliveries from their publishes' confirms."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from eip.components.rabbitmq._amqp import Delivery
from eip.components.rabbitmq.settlement import AckWindow, RequeueCounts
from eip.components.rabbitmq.spec import RabbitMQSpec
from eip.message import Exchange

if TYPE_CHECKING:
    from eip.components.rabbitmq import RabbitMQComponent
    from eip.runtime.route import Route

__all__ = ["FastPath", "then_confirmed"]


async def then_confirmed(pending: Any, confirm: Any) -> None:
    """Wait for ``pending`` (if any), and in any case for the publish's confirm."""
    try:
        if pending is not None:
            await pending
    finally:
        await confirm


class FastPath:
    """Mixin of :class:`~.consumer.RabbitMQConsumer`; the state lives in its ``__init__``."""

    route: Route
    spec: RabbitMQSpec
    component: RabbitMQComponent
    settled_by_confirm: int
    _window: AckWindow | None
    _requeues: RequeueCounts
    _tasks: set[asyncio.Task[None]]
    _send_counter: Any
    _last_send: Any

    #: Finishes a suspending exchange, then settles it (the consumer's general path).
    _run: Callable[..., Coroutine[Any, Any, None]]

    def _fast_path_possible(self) -> bool:
        """Whether deliveries may be settled from their publish's confirm: the route's last
        top-level step is a RabbitMQ send of this component (bare, or counted by the
        context's send counters), nothing traces the route, and more than one exchange may
        be in flight (see :mod:`.confirmed`)."""
        from eip.components.rabbitmq.producer import RabbitMQProducer

        self._send_counter = self._last_send = None
        steps = self.route.pipeline.steps
        if self.spec.concurrency <= 1 or not steps or self.component.context.tracing.enabled:
            return False
        last = steps[-1]
        inline = getattr(last, "eip_inline", None)
        if getattr(last, "__name__", "") == "counted" and inline is not None:
            # ``eip.runtime.step_counters.counted_send``: it counts the send as sent when it
            # returns None; a failed confirm moves it to failed (see confirm_failed)
            last, self._send_counter = inline.values[0], inline.values[1]
        producer = getattr(last, "__self__", None)
        if (
            isinstance(producer, RabbitMQProducer)
            and getattr(last, "__func__", None) is RabbitMQProducer.process
            and producer.component is self.component
        ):
            self._last_send = producer
            return True
        return False

    def confirmed(self, batch: list[tuple[AckWindow, Delivery, Exchange]]) -> None:
        """The publishes of these fast-path deliveries are confirmed (in delivery order):
        complete each, then settle them; one call per confirm frame, not per message."""
        self.settled_by_confirm += len(batch)
        route = self.route
        current = self._window
        counts = self._requeues
        counting = bool(counts)
        tags: list[int] = []
        left = 0
        for window, delivery, exchange in batch:
            done = exchange.done()
            if done is not None:  # on-completion work to await first: the general path
                self._track(self._run(None, done, window, delivery, exchange, False))
                continue
            left += 1
            if window is current:
                if counting:
                    counts.completed(delivery)
                tags.append(delivery.delivery_tag)
            # else: the channel died meanwhile: the broker redelivers it
        if left:
            route.inflight -= left - 1
            route.leave()
        if tags and current is not None and current.open:
            current.done_all(tags)

    def confirm_failed(
        self, window: AckWindow, delivery: Delivery, exchange: Exchange, error: Exception
    ) -> None:
        """Its publish failed or its outcome is unknown: the route's error handling takes it
        from the send step, as if the send had raised ``error``; then it is settled."""
        counter = self._send_counter
        if counter is not None:  # counted as sent when it was written: it failed
            counter.sent -= 1
            counter.failed += 1
        steps = len(self.route.pipeline.steps)
        pending = self.route.resume_failed(exchange, steps - 1, error)
        self._track(self._run(pending, None, window, delivery, exchange, False))

    def _track(self, work: Any) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
