"""Content-based router: a list of (predicate, branch) plus an optional otherwise branch.

The first branch whose predicate holds takes the exchange; with no match and no otherwise, the
exchange continues after the choice unchanged. A branch's result (None, STOP or an awaitable)
is returned as it is, so a sync branch stays a plain call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from eip._callables import is_async_callable
from eip.message import Exchange
from eip.processors.base import STOP, Step, unwrap, with_inline
from eip.processors.inline_lambda import inline_source

__all__ = ["choice_step"]


def choice_step(
    branches: Sequence[tuple[Callable[[Exchange], Any], Step]], otherwise: Step | None
) -> Step:
    table = tuple((unwrap(predicate), branch) for predicate, branch in branches)
    if any(is_async_callable(predicate) for predicate, _ in table):
        return _async_choice(table, otherwise)

    def choice(exchange: Exchange) -> Any:
        for predicate, branch in table:
            if predicate(exchange):
                return branch(exchange)
        if otherwise is not None:
            return otherwise(exchange)
        return None

    code: list[str] = []
    values: list[Any] = []
    for number, (predicate, branch) in enumerate(table):
        keyword = "if" if number == 0 else "elif"
        # A simple lambda runs inline (eip.processors.inline_lambda), else it is called; and
        # ``@run``: the fused pipeline expands the branch in place when it can (fuse.py).
        found = inline_source(predicate, len(values))
        if found is None:
            test = f"{{{len(values)}}}(ex)"
            values.append(predicate)
        else:
            test, read = found
            values += read
        code += [f"{keyword} {test}:", f"    @run {{{len(values)}}}"]
        values.append(branch)
    code += ["else:", f"    @run {{{len(values)}}}" if otherwise is not None else "    r = None"]
    if otherwise is not None:
        values.append(otherwise)
    return with_inline(choice, code, *values, result=True)


def _async_choice(
    table: tuple[tuple[Callable[[Exchange], Any], Step], ...], otherwise: Step | None
) -> Step:
    async def choice(exchange: Exchange) -> Any:
        for predicate, branch in table:
            matched = predicate(exchange)
            if hasattr(matched, "__await__"):
                matched = await matched
            if matched:
                return await _settle(branch(exchange))
        if otherwise is not None:
            return await _settle(otherwise(exchange))
        return None

    return choice


async def _settle(result: Any) -> Any:
    if result is None or result is STOP:
        return result
    return await result
