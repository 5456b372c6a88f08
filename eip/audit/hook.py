"""How an audited route records its exchanges (installed by the compiler, for those routes only).

- **Dispatch.** The route's ``dispatch`` is wrapped: it gives the exchange a *trail* (a
  ``bytearray`` in the ``eip.audit.trail`` property: a flag per ``to`` step of the route and
  two for the outcome; cheap to make, and not tracked by the garbage collector, which matters
  while exchanges wait for their commit), runs the route, makes the record from what the
  exchange ended as and from its trail, and hands the record to the
  :class:`~eip.audit.writer.AuditWriter`, returning the batch's commit: whoever dispatched the
  exchange awaits it before completing the exchange's unit of work, so the record is durable
  first. A route that completes synchronously therefore returns an awaitable when audited;
  one that fails is awaited too, and then raises its error.
- **Endpoints.** Each ``to`` step of an audited route sets its flag in the trail before it
  sends, inline in the fused pipeline: the record lists each endpoint (redacted) the exchange
  was sent to, once, in the order of the route's steps (its ``on_exception`` clauses' last;
  redeliveries, repeated sends and the parts of a split, which share the trail, add nothing).
  The dead letter channel sets a flag too, and its endpoint comes last.
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
from eip.processors.filter import filter_step
from eip.redaction import redact_uri

if TYPE_CHECKING:
    from eip.dsl.compiler import CompileContext
    from eip.runtime.route import Route

__all__ = [
    "TRAIL",
    "Endpoints",
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


#: A trail: ``[filtered, dead-lettered, sent by step 0, sent by step 1, ...]``, 0 or 1 each.
Trail = bytearray
_FILTERED = 0
_DEAD_LETTERED = 1
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
    errors = route.errors
    dead_letter = None
    if errors.dead_letter is not None:
        dead_letter = errors.dead_letter_uri or "dead letter channel"
        errors.dead_letter = _dead_letter_marker(errors.dead_letter)
    plan = _PLANS.pop(cc, None) or _Plan()
    endpoints = Endpoints(plan, dead_letter)
    recorder = Recorder(route, spec.key, fields, writer, source, endpoints)
    route.dispatch = recorder.dispatch


def recorded_send(send: Step, uri: str, cc: CompileContext) -> Step:
    """``send``, setting its flag in the exchange's trail first (inline when fused)."""
    in_clause = bool(cc.path) and cc.path[0].startswith("on_exception")
    flag = _plan(cc).add(uri, in_clause)

    def recorded(exchange: Exchange) -> Any:
        trail = exchange.properties.get(TRAIL)
        if trail is not None and len(trail) > flag:  # a trail of this route
            trail[flag] = 1
        return send(exchange)

    code = [
        "_at = ex.properties.get({0})",
        "if _at is not None and len(_at) > {1}:",
        "    _at[{1}] = 1",
    ]
    inner: Inline | None = getattr(send, "eip_inline", None)
    if inner is None:
        return with_inline(recorded, [*code, "r = {2}(ex)"], TRAIL, flag, send, result=True)
    shifted = [_shift(line, 2) for line in inner.code]  # the send's own inline code, after ours
    return with_inline(recorded, [*code, *shifted], TRAIL, flag, *inner.values, result=inner.result)


_PLACEHOLDER = re.compile(r"\{(\d+)\}")


def _shift(line: str, by: int) -> str:
    return _PLACEHOLDER.sub(lambda m: "{" + str(int(m.group(1)) + by) + "}", line)


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
        trail[_FILTERED] = 1


def _dead_letter_marker(send: Step) -> Step:
    def dead_letter(letter: Exchange) -> Any:
        trail = letter.properties.get(TRAIL)  # the letter is a copy: it shares the trail
        if trail is not None:
            trail[_DEAD_LETTERED] = 1
        return send(letter)

    return dead_letter


class Endpoints:
    """Turns a trail into the record's endpoint list; a list per pattern of flags, made once
    (a route has few patterns), so a record shares it instead of making one."""

    __slots__ = ("_dead_letter", "_order", "_patterns", "_uris", "size")

    def __init__(self, plan: _Plan, dead_letter: str | None) -> None:
        self._uris = plan.uris
        self._order = sorted(range(len(plan.uris)), key=lambda n: (plan.clause[n], n))
        self._dead_letter = dead_letter
        self._patterns: dict[bytes, list[str]] = {}
        self.size = _STEPS + len(plan.uris)

    def of(self, trail: Trail) -> list[str]:
        pattern = bytes(trail)
        found = self._patterns.get(pattern)
        if found is None:
            found = []
            for n in self._order:
                uri = self._uris[n]
                if pattern[_STEPS + n] and uri not in found:
                    found.append(uri)
            if pattern[_DEAD_LETTERED] and self._dead_letter is not None:
                found.append(self._dead_letter)
            if len(self._patterns) < 1024:
                self._patterns[pattern] = found
        return found


# -- per exchange -------------------------------------------------------------------------------
class Recorder:
    """Wraps one audited route's dispatch and makes its records."""

    __slots__ = (
        "_append",
        "_endpoints",
        "_fields",
        "_inner",
        "_key",
        "_key_failed",
        "_route",
        "_size",
        "_source",
        "id",
    )

    def __init__(
        self,
        route: Route,
        key: Callable[[Exchange], Any] | None,
        fields: Sequence[str],
        writer: AuditWriter,
        source: str,
        endpoints: Endpoints,
    ) -> None:
        self.id = route.id
        self._inner = route.dispatch
        self._key = unwrap(key) if key is not None else None
        self._key_failed = False
        self._fields = FieldPicker(fields) if fields else None
        self._append = writer.append
        self._source = source
        self._route = route
        self._endpoints = endpoints.of
        self._size = endpoints.size

    def dispatch(self, exchange: Exchange) -> Awaitable[None]:
        properties = exchange.properties
        outer = properties.get(TRAIL)
        trail = properties[TRAIL] = bytearray(self._size)
        try:
            result = self._inner(exchange)
        except Exception as exc:
            _restore(properties, outer)
            return _raise_after(self._append(self.entry(exchange, properties, trail, exc)), exc)
        if result is None:
            if outer is None:
                del properties[TRAIL]
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
        if error is not None:
            outcome = FAILED
            failure = _type_name(PartFailedError.unwrap(error))
        elif trail[_DEAD_LETTERED]:
            outcome = DEAD_LETTERED
            failure = headers.get(_EXCEPTION_TYPE)
        elif trail[_FILTERED]:
            outcome = FILTERED
        elif _EXCEPTION in properties and self._handled_here(exchange):
            outcome = HANDLED
            failure = headers.get(_EXCEPTION_TYPE)
        else:
            outcome = COMPLETED
        message_id = headers.get(_MESSAGE_ID)
        return Content(  # in sorted field order; chain, prev, seq and time come when sealed
            "",
            self._endpoints(trail),
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
