"""How an audited route records its exchanges (installed by the compiler, for those routes only).

- **Dispatch.** The route's ``dispatch`` is wrapped: it gives the exchange a *trail* (a plain
  list in the ``eip.audit.trail`` property), runs the route, then makes the record from what
  the exchange ended as and from its trail, and hands the record to the
  :class:`~eip.audit.writer.AuditWriter`, returning the writer's future: whoever dispatched
  the exchange awaits it before completing the exchange's unit of work, so the record is
  durable first. A route that completes
  synchronously therefore returns an awaitable when audited; one that fails is awaited too,
  and then raises its error.
- **Endpoints.** Each ``to`` step of an audited route adds its endpoint (redacted) to the
  trail before it sends, inline in the fused pipeline, once: the record lists each endpoint
  the exchange was sent to in the order of its first send (redeliveries, repeated sends and
  the parts of a split add nothing more). The dead letter channel adds its endpoint, and marks the
  exchange dead-lettered.
- **Filtered.** A ``filter`` at the route's top level marks the trail when it stops the
  exchange (a filter inside a branch only ends that branch: the exchange goes on).
- **Outcome.** Raised: ``failed``; dead letter channel: ``dead-lettered``; top-level filter:
  ``filtered``; a ``handled`` clause of the route: ``handled``; else ``completed``.

A sub-route reached by ``direct:`` that audits too keeps its own trail while it runs, and
writes its own record.
"""

from __future__ import annotations

import contextlib
import logging
import re
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from eip import headers as H
from eip._callables import is_async_callable
from eip.audit.record import COMPLETED, DEAD_LETTERED, FAILED, FILTERED, HANDLED, Content, Entry
from eip.audit.spec import AuditSpec, field_paths
from eip.audit.store import AuditStore, default_store_uri, open_store
from eip.audit.writer import AuditWriter
from eip.errors import PartFailedError, RouteDefinitionError
from eip.expressions import path_getter
from eip.message import Exchange
from eip.processors.base import STOP, Inline, Step, unwrap, with_inline
from eip.processors.error_handler import failure_handled
from eip.redaction import redact_uri

if TYPE_CHECKING:
    from eip.dsl.compiler import CompileContext
    from eip.runtime.route import Route

__all__ = [
    "TRAIL",
    "FieldPicker",
    "Recorder",
    "Trail",
    "install_audit",
    "marking_filter",
    "recorded_send",
    "writer_for",
]

log = logging.getLogger("eip.audit")

#: Exchange property: the trail of the audited route the exchange is in.
TRAIL = "eip.audit.trail"
_EXCEPTION = H.EXCEPTION_PROPERTY
_EXCEPTION_TYPE = H.EXCEPTION_TYPE
_MESSAGE_ID = H.MESSAGE_ID
_PRINCIPAL = H.HTTP_PRINCIPAL


#: A trail is a plain list (the cheapest thing to make per exchange): the endpoints sent to,
#: and these marks.
Trail = list[object]


class _Mark:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name}>"


#: In a trail: a top-level filter stopped the exchange.
FILTERED_MARK = _Mark("filtered")
#: In a trail: the route's dead letter channel took the exchange (its endpoint follows).
DEAD_LETTER_MARK = _Mark("dead-lettered")


def _add(exchange: Exchange, item: object) -> None:
    trail = exchange.properties.get(TRAIL)
    if trail is not None:  # an exchange made inside the route (an aggregate) has none
        trail.append(item)


# -- compile time -------------------------------------------------------------------------------
_WRITERS: weakref.WeakKeyDictionary[Any, dict[object, AuditWriter]] = weakref.WeakKeyDictionary()


def writer_for(context: Any, spec: AuditSpec) -> AuditWriter:
    """The context's writer for the spec's store: one per store, shared by the routes that
    write to it (a store given by name: one per name and options)."""
    writers = _WRITERS.get(context)
    if writers is None:
        writers = _WRITERS[context] = {}
    store = spec.store if spec.store is not None else default_store_uri()
    if isinstance(store, AuditStore):
        key: object = id(store)
    elif isinstance(store, str):
        key = (store, tuple(sorted(spec.options.items())))
    else:
        raise TypeError(f"audit store must be an AuditStore or its name, got {store!r}")
    writer = writers.get(key)
    if writer is None or (isinstance(store, AuditStore) and writer.store is not store):
        made = store if isinstance(store, AuditStore) else open_store(store, **spec.options)
        writer = writers[key] = AuditWriter(made)
    return writer


