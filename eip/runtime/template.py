"""ProducerTemplate: send messages to endpoints from code outside routes (tests, scripts).

``send`` is in-only and returns the exchange, with ``exception`` set if routing failed (as in
Camel). ``request`` is in-out and returns the reply body, raising the failure instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from opentelemetry import trace

from eip.dsl.model import EndpointRef
from eip.message import Exchange, ExchangePattern

if TYPE_CHECKING:
    from eip.runtime.context import Context

__all__ = ["ProducerTemplate"]


class ProducerTemplate:
    def __init__(self, context: Context) -> None:
        self.context = context

    async def send_exchange(self, endpoint: EndpointRef, exchange: Exchange) -> Exchange:
        """Send a prepared exchange; failures are set on ``exchange.exception``."""
        producer = await self.context.producer(endpoint)
        if self.context.tracing.enabled and exchange.trace_context is None:
            current = trace.get_current_span()
            if current.get_span_context().is_valid:
                exchange.trace_context = current
        try:
            result = producer.process(exchange)
            if result is not None and hasattr(result, "__await__"):
                await result
        except Exception as exc:
            exchange.exception = exc
        done = exchange.done()
        if done is not None:
            await done
        return exchange

    async def send(
        self, endpoint: EndpointRef, body: Any = None, headers: dict[str, Any] | None = None
    ) -> Exchange:
        """Send an in-only message; returns the exchange (check ``exchange.exception``)."""
        return await self.send_exchange(endpoint, Exchange(body, headers))

    async def request(
        self, endpoint: EndpointRef, body: Any = None, headers: dict[str, Any] | None = None
    ) -> Any:
        """Send an in-out message and return the reply body; raises if routing failed."""
        exchange = await self.request_exchange(endpoint, body, headers)
        if exchange.exception is not None:
            raise exchange.exception
        return exchange.body

    async def request_exchange(
        self, endpoint: EndpointRef, body: Any = None, headers: dict[str, Any] | None = None
    ) -> Exchange:
        exchange = Exchange(body, headers, pattern=ExchangePattern.IN_OUT)
        return await self.send_exchange(endpoint, exchange)
