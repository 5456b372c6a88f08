"""Message, Exchange and the unit of work.

An :class:`Exchange` is what flows through a route: the current :class:`Message` plus
properties, the exception (if any), ids and the exchange pattern. Both are slotted classes,
created once per message, so the per-message cost stays well under a microsecond.

The **unit of work** is the list of on-completion callbacks an exchange collects while it is
routed (an idempotent consumer removes its key on failure, a RabbitMQ consumer acks on success).
It is created lazily: an exchange that nobody registers a callback on pays nothing for it.
Whoever created the exchange (a consumer, the producer template) calls :meth:`Exchange.done`
exactly once, after the whole route has finished.
"""

from __future__ import annotations

import enum
import inspect
import itertools
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["Exchange", "ExchangePattern", "Message", "UnitOfWork"]

log = logging.getLogger("eip.exchange")

_ids = itertools.count(1)
_ID_PREFIX = f"{os.getpid():x}-{os.urandom(3).hex()}-"


def id_parts() -> tuple[str, Callable[[], int]]:
    """The prefix and the counter of exchange ids, for generated code that makes an exchange's
    id inline (``f"{prefix}{next_number()}"``, kept in ``ex._id``) exactly as
    :attr:`Exchange.id` does, without the property's call."""
    return _ID_PREFIX, _ids.__next__


Callback = Callable[["Exchange"], Awaitable[None] | None]
#: ``callback(exchange, arg, claimed_on)``: see :meth:`Exchange.on_completion_with`.
Completion = Callable[["Exchange", Any, "Exchange"], Awaitable[None] | None]
#: ``clean(arg)``: what a Completion does for a clean success (see on_completion_with).
CleanCompletion = Callable[[Any], None]
#: The compact unit of work of :meth:`Exchange.on_completion_with`.
_Compact = tuple[Completion, Any, CleanCompletion | None]


class ExchangePattern(enum.Enum):
    """In-only is fire-and-forget; in-out expects a reply (the exchange's message after routing)."""

    IN_ONLY = "in-only"
    IN_OUT = "in-out"


class Message:
    """A body and its headers. Headers are a plain dict of str to any value."""

    __slots__ = ("body", "headers")

    def __init__(self, body: Any = None, headers: dict[str, Any] | None = None) -> None:
        self.body = body
        self.headers: dict[str, Any] = {} if headers is None else headers

    def copy(self) -> Message:
        """A shallow copy: a new headers dict, the same body object."""
        return Message(self.body, dict(self.headers))

    def __repr__(self) -> str:
        return f"Message(body={self.body!r}, headers={self.headers!r})"


class UnitOfWork:
    """On-completion callbacks of one exchange, run once when its routing is done.

    Most exchanges that have callbacks have one pair (an idempotent claim, a consumer's ack),
    so the first pair is kept in two slots and only further pairs go to a list: a unit of work
    is one object, made with its first pair. Once it ran it lets go of its callbacks, so a
    callback that holds its exchange (the exchange holds the unit of work) leaves no
    reference cycle behind for the garbage collector.
    """

    __slots__ = ("_more", "_on_failure", "_on_success", "completed")

    def __init__(
        self, on_success: Callback | None = None, on_failure: Callback | None = None
    ) -> None:
        self._on_success = on_success
        self._on_failure = on_failure
        #: The pairs registered after the first, in registration order (None: none yet).
        self._more: list[tuple[Callback | None, Callback | None]] | None = None
        self.completed = False

    def add(self, on_success: Callback | None = None, on_failure: Callback | None = None) -> None:
        if on_success is None and on_failure is None:
            return
        if self._more is None:
            if self._on_success is None and self._on_failure is None:
                self._on_success, self._on_failure = on_success, on_failure
                return
            self._more = []
        self._more.append((on_success, on_failure))

    def _pairs(self) -> list[tuple[Callback | None, Callback | None]]:
        """Every pair, in registration order."""
        first = (self._on_success, self._on_failure)
        pairs = [] if first == (None, None) else [first]
        if self._more is not None:
            pairs += self._more
        return pairs

    def absorb(self, other: UnitOfWork) -> None:
        """Take over ``other``'s callbacks (they complete with this unit of work)."""
        if other.completed:
            return
        for on_success, on_failure in other._pairs():
            self.add(on_success, on_failure)

    def run(self, exchange: Exchange, failed: bool) -> Awaitable[None] | None:
        """Run the callbacks in reverse order of registration (last in, first completed).

        Plain callbacks run right here; only when one returns an awaitable does the rest run
        in a coroutine, so an exchange with sync callbacks completes without an await. A failing
        callback is logged and does not stop the others: one broken callback must not leave an
        ack or a key release undone. A success callback that fails (a transactional store's
        commit, say) makes the exchange's outcome unknown: it gets an
        :class:`~eip.errors.OutcomeUnknownError`, so a consumer that settles after completion
        puts its message back instead of acknowledging an effect that was never committed.
        """
        if self.completed:
            return None
        self.completed = True
        more = self._more
        if more is None:  # one pair: the common case
            callback = self._on_failure if failed else self._on_success
            self._on_success = self._on_failure = None
            return None if callback is None else _run_one(exchange, callback, failed)
        side = 1 if failed else 0
        callbacks = [pair[side] for pair in self._pairs()]
        self._on_success = self._on_failure = self._more = None
        index = len(callbacks)
        while index:
            index -= 1
            callback = callbacks[index]
            if callback is None:
                continue
            try:
                result = callback(exchange)
            except Exception as exc:
                _callback_failed(exchange, callback, exc, failed)
                continue
            if result is not None and inspect.isawaitable(result):
                rest = callbacks[index - 1 :: -1] if index else []
                return _settle(exchange, result, rest, failed, callback)
        return None