def install_audit(cc: CompileContext, route: Route) -> None:
    """Make ``route`` audited as ``cc.audit`` says (see the module docstring)."""
    spec = cc.audit
    assert spec is not None
    try:
        if spec.key is not None and not callable(spec.key):
            raise TypeError(f"the key must be an expression of the exchange, got {spec.key!r}")
        fields = field_paths(spec.fields)
        writer = writer_for(cc.context, spec)
    except (TypeError, ValueError, ImportError) as exc:
        raise RouteDefinitionError(f"audit: {exc}", route_id=route.id, step="audit") from exc
    if not any(service is writer for service in route.services):
        route.services.insert(0, writer)  # started first, stopped last of the route's services
    source = redact_uri(route.source_uri).partition("?")[0]  # the queue, path or folder
    recorder = Recorder(route.id, route.dispatch, spec.key, fields, writer, source, route)
    route.dispatch = recorder.dispatch
    errors = route.errors
    if errors.dead_letter is not None:
        uri = errors.dead_letter_uri or "dead letter channel"
        errors.dead_letter = _dead_letter_marker(errors.dead_letter, uri)


def recorded_send(send: Step, uri: str) -> Step:
    """``send``, adding ``uri`` to the exchange's trail first (inline when fused) unless it
    is there already: a redelivery, a repeated send, or the parts of a split (which share the
    trail) leave one entry, so a trail is never longer than the route has endpoints."""

    def recorded(exchange: Exchange) -> Any:
        trail = exchange.properties.get(TRAIL)
        if trail is not None and uri not in trail:
            trail.append(uri)
        return send(exchange)

    code = [
        "_at = ex.properties.get({0})",
        "if _at is not None and {1} not in _at:",
        "    _at.append({1})",
    ]
    inner: Inline | None = getattr(send, "eip_inline", None)
    if inner is None:
        return with_inline(recorded, [*code, "r = {2}(ex)"], TRAIL, uri, send, result=True)
    shifted = [_shift(line, 2) for line in inner.code]  # the send's own inline code, after ours
    return with_inline(recorded, [*code, *shifted], TRAIL, uri, *inner.values, result=inner.result)


_PLACEHOLDER = re.compile(r"\{(\d+)\}")


def _shift(line: str, by: int) -> str:
    return _PLACEHOLDER.sub(lambda m: "{" + str(int(m.group(1)) + by) + "}", line)


def marking_filter(predicate: Callable[[Exchange], Any]) -> Step:
    """A top-level filter of an audited route: as :func:`eip.processors.filter.filter_step`,
    marking the trail when it stops the exchange."""
    if is_async_callable(predicate):

        async def async_filter(exchange: Exchange) -> Any:
            if await predicate(exchange):
                return None
            _mark_filtered(exchange)
            return STOP

        return async_filter

    test = unwrap(predicate)

    def sync_filter(exchange: Exchange) -> Any:
        if test(exchange):
            return None
        _mark_filtered(exchange)
        return STOP

    code = ["if not {0}(ex):", "    {1}(ex)", "    return None"]
    return with_inline(sync_filter, code, test, _mark_filtered)


def _mark_filtered(exchange: Exchange) -> None:
    _add(exchange, FILTERED_MARK)


def _dead_letter_marker(send: Step, uri: str) -> Step:
    def dead_letter(letter: Exchange) -> Any:
        trail = letter.properties.get(TRAIL)  # the letter is a copy: it shares the trail
        if trail is not None:
            trail.append(DEAD_LETTER_MARK)
            trail.append(uri)
        return send(letter)

    return dead_letter


