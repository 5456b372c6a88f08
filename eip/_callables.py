"""Facts about user callables that every layer asks: processors (is this predicate async?),
components (is this mock behaviour async?) and the compiler. It sits below all of them, so
asking costs no import of the processors or the runtime."""

from __future__ import annotations

import functools
import inspect
from typing import Any

__all__ = ["is_async_callable"]


def is_async_callable(fn: Any) -> bool:
    """True for ``async def`` functions, partials of them and objects with ``async __call__``."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(fn, "__call__", None)  # noqa: B004 - objects with an async __call__
    return call is not None and inspect.iscoroutinefunction(call)
