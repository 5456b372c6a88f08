"""Per-step send counters: how often each ``to`` step sent, failed, and how long it took.

Counted only when the context has metrics on (``Context(metrics=True)``, as ``eip run`` does):
the compiler then wraps each ``to`` step's send in :func:`counted_send`, and library use pays
nothing. A send that completes at once costs an addition (inline in the fused pipeline); one
that suspends (I/O: HTTP, RabbitMQ, SOAP, a direct call into a route that waits) is also
timed, so the mean time is that of the sends that waited, and a sync send (``log:``,
``mock:``, a ``seda:`` put) adds no clock reads. A failure is a send that raised; a
redelivered send counts once per attempt.

Counters are kept per context, per route model and per compiler step path (``3 > when 1 >
2``, :attr:`eip.dsl.compiler.CompileContext.where`), so a reloaded route (a new model) starts
from zero while the old one, still draining, counts on in its own table. The control API maps
each path to its graph node (:func:`eip.server.graph.node_id_for_step_path`).
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from eip.processors.base import STOP, splice_inline, with_inline

if TYPE_CHECKING:
    from eip.dsl.model import RouteModel
    from eip.processors.base import Step

__all__ = ["SendCounter", "StepCounters", "counted_send", "step_counters"]

#: Tables kept per route id: the running model's, and a few a reload compiled beside it.
_KEPT = 4


class SendCounter:
    """One step's sends: ``sent`` (succeeded), ``failed`` (raised); ``waited`` of them
    suspended (did I/O), and took ``seconds`` in all."""

    __slots__ = ("failed", "seconds", "sent", "waited")

    def __init__(self) -> None:
        self.sent = 0
        self.failed = 0
        self.waited = 0
        self.seconds = 0.0


class StepCounters:
    """The send counters of one context's routes."""

    def __init__(self) -> None:
        self._tables: dict[str, list[tuple[RouteModel, dict[str, SendCounter]]]] = {}

    def counter(self, model: RouteModel, where: str) -> SendCounter:
        """The counter of the step at ``where`` in ``model`` (made on first use)."""
        table = self._table(model, create=True)
        assert table is not None
        found = table.get(where)
        if found is None:
            found = table[where] = SendCounter()
        return found

    def of(self, model: RouteModel) -> dict[str, SendCounter]:
        """Step path -> counter, for the route compiled from ``model`` (empty if none)."""
        return self._table(model, create=False) or {}

    def _table(self, model: RouteModel, *, create: bool) -> dict[str, SendCounter] | None:
        kept = self._tables.setdefault(model.route_id, [])
        for known, table in kept:
            if known is model:
                return table
        if not create:
            return None
        table = {}
        kept.append((model, table))
        del kept[:-_KEPT]
        return table


_BY_CONTEXT: weakref.WeakKeyDictionary[Any, StepCounters] = weakref.WeakKeyDictionary()


def step_counters(context: Any) -> StepCounters:
    """The send counters of ``context`` (a :class:`~eip.runtime.context.Context`)."""
    counters = _BY_CONTEXT.get(context)
    if counters is None:
        counters = _BY_CONTEXT[context] = StepCounters()
    return counters


def counted_send(send: Step, counter: SendCounter) -> Step:
    """Wrap a send to count it. A fused pipeline runs the counting inline (no call of its
    own: ~30 ns a send); a send that returns an awaitable is timed until it is done."""

    def counted(exchange: Any) -> Any:
        try:
            result = send(exchange)
        except BaseException:
            counter.failed += 1
            raise
        if result is None or result is STOP:
            counter.sent += 1
            return result
        return _waited(result, counter)

    code = [
        "try:",
        "    r = {0}(ex)",
        "except BaseException:",
        "    {1}.failed += 1",
        "    raise",
        "if r is None or r is STOP:",
        "    {1}.sent += 1",
        "else:",
        "    r = {2}(r, {1})",
    ]
    code, more = splice_inline(code, "r = {0}(ex)", send, 3)  # a mock's count, say
    return with_inline(counted, code, send, counter, _waited, *more, result=True)


async def _waited(pending: Awaitable[Any], counter: SendCounter) -> Any:
    began = time.perf_counter()
    try:
        result = await pending
    except BaseException:
        counter.failed += 1
        counter.waited += 1
        counter.seconds += time.perf_counter() - began
        raise
    counter.sent += 1
    counter.waited += 1
    counter.seconds += time.perf_counter() - began
    return result