def _bound(callback: Completion, arg: Any, claimed_on: Exchange) -> Callback:
    return lambda exchange: callback(exchange, arg, claimed_on)


def _plain(uow: Callback | _Compact | None, claimed_on: Exchange) -> Callback:
    """A compact unit of work (one callback, or a ``(callback, arg, clean)`` tuple) as one
    callback (``callback`` alone does all that ``clean`` would)."""
    if isinstance(uow, tuple):
        return _bound(uow[0], uow[1], claimed_on)
    assert uow is not None
    return uow


def _run_one(exchange: Exchange, callback: Callback, failed: bool) -> Awaitable[None] | None:
    """Run one on-completion callback; a coroutine only when it returned an awaitable."""
    try:
        result = callback(exchange)
    except Exception as exc:
        _callback_failed(exchange, callback, exc, failed)
        return None
    if result is not None and inspect.isawaitable(result):
        return _settle(exchange, result, [], failed, callback)
    return None


async def _settle(
    exchange: Exchange,
    pending: Awaitable[None],
    rest: list[Callback | None],
    failed: bool,
    callback: Callback,
) -> None:
    """Await the callback that returned ``pending``, then run the ``rest`` in order."""
    try:
        await pending
    except Exception as exc:
        _callback_failed(exchange, callback, exc, failed)
    for next_callback in rest:
        if next_callback is None:
            continue
        try:
            result = next_callback(exchange)
            if result is not None and inspect.isawaitable(result):
                await result
        except Exception as exc:
            _callback_failed(exchange, next_callback, exc, failed)


def _callback_failed(exchange: Exchange, callback: Callback, exc: Exception, failed: bool) -> None:
    log.error(
        "on-completion callback %r failed for %s: %s: %s",
        callback,
        exchange.id,
        type(exc).__name__,
        exc,
        exc_info=exc,
    )
    if not failed and exchange.exception is None:
        from eip.errors import OutcomeUnknownError

        unknown = OutcomeUnknownError(
            f"completing exchange {exchange.id} failed ({type(exc).__name__}: {exc}); "
            "its outcome is unknown"
        )
        unknown.__cause__ = exc
        exchange.exception = unknown


