"""The trail of an exchange in an audited route: which of the route's sends it passed, and
whether a top-level filter or the dead letter channel ended it (see :mod:`eip.audit.hook`).

A trail is a ``bytearray`` in the exchange's ``eip.audit.trail`` property: a flag per ``to``
step of the route and two for the outcome. It is cheap to make and the garbage collector does
not track it, which matters while exchanges wait for their commit. Copies of the exchange (a
dead letter, split parts, a wire tap) share it, as they share the properties' values.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from eip._callables import is_async_callable
from eip.message import Exchange
from eip.processors.base import STOP, Inline, Step, splice_inline, with_inline
from eip.processors.filter import filter_step

if TYPE_CHECKING:
    from eip.dsl.compiler import CompileContext

__all__ = [
    "DEAD_LETTER_FLAG",
    "FILTERED_FLAG",
    "TRAIL",
    "Endpoints",
    "Trail",
    "dead_letter_marker",
    "marking_filter",
    "plan_of",
    "recorded_send",
]

#: Exchange property: the trail of the audited route the exchange is in.
TRAIL = "eip.audit.trail"

#: A trail: ``[filtered, dead-lettered, sent by step 0, sent by step 1, ...]``, 0 or 1 each.
Trail = bytearray
FILTERED_FLAG = 0
DEAD_LETTER_FLAG = 1
_STEPS = 2  # the index of the first step's flag


class _Plan:
    """A route's audited sends, numbered as they are compiled."""

    __slots__ = ("clause", "uris")

    def __init__(self) -> None:
        self.uris: list[str] = []
        self.clause: list[bool] = []  # the send is in an on_exception clause's steps

    def add(self, uri: str, in_clause: bool) -> int:
        self.uris.append(uri)
        self.clause.append(in_clause)
        return _STEPS + len(self.uris) - 1


_PLANS: weakref.WeakKeyDictionary[Any, _Plan] = weakref.WeakKeyDictionary()


def _plan(cc: CompileContext) -> _Plan:
    plan = _PLANS.get(cc)
    if plan is None:
        plan = _PLANS[cc] = _Plan()
    return plan


def plan_of(cc: CompileContext) -> _Plan:
    """The route's sends numbered so far (taken away: the route is compiled)."""
    return _PLANS.pop(cc, None) or _Plan()


def recorded_send(send: Step, uri: str, cc: CompileContext) -> Step:
    """``send``, setting its flag in the exchange's trail first (inline when fused)."""
    in_clause = bool(cc.path) and cc.path[0].startswith("on_exception")
    flag = _plan(cc).add(uri, in_clause)

    def recorded(exchange: Exchange) -> Any:
        properties = exchange._properties  # the slot: no dict made for an exchange without
        trail = None if properties is None else properties.get(TRAIL)
        if trail is not None and len(trail) > flag:  # a trail of this route
            trail[flag] = 1
        return send(exchange)

    code = [
        "_at = ex._properties",
        "_at = None if _at is None else _at.get({0})",
        "if _at is not None and len(_at) > {1}:",
        "    _at[{1}] = 1",
    ]
    # The send's own inline code (a counted or traced send), after ours, when it has some.
    code, more = splice_inline([*code, "r = {2}(ex)"], "r = {2}(ex)", send, 3)
    return with_inline(recorded, code, TRAIL, flag, send, *more, result=True)


def marking_filter(predicate: Callable[[Exchange], Any]) -> Step:
    """A top-level filter of an audited route: the plain filter step
    (:func:`eip.processors.filter.filter_step`, inline code and all), marking the trail when it
    stops the exchange."""
    plain = filter_step(predicate)
    if is_async_callable(plain):

        async def async_filter(exchange: Exchange) -> Any:
            result = await plain(exchange)
            if result is STOP:
                _mark_filtered(exchange)
            return result

        return async_filter

    def sync_filter(exchange: Exchange) -> Any:
        result = plain(exchange)
        if result is STOP:
            _mark_filtered(exchange)
        return result

    inline: Inline | None = getattr(plain, "eip_inline", None)
    if inline is None or inline.result:
        return sync_filter
    mark = "{" + str(len(inline.values)) + "}(ex)"
    code: list[str] = []
    for line in inline.code:  # the filter stops the pipeline with "return None": mark first
        if line.strip() == "return None":
            code.append(line[: len(line) - len(line.lstrip())] + mark)
        code.append(line)
    return with_inline(sync_filter, code, *inline.values, _mark_filtered)


def _mark_filtered(exchange: Exchange) -> None:
    trail = exchange.properties.get(TRAIL)
    if trail is not None:  # an exchange made inside the route (an aggregate) has none
        trail[FILTERED_FLAG] = 1


def dead_letter_marker(send: Step) -> Step:
    """The dead letter channel's send, setting the dead-lettered flag first."""

    def dead_letter(letter: Exchange) -> Any:
        trail = letter.properties.get(TRAIL)  # the letter is a copy: it shares the trail
        if trail is not None:
            trail[DEAD_LETTER_FLAG] = 1
        return send(letter)

    return dead_letter


class Endpoints:
    """Turns a trail into the record's endpoint list; a list per pattern of flags, made once
    (a route has few patterns), so a record shares it instead of making one."""

    __slots__ = ("_dead_letter", "_order", "_uris", "patterns", "size")

    def __init__(self, plan: _Plan, dead_letter: str | None) -> None:
        self._uris = plan.uris
        self._order = sorted(range(len(plan.uris)), key=lambda n: (plan.clause[n], n))
        self._dead_letter = dead_letter
        #: The lists made so far, by ``bytes(trail)`` (read directly by the recorder).
        self.patterns: dict[bytes, list[str]] = {}
        self.size = _STEPS + len(plan.uris)

    def of(self, trail: Trail) -> list[str]:
        pattern = bytes(trail)
        found = self.patterns.get(pattern)
        if found is None:
            found = []
            for n in self._order:
                uri = self._uris[n]
                if pattern[_STEPS + n] and uri not in found:
                    found.append(uri)
            if pattern[DEAD_LETTER_FLAG] and self._dead_letter is not None:
                found.append(self._dead_letter)
            if len(self.patterns) < 1024:
                self.patterns[pattern] = found
        return found


# -- per exchange -------------------------------------------------------------------------------
