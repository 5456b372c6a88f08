"""Content enricher: ask an endpoint (in-out) and merge its reply into the exchange.

Decisions:

- A copy of the exchange is sent as in-out, so the resource endpoint cannot disturb the
  exchange's own headers or properties; the reply is that copy after the call.
- Without a strategy the reply's body replaces the body and the exchange keeps its own headers
  (Camel uses the reply; keeping the headers keeps a resource's transport headers out).
  ``strategy(original, reply) -> Exchange`` decides otherwise; its result becomes the message
  (body, headers, properties). Strategies are sync by contract.
- A failed call fails the enrich step, so the route's error handling applies to the exchange
  itself: redelivery re-sends the request, a dead letter channel gets the original exchange.
  A failure a ``direct:`` resource route already handled is not redelivered again.
- The copy's on-completion callbacks are handed over to the exchange.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from eip._callables import is_async_callable
from eip.message import Exchange, ExchangePattern
from eip.processors.base import STOP, Step
from eip.processors.multicast import adopt_failure
from eip.processors.strategies import adopt

__all__ = ["enrich_step"]

EnrichStrategy = Callable[[Exchange, Exchange], Exchange]


def enrich_step(send: Step, strategy: EnrichStrategy | None = None) -> Step:
    """The enrich step around ``send`` (the resource endpoint's producer)."""
    if strategy is not None and is_async_callable(strategy):
        raise TypeError("enrich strategies are sync by contract; got an async function")

    def merge(exchange: Exchange, reply: Exchange) -> None:
        reply.handover_completions(exchange)
        if reply.exception is not None:
            raise adopt_failure(exchange, reply)
        if strategy is None:
            exchange.body = reply.body
        else:
            adopt(exchange, strategy(exchange, reply))

    async def finish(exchange: Exchange, reply: Exchange, pending: Any) -> None:
        try:
            await pending
        except Exception as exc:
            reply.exception = exc
        merge(exchange, reply)

    def enrich(exchange: Exchange) -> Any:
        reply = exchange.copy()
        reply.pattern = ExchangePattern.IN_OUT
        try:
            result = send(reply)
        except Exception as exc:
            reply.exception = exc
            result = None
        if result is not None and result is not STOP:
            return finish(exchange, reply, result)
        merge(exchange, reply)
        return None

    return enrich
