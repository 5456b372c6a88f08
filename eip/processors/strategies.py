"""Aggregation strategies: fold exchanges into one, ``strategy(old, new) -> Exchange``.

The contract is Camel's ``AggregationStrategy``: the first call gets ``old=None``, each call
returns the exchange that carries the result so far (usually ``old`` or ``new``, updated in
place, which is why no strategy allocates per call). Strategies are synchronous by contract,
like expressions: they run inline on the per-message path.

Failures: multicast and recipient list call the strategy for failed outputs too (``new`` has
``exception`` set); the failure counts as handled only when the returned exchange carries no
exception. The built-ins keep the first failure on the result and stop folding bodies after
it, so they never hide a failure; write your own strategy to tolerate failing outputs.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from eip.message import Exchange

__all__ = [
    "AggregationStrategy",
    "adopt",
    "collect_bodies",
    "concat",
    "merge_dicts",
    "use_latest",
    "use_original",
]

AggregationStrategy = Callable[[Exchange | None, Exchange], Exchange]


def _failures_stick(fold: AggregationStrategy) -> AggregationStrategy:
    """Wrap a body fold so that the first failure ends folding and stays on the result."""

    @functools.wraps(fold)
    def strategy(old: Exchange | None, new: Exchange) -> Exchange:
        if old is not None and old.exception is not None:
            return old
        if new.exception is not None:
            if old is None:
                return new
            old.exception = new.exception
            return old
        return fold(old, new)

    return strategy


@_failures_stick
def use_latest(old: Exchange | None, new: Exchange) -> Exchange:
    """The latest exchange wins."""
    return new


@_failures_stick
def use_original(old: Exchange | None, new: Exchange) -> Exchange:
    """The first exchange wins. In multicast and recipient list this means the exchange as it
    was before the multicast (the same as no strategy); in the aggregator, the group's first."""
    return new if old is None else old


@_failures_stick
def collect_bodies(old: Exchange | None, new: Exchange) -> Exchange:
    """The result's body is the list of all bodies, in order."""
    if old is None:
        new.body = [new.body]
        return new
    old.body.append(new.body)
    return old


@_failures_stick
def merge_dicts(old: Exchange | None, new: Exchange) -> Exchange:
    """Dict bodies merged into a new dict (later keys win); the inputs' dicts are not changed."""
    if not isinstance(new.body, dict):
        raise TypeError(f"merge_dicts needs dict bodies, got {type(new.body).__name__}")
    if old is None:
        new.body = dict(new.body)
        return new
    old.body.update(new.body)
    return old


def concat(separator: str | bytes = "") -> AggregationStrategy:
    """A strategy that joins str or bytes bodies with ``separator`` (converted as UTF-8 to the
    bodies' type). Each call makes a new str/bytes: fine for tens of parts, not for 100k."""
    text = separator if isinstance(separator, str) else separator.decode()
    raw = separator if isinstance(separator, bytes) else separator.encode()

    @_failures_stick
    def concat_bodies(old: Exchange | None, new: Exchange) -> Exchange:
        if old is None:
            _text_or_bytes(new.body)
            return new
        if _text_or_bytes(old.body) is not _text_or_bytes(new.body):
            raise TypeError("concat cannot join str and bytes bodies")
        old.body = old.body + (text if isinstance(old.body, str) else raw) + new.body
        return old

    concat_bodies.description = f"concat({separator!r})"  # type: ignore[attr-defined]
    return concat_bodies


def _text_or_bytes(value: Any) -> type:
    if isinstance(value, str):
        return str
    if isinstance(value, bytes | bytearray):
        return bytes
    raise TypeError(f"concat needs str or bytes bodies, got {type(value).__name__}")


def adopt(target: Exchange, result: Exchange) -> None:
    """Make ``result`` (an aggregated or reply exchange) the message of ``target``: body,
    headers, and its properties merged in (Camel's ``copyResults``)."""
    if result is target:
        return
    target.body = result.body
    target.headers = result.headers
    target.properties.update(result.properties)