# -- per exchange -------------------------------------------------------------------------------
class Recorder:
    """Wraps one audited route's dispatch and makes its records."""

    __slots__ = ("_append", "_fields", "_inner", "_key", "_key_failed", "_route", "_source", "id")

    def __init__(
        self,
        route_id: str,
        inner: Callable[[Exchange], Any],
        key: Callable[[Exchange], Any] | None,
        fields: Sequence[str],
        writer: AuditWriter,
        source: str,
        route: Route,
    ) -> None:
        self.id = route_id
        self._inner = inner
        self._key = unwrap(key) if key is not None else None
        self._key_failed = False
        self._fields = FieldPicker(fields) if fields else None
        self._append = writer.append
        self._source = source
        self._route = route

    def dispatch(self, exchange: Exchange) -> Awaitable[None]:
        properties = exchange.properties
        outer = properties.get(TRAIL)
        trail: Trail = []
        properties[TRAIL] = trail
        try:
            result = self._inner(exchange)
        except Exception as exc:
            _restore(properties, outer)
            return _raise_after(self._append(self.entry(exchange, properties, trail, exc)), exc)
        if result is None:
            if outer is None:
                properties.pop(TRAIL, None)
            else:
                properties[TRAIL] = outer
            return self._append(self.entry(exchange, properties, trail, None))
        return self._finish(exchange, result, trail, outer)

    async def _finish(self, exchange: Exchange, pending: Any, trail: Trail, outer: Any) -> None:
        properties = exchange.properties
        try:
            await pending
        except Exception as exc:
            _restore(properties, outer)
            await _raise_after(self._append(self.entry(exchange, properties, trail, exc)), exc)
        except BaseException:  # cancelled: no outcome to record
            _restore(properties, outer)
            raise
        _restore(properties, outer)
        await self._append(self.entry(exchange, properties, trail, None))

    def entry(
        self,
        exchange: Exchange,
        properties: dict[str, Any],
        trail: Trail,
        error: BaseException | None,
    ) -> Entry:
        """The record of ``exchange`` as it ends this route."""
        headers = exchange.headers
        failure: str | None = None
        endpoints: list[str] = trail  # type: ignore[assignment]  # strings, unless marked
        if error is not None:
            outcome = FAILED
            failure = _type_name(PartFailedError.unwrap(error))
            endpoints = _endpoints(trail)
        elif DEAD_LETTER_MARK in trail:
            outcome = DEAD_LETTERED
            failure = headers.get(_EXCEPTION_TYPE)
            endpoints = _endpoints(trail)
        elif FILTERED_MARK in trail:
            outcome = FILTERED
            endpoints = _endpoints(trail)
        else:
            outcome = COMPLETED
            if len(trail) > 1:
                endpoints = _endpoints(trail)
            if _EXCEPTION in properties and self._handled_here(exchange):
                outcome = HANDLED
                failure = headers.get(_EXCEPTION_TYPE)
        message_id = headers.get(_MESSAGE_ID)
        return Content(  # in sorted field order; chain, prev, seq and time come when sealed
            "",
            endpoints,
            failure,
            exchange.id,
            None if self._fields is None else self._fields(exchange.body),
            None if self._key is None else self._key_of(exchange),
            None if message_id is None else str(message_id),
            outcome,
            "",
            headers.get(_PRINCIPAL) or self._source,
            self.id,
            0,
            "",
        )

    def _handled_here(self, exchange: Exchange) -> bool:
        """A failure taken by a ``handled`` clause of this route (not of a sub-route)."""
        if not failure_handled(exchange):
            return False
        error = exchange.properties.get(H.EXCEPTION_PROPERTY)
        clause = self._route.errors.clause_for(error) if error is not None else None
        return clause is not None and clause.handled

    def _key_of(self, exchange: Exchange) -> str | None:
        assert self._key is not None
        try:
            value = self._key(exchange)
        except Exception as exc:
            if not self._key_failed:  # once per route: the record says key null
                self._key_failed = True
                log.warning("audit of route %s: the key expression raised %r", self.id, exc)
            return None
        return None if value is None else str(value)


def _restore(properties: dict[str, Any], outer: Any) -> None:
    if outer is None:
        properties.pop(TRAIL, None)
    else:
        properties[TRAIL] = outer


async def _raise_after(written: Awaitable[None], error: BaseException) -> None:
    """Wait for a failed exchange's record, then fail with the exchange's own error (a store
    error here is logged by the writer)."""
    with contextlib.suppress(Exception):
        await written
    raise error


def _endpoints(trail: Trail) -> list[str]:
    """The endpoints in a trail, marks left out, each once (two steps may name one)."""
    out: list[str] = []
    for item in trail:
        if isinstance(item, str) and item not in out:
            out.append(item)
    return out


def _type_name(error: BaseException) -> str:
    kind = type(error)
    return f"{kind.__module__}.{kind.__qualname__}"


class FieldPicker:
    """Reads the chosen body fields: from a dict, a Struct or an object, or from a JSON body
    (bytes or text, decoded only for this); a missing field is null."""

    __slots__ = ("_getters",)

    def __init__(self, paths: Sequence[str]) -> None:
        self._getters = [(path, path_getter(path)) for path in paths]

    def __call__(self, body: Any) -> dict[str, Any]:
        if isinstance(body, bytes | bytearray | memoryview | str):
            try:
                body = msgspec.json.decode(body)
            except Exception:  # not JSON (msgspec may raise more than DecodeError)
                body = None
        out: dict[str, Any] = {}
        for name, get in self._getters:
            try:
                out[name] = _plain(get(body))
            except Exception:
                out[name] = None
        return out


def _plain(value: Any) -> Any:
    """A value as plain JSON data (Structs, dates, decimals, enums converted)."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    try:
        return msgspec.to_builtins(value, str_keys=True)
    except TypeError:
        return repr(value)
