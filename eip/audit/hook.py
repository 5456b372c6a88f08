"""How an audited route records its exchanges (installed by the compiler, for those routes only).

- **Dispatch.** The route's ``dispatch`` is wrapped: it gives the exchange a *trail*
  (:mod:`eip.audit.trail`: a ``bytearray`` in the ``eip.audit.trail`` property, a flag per
  ``to`` step of the route and two for the outcome; cheap to make, and not tracked by the
  garbage collector, which matters while exchanges wait for their commit), runs the route,
  makes the record from what the exchange ended as and from its trail, and hands it to the
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
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from eip import headers as H
from eip.audit.fields import FieldPicker
from eip.audit.record import COMPLETED, DEAD_LETTERED, FAILED, FILTERED, HANDLED, Content, Entry
from eip.audit.spec import AuditSpec, field_paths
from eip.audit.store import AuditStore, default_store_uri, open_store
from eip.audit.trail import (
    DEAD_LETTER_FLAG,
    FILTERED_FLAG,
    TRAIL,
    Endpoints,
    Trail,
    dead_letter_marker,
    plan_of,
)
from eip.audit.writer import AuditWriter
from eip.errors import PartFailedError, RouteDefinitionError
from eip.message import Exchange
from eip.processors.base import unwrap
from eip.processors.error_handler import failure_handled
from eip.redaction import redact_uri

if TYPE_CHECKING:
    from eip.dsl.compiler import CompileContext
    from eip.runtime.route import Route

__all__ = ["Recorder", "install_audit", "writer_for"]

log = logging.getLogger("eip.audit")

_EXCEPTION = H.EXCEPTION_PROPERTY
_EXCEPTION_TYPE = H.EXCEPTION_TYPE
_MESSAGE_ID = H.MESSAGE_ID
_PRINCIPAL = H.HTTP_PRINCIPAL


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
        errors.dead_letter = dead_letter_marker(errors.dead_letter)
    endpoints = Endpoints(plan_of(cc), dead_letter)
    recorder = Recorder(route, spec.key, fields, writer, source, endpoints)
    route.dispatch = recorder.dispatch


class Recorder:
    """Wraps one audited route's dispatch and makes its records."""

    __slots__ = (
        "_append",
        "_endpoints",
        "_fields",
        "_inner",
        "_key",
        "_key_failed",
        "_patterns",
        "_plain",
        "_route",
        "_size",
        "_source",
        "_writer",
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
        self._writer = writer
        self._source = source
        self._route = route
        self._endpoints = endpoints.of
        self._patterns = endpoints.patterns
        self._size = endpoints.size
        self._plain = self._key is None and self._fields is None  # records need no expression

    def dispatch(self, exchange: Exchange) -> Awaitable[None]:
        # The exchange's properties read and made through the slot (as the split and the
        # idempotent consumer do): most exchanges have none, and a property call less counts.
        trail = bytearray(self._size)
        properties = exchange._properties
        if properties is None:
            outer = None
            properties = exchange._properties = {TRAIL: trail}
        else:
            outer = properties.get(TRAIL)
            properties[TRAIL] = trail
        try:
            result = self._inner(exchange)
        except Exception as exc:
            _restore(properties, outer)
            return _raise_after(self._append(self.entry(exchange, properties, trail, exc)), exc)
        if result is not None:
            return self._finish(exchange, result, trail, outer)
        if outer is not None:
            properties[TRAIL] = outer
        else:
            del properties[TRAIL]
            if not properties:  # as the exchange came: without (fewer objects while in flight)
                exchange._properties = None
        if (
            self._plain
            and not (trail[FILTERED_FLAG] or trail[DEAD_LETTER_FLAG])
            and _EXCEPTION not in properties
        ):
            # The common record (completed, no key, no fields), made here: entry() less.
            sent = self._patterns.get(bytes(trail))
            if sent is None:
                sent = self._endpoints(trail)
            headers = exchange.headers
            ident = exchange._id
            if ident is None:
                ident = exchange.id
            mid = headers.get(_MESSAGE_ID)
            if mid is not None:
                mid = str(mid)
            who = headers.get(_PRINCIPAL) or self._source
            record = Content(
                "", sent, None, ident, None, None, mid, COMPLETED, "", who, self.id, 0, ""
            )
            # The writer's append, inline while a batch is open (the call otherwise).
            writer = self._writer
            commit = writer._commit
            if commit is not None:
                writer._batch.append(record)
                return commit
            return writer.append(record)
        return self._append(self.entry(exchange, properties, trail, None))

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
        elif trail[DEAD_LETTER_FLAG]:
            outcome = DEAD_LETTERED
            failure = headers.get(_EXCEPTION_TYPE)
        elif trail[FILTERED_FLAG]:
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