class Exchange(Message):
    """One message travelling through routes, with what the engine knows about it.

    An exchange *is* its current message (``exchange.body``, ``exchange.headers``) plus
    properties, the exception, ids and the pattern; ``exchange.message`` is the exchange itself
    seen as a :class:`Message`, and assigning a Message to it replaces body and headers. One
    object per message instead of two keeps the per-message cost low.
    """

    __slots__ = (
        "_id",
        "_properties",
        "_uow",
        "exception",
        "failure_handler",
        "original",
        "pattern",
        "route_id",
        "route_stop",
        "trace_context",
    )

    def __init__(
        self,
        body: Any = None,
        headers: dict[str, Any] | None = None,
        pattern: ExchangePattern = ExchangePattern.IN_ONLY,
    ) -> None:
        self.body = body
        self.headers = {} if headers is None else headers
        self.pattern = pattern
        self._properties: dict[str, Any] | None = None  # made on first use (see properties)
        self.exception: BaseException | None = None
        self.route_id: str | None = None
        self.route_stop = False
        self.failure_handler: object | None = None
        self.original: Message | None = None
        self.trace_context: Any = None
        self._id: str | None = None
        #: None, a UnitOfWork, or a compact form for both outcomes: one callback (see
        #: on_completion) or a (callback, arg) tuple (see on_completion_with).
        self._uow: UnitOfWork | Callback | _Compact | None = None

    @property
    def properties(self) -> dict[str, Any]:
        """The exchange's properties (engine and route state that is not sent), made on
        first use: most exchanges never have any, and a dict per exchange is measurable."""
        properties = self._properties
        if properties is None:
            properties = self._properties = {}
        return properties

    @properties.setter
    def properties(self, properties: dict[str, Any]) -> None:
        self._properties = properties

    @property
    def message(self) -> Message:
        return self

    @message.setter
    def message(self, message: Message) -> None:
        self.body = message.body
        self.headers = message.headers

    @property
    def id(self) -> str:
        """A process-unique id, made on first use (most exchanges never need one)."""
        if self._id is None:
            self._id = f"{_ID_PREFIX}{next(_ids)}"
        return self._id

    @property
    def failed(self) -> bool:
        return self.exception is not None

    def on_completion(
        self, on_success: Callback | None = None, on_failure: Callback | None = None
    ) -> None:
        """Register callbacks to run when the exchange's routing completes.

        One callback for both outcomes (``on_success is on_failure``: a seda or file consumer
        that settles either way) on an exchange without callbacks is kept as it is, in place
        of a unit of work: no object of its own per message.
        """
        if self._uow is None:
            if on_success is on_failure and on_success is not None:
                self._uow = on_success
            else:
                self._uow = UnitOfWork(on_success, on_failure)
            return
        self._unit().add(on_success, on_failure)

    def on_completion_with(
        self, callback: Completion, arg: Any, clean: CleanCompletion | None = None
    ) -> None:
        """Register ``callback(exchange, arg, claimed_on)`` for both outcomes: ``exchange`` is
        the one that completes (callbacks move to a copy on a handover), ``claimed_on`` this
        one. For per-message state (an idempotent consumer's key) without a closure per
        message: on an exchange without callbacks it is kept as one tuple, and ``callback``,
        the same function every time, is a call Python can specialise.

        ``clean(arg)``, if given, runs instead of ``callback`` for a clean success: this
        exchange completes itself, without an exception and without any properties (so
        nothing marked it, a handled failure say); it must do what ``callback`` would then
        (the idempotent consumer's: confirm the key). A call less in the common case.
        """
        if self._uow is None:
            self._uow = (callback, arg, clean)
            return
        both = _bound(callback, arg, self)
        self._unit().add(both, both)

    def _unit(self) -> UnitOfWork:
        """The unit of work as a UnitOfWork, made from a compact form if needed."""
        uow = self._uow
        if isinstance(uow, UnitOfWork):
            return uow
        both = _plain(uow, self)
        unit = self._uow = UnitOfWork(both, both)
        return unit

    def done(self) -> Awaitable[None] | None:
        """Complete the unit of work; returns an awaitable only if a callback returned one."""
        uow = self._uow
        if uow is None:
            return None
        kind = uow.__class__
        if kind is UnitOfWork:
            return uow.run(self, self.exception is not None)  # type: ignore[union-attr]
        # A compact form, one callback for both outcomes: it runs once, here.
        self._uow = None
        failed = self.exception is not None
        callback: Any = uow
        try:
            if kind is not tuple:
                result = callback(self)
            elif uow[2] is None or failed or self._properties is not None:  # type: ignore[index]
                callback = uow[0]  # type: ignore[index]
                result = callback(self, uow[1], self)  # type: ignore[index]
            else:  # a clean success (see on_completion_with)
                callback = uow[2]  # type: ignore[index]
                result = callback(uow[1])  # type: ignore[index]
        except Exception as exc:
            _callback_failed(self, callback, exc, failed)
            return None
        if result is not None and inspect.isawaitable(result):
            return _settle(self, result, [], failed, callback)
        return None

    def handover_completions(self, other: Exchange) -> None:
        """Move this exchange's callbacks to ``other`` (used when work continues on a copy)."""
        mine = self._uow
        if mine is None:
            return
        self._uow = None
        if not isinstance(mine, UnitOfWork):
            mine = _plain(mine, self)  # a (callback, arg) keeps this exchange as claimed_on
        if other._uow is None:
            other._uow = mine
        elif isinstance(mine, UnitOfWork):
            other._unit().absorb(mine)
        else:
            other._unit().add(mine, mine)

    def copy(self) -> Exchange:
        """A copy with its own headers and properties, sharing no unit of work."""
        twin = Exchange(self.body, dict(self.headers), self.pattern)
        if self._properties:
            twin._properties = dict(self._properties)
        twin.route_id = self.route_id
        twin.trace_context = self.trace_context
        twin.original = self.original
        return twin

    def snapshot(self) -> Message:
        """The current message as a separate Message (a new headers dict, the same body)."""
        return Message(self.body, dict(self.headers))

    def __repr__(self) -> str:
        return (
            f"Exchange(id={self.id!r}, route={self.route_id!r}, "
            f"body={self.body!r}, headers={self.headers!r})"
        )
