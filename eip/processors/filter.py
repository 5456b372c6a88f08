"""Message filter: the exchange continues only when the predicate holds."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from eip._callables import is_async_callable
from eip.message import Exchange
from eip.processors.base import STOP, Step, unwrap, with_inline
from eip.processors.inline_lambda import inline_source

__all__ = ["filter_step"]


def filter_step(predicate: Callable[[Exchange], Any]) -> Step:
    """Return a step that stops its pipeline when ``predicate`` is false."""
    if is_async_callable(predicate):

        async def async_filter(exchange: Exchange) -> Any:
            return None if await predicate(exchange) else STOP

        return async_filter

    test = unwrap(predicate)

    def sync_filter(exchange: Exchange) -> Any:
        return None if test(exchange) else STOP

    found = inline_source(test, 0)  # a simple lambda runs inline, not as a call
    if found is not None:
        expression, values = found
        return with_inline(sync_filter, [f"if not {expression}:", "    return None"], *values)
    return with_inline(sync_filter, ["if not {0}(ex):", "    return None"], test)
