"""How eip makes its spans: through the OpenTelemetry API, or lean (see :mod:`eip.tracing`).

**The lean span path.** With the OpenTelemetry SDK's ``TracerProvider``, eip does not go through
``Tracer.start_span`` (about 19 µs per span here: locks, bounded attribute maps, the sampler
and context plumbing). It builds its spans directly as SDK ``ReadableSpan`` objects, using the
provider's id generator, resource and sampler (with a fast path for the default
parent-based always-on sampler), and hands each finished span to the provider's span
processors' ``on_end``, exactly what the SDK itself does at ``span.end()``. What is left out:
``on_start`` is not called (the SDK's batch and simple processors do nothing there), and span
limits are not applied (eip's spans carry three or four attributes). Any other tracer provider
goes through the plain OpenTelemetry API.

For the SDK's default set-up (parent-based always-on sampling, random ids), and for
``ParentBased(TraceIdRatioBased(rate))`` (see :mod:`eip._span_sampling`: an exchange not
sampled then costs a count down and one small object), ``start`` and ``end`` are closures
that take the fewest steps: no Python ``__init__`` per span, the ids drawn inline and kept in
the span's slots, the span its own SpanContext (no second object per span), a parent that is
one of ours read from those slots. With the SDK's ``BatchSpanProcessor``, ``end`` puts most
spans straight onto the processor's queue and lets its ``emit`` take one span a batch, where
it wakes the worker (see ``_batch_ender``).
"""

from __future__ import annotations

import collections
import os
import random
import threading
import time
import traceback
from collections.abc import Callable
from operator import attrgetter
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode

from eip._span_sampling import (
    EMPTY_STATE,
    NOT_SAMPLED,
    SAMPLED,
    RatioRoots,
    parent_based_root,
    ratio_bound,
    unsampled_type,
)

__all__ = ["ROOT", "otel_parent", "spans_for"]

ROOT = otel_context.Context()


def otel_parent(parent: Any) -> otel_context.Context:
    """An OpenTelemetry Context holding ``parent`` (a span, ours or the API's) for the API."""
    if parent is None:
        return ROOT
    if not isinstance(parent, trace.Span):
        # eip's lean spans are SDK ReadableSpans, not API Spans: the API (propagators,
        # samplers) only sees spans through get_current_span, which wants a Span.
        parent = trace.NonRecordingSpan(parent.get_span_context())
    return trace.set_span_in_context(parent, ROOT)


class _ApiSpans:
    """Spans through the plain OpenTelemetry API (any tracer provider)."""

    def __init__(self, provider: trace.TracerProvider) -> None:
        self.tracer = provider.get_tracer("eip")

    def start(self, name: str, parent: Any, kind: SpanKind, attributes: dict[str, Any]) -> Any:
        return self.tracer.start_span(
            name, context=otel_parent(parent), kind=kind, attributes=attributes
        )

    @staticmethod
    def end(span: Any) -> None:
        span.end()

    @staticmethod
    def fail(span: Any, exc: BaseException) -> None:
        if span.is_recording():
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        span.end()

    @staticmethod
    def annotate(span: Any, attributes: dict[str, Any], error: str | None = None) -> None:
        """Add attributes (and an error status) to a span that has not ended yet."""
        if span.is_recording():
            span.set_attributes(attributes)
            if error is not None:
                span.set_status(Status(StatusCode.ERROR, error))


class _LeanSpans:
    """Spans built directly as SDK ReadableSpans (see the module docstring)."""

    def __init__(self, provider: Any) -> None:
        from opentelemetry.sdk.trace import ReadableSpan
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
        from opentelemetry.sdk.trace.sampling import ALWAYS_ON
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope

        processor = provider._active_span_processor
        # One processor (the usual case): call it directly, not through the multiplexer.
        processors = getattr(processor, "_span_processors", None)
        if isinstance(processors, tuple) and len(processors) == 1:
            processor = processors[0]
        self.on_end: Callable[[Any], None] = processor.on_end
        # The batch processor's on_end checks that the span is sampled (``end`` did) and
        # hands it to its batcher: ``end`` feeds the batcher's queue itself (see _batch_ender).
        batcher = getattr(processor, "_batch_processor", None)
        if type(processor) is not BatchSpanProcessor or not _feedable(batcher):
            batcher = None
        self.sampler = provider.sampler
        # A ReadableSpan subclass whose constant fields are class attributes: a span then costs
        # ten attribute stores instead of ReadableSpan.__init__'s keyword call, into slots (an
        # instance dict, which ReadableSpan has, would make a span cost twice as much).
        self.span_type: type[Any] = type(
            "EipSpan",
            (ReadableSpan,),
            {
                "__slots__": _SPAN_FIELDS,
                "_instrumentation_info": None,
                "_instrumentation_scope": InstrumentationScope("eip"),
                "_resource": provider.resource,
                "_events": (),
                "_links": (),
                "_status": _UNSET,
                # A lean span is its own SpanContext (see _SPAN_FIELDS).
                "_context": property(_itself),
                "context": property(_itself),
                "get_span_context": _itself,
                "is_remote": False,
                "is_valid": True,
                # Made by a type call (cheaper than object.__new__), fields set by ``start``.
                "__init__": object.__init__,
                # The SDK's own code (to_json, say) reads the private names.
                **{f"_{name}": property(attrgetter(name)) for name in _PUBLIC_FIELDS},
            },
        )
        generator = provider.id_generator
        #: The SDK's default ids (what RandomIdGenerator does), drawn inline in ``start``.
        self.random_ids = type(generator) is RandomIdGenerator
        root = parent_based_root(self.sampler)
        self.default_sampling = self.sampler is ALWAYS_ON or root is ALWAYS_ON
        bound = ratio_bound(root) if self.random_ids else None
        #: With ParentBased(TraceIdRatioBased): the root decisions, and the span of an
        #: exchange not sampled (see eip._span_sampling); else None.
        self.roots = None if bound is None else RatioRoots(bound)
        self.unsampled: type[Any] | None = None
        if self.roots is not None:
            self.unsampled = unsampled_type(self.roots)
        self._trace_id: Callable[[], int] = generator.generate_trace_id
        self._span_id: Callable[[], int] = generator.generate_span_id
        self.start: Callable[[str, Any, SpanKind, dict[str, Any]], Any] = self._start
        self.end: Callable[[Any], None] = (
            _ender(self.on_end) if batcher is None else _batch_ender(batcher)
        )
        if self.random_ids and (self.default_sampling or self.roots is not None):
            self.start = _fast_starter(self.span_type, self._start, self.roots, self.unsampled)

    def _start(self, name: str, parent: Any, kind: SpanKind, attributes: dict[str, Any]) -> Any:
        parent_context: SpanContext | None = None
        if parent is None:
            pass
        elif parent.__class__ is self.span_type:
            # One of ours (the route span of a send, say): its own context, valid, flagged
            # with _SAMPLED or _NOT_SAMPLED.
            parent_context = parent
        else:
            parent_context = parent.get_span_context()
            if parent_context is not None and not parent_context.is_valid:
                parent_context = None
        if parent_context is None:
            trace_id = (getrandbits(128) or 1) if self.random_ids else self._trace_id()
            sampled = True
            trace_state = None
        elif parent_context.__class__ is self.span_type:
            trace_id = parent_context.trace_id
            flags = parent_context.trace_flags
            sampled = flags is _SAMPLED
            trace_state = parent_context.trace_state
        elif parent_context.__class__ is SpanContext:
            # A SpanContext is a tuple: (trace_id, span_id, is_remote, flags, state, is_valid).
            trace_id = parent_context[0]
            flags = parent_context[3]
            sampled = flags is _SAMPLED or (flags is not _NOT_SAMPLED and flags.sampled)
            trace_state = parent_context[4]
        else:
            trace_id = parent_context.trace_id
            sampled = parent_context.trace_flags.sampled
            trace_state = parent_context.trace_state
        if not self.default_sampling:
            decision = self.sampler.should_sample(
                otel_parent(parent), trace_id, name, kind, attributes
            )
            sampled = decision.decision.is_sampled()
            if decision.attributes:
                attributes = {**attributes, **decision.attributes}
            trace_state = decision.trace_state
        flags = _SAMPLED if sampled else _NOT_SAMPLED
        span_id = (getrandbits(64) or 1) if self.random_ids else self._span_id()
        # SpanContext.__new__ only validates ids we know to be valid: build the tuple directly.
        if trace_state is not _EMPTY_STATE:  # (a TraceState's truth is a Python __len__)
            trace_state = trace_state or _EMPTY_STATE
        # The span type's __init__ is object.__init__ (no Python call): these are its only
        # fields, the constant ones are class attributes of the span type.
        span = self.span_type()
        span.name = name
        span.trace_id = trace_id
        span.span_id = span_id
        span.trace_flags = flags
        span.trace_state = trace_state
        span.parent = parent_context
        span.kind = kind
        span._attributes = attributes
        span.end_time = None
        span.start_time = time_ns()
        return span

    @staticmethod
    def annotate(span: Any, attributes: dict[str, Any], error: str | None = None) -> None:
        """Add attributes (and an error status) to a span that has not ended yet; ``start``
        was given a dict of the caller's own, which the span keeps. Not kept on a span that
        is not sampled (it is never exported)."""
        if span.trace_flags is not _SAMPLED:
            return
        span._attributes.update(attributes)
        if error is not None:
            span._status = Status(StatusCode.ERROR, error)

    def fail(self, span: Any, exc: BaseException) -> None:
        from opentelemetry.sdk.trace import Event

        if span.trace_flags is not _SAMPLED:
            return  # never exported: no status, no stack trace formatted
        description = f"{type(exc).__name__}: {exc}"
        span._status = Status(StatusCode.ERROR, description)
        span._events = (
            Event(
                "exception",
                {
                    "exception.type": f"{type(exc).__module__}.{type(exc).__qualname__}",
                    "exception.message": str(exc),
                    "exception.stacktrace": "".join(traceback.format_exception(exc)),
                    "exception.escaped": "False",  # as the SDK's record_exception has it
                },
            ),
        )
        self.end(span)


def _fast_starter(
    span_type: type[Any],
    general: Callable[..., Any],
    roots: RatioRoots | None,
    unsampled: Any,
) -> Callable[..., Any]:
    """``start`` for the SDK's default ids and a parent-based sampler that samples every root
    (the default) or a ratio of them (``roots``), as a closure over what it needs: a root span
    or a child of one of ours takes the few steps that matter (a child follows its parent, ids
    drawn at random); any other parent goes the general way. An unsampled root is an
    ``unsampled`` span, and its children are that same span."""

    def start(name: str, parent: Any, kind: SpanKind, attributes: dict[str, Any]) -> Any:
        if parent is None:
            if roots is None:
                trace_id = getrandbits(128) or 1
            elif roots.left > 0:
                roots.left -= 1
                return unsampled()
            else:
                trace_id = roots.sampled()
                if not trace_id:
                    return unsampled()
            span = span_type()
            span.trace_id = trace_id
            span.trace_flags = _SAMPLED
            span.trace_state = _EMPTY_STATE
            span.parent = None
        elif parent.__class__ is span_type:
            span = span_type()
            # One of ours: valid ids, flagged _SAMPLED or _NOT_SAMPLED, a normalised state.
            span.trace_id = parent.trace_id
            span.trace_flags = parent.trace_flags
            span.trace_state = parent.trace_state
            span.parent = parent
        elif parent.__class__ is unsampled:
            return parent
        else:
            return general(name, parent, kind, attributes)
        span.span_id = getrandbits(64) or 1
        span.name = name
        span.kind = kind
        span._attributes = attributes
        span.end_time = None
        span.start_time = time_ns()
        return span

    return start


def _ender(on_end: Callable[[Any], None]) -> Callable[[Any], None]:
    def end(span: Any) -> None:
        if span.trace_flags is _SAMPLED:  # every start flags its span _SAMPLED or not
            span.end_time = time_ns()
            on_end(span)

    return end


def _feedable(batcher: Any) -> bool:
    """Whether ``batcher`` is the SDK's BatchProcessor as _batch_ender knows it."""
    names = ("_queue", "_worker_awaken", "_max_export_batch_size", "_shutdown", "_pid", "emit")
    if not all(hasattr(batcher, name) for name in names):
        return False
    queue = batcher._queue
    return (
        isinstance(queue, collections.deque)
        and queue.maxlen is not None
        and isinstance(batcher._worker_awaken, threading.Event)
        and isinstance(batcher._max_export_batch_size, int)
    )


def _batch_ender(batcher: Any) -> Callable[[Any], None]:
    """``end`` for the SDK's BatchSpanProcessor: most spans go straight onto the batcher's
    queue (a deque, safe across threads; one C call), not through ``emit`` (a process id,
    the shutdown flag, the queue's length twice and the worker's event per span, ~0.3 µs).

    ``emit`` still takes one span in a stretch, and the stretch after it is only as long as
    ``emit`` itself would not have to act: up to the queue length at which it wakes the
    worker (a batch), and short of a full queue (which it reports). So the worker is woken
    at the same queue length, a full queue, a shutdown or a fork are still seen by ``emit``
    (a fork within one stretch: the SDK re-creates the queue in the child itself), and no
    span is dropped that ``emit`` would have kept."""
    queue = batcher._queue
    append = queue.appendleft
    emit = batcher.emit
    awaken = batcher._worker_awaken
    batch: int = max(1, batcher._max_export_batch_size)
    capacity: int = queue.maxlen
    room = 0

    def stretch() -> int:
        if batcher._shutdown or batcher._pid != os.getpid():
            return 0
        queued = len(queue)
        if queued >= batch:
            if not awaken.is_set():  # cleared by the worker since ``emit`` set it
                awaken.set()
            return min(batch, capacity - queued - 1)
        return min(batch - queued, capacity - queued - 1)

    def end(span: Any) -> None:
        nonlocal room
        if span.trace_flags is _SAMPLED:  # every start flags its span _SAMPLED or not
            span.end_time = time_ns()
            if room > 0:
                room -= 1
                append(span)
            else:
                emit(span)
                room = stretch()

    return end


def _itself(span: Any) -> Any:
    return span


#: What each lean span sets (slots; the constant fields are class attributes). A lean span
#: is its own SpanContext: its context (and a child's parent) is the span, which has what a
#: SpanContext has (trace_id, span_id, trace_flags, trace_state, is_remote, is_valid). A
#: SpanContext per span (a tuple subclass: ~0.2 µs to make, and a second object per span for
#: the garbage collector) was a fifth of what a span cost.
#: The fields an exporter reads through ReadableSpan's properties (name, parent, kind, start
#: and end time: a Python call each) are slots under the public names, read in C.
_PUBLIC_FIELDS = ("name", "parent", "kind", "start_time", "end_time")
_SPAN_FIELDS = (
    *_PUBLIC_FIELDS,
    "trace_id",
    "span_id",
    "trace_flags",
    "trace_state",
    "_attributes",
)
getrandbits = random.getrandbits
time_ns = time.time_ns
_SAMPLED = SAMPLED
_NOT_SAMPLED = NOT_SAMPLED
_EMPTY_STATE = EMPTY_STATE
_UNSET = Status(StatusCode.UNSET)


def spans_for(provider: trace.TracerProvider) -> _ApiSpans | _LeanSpans:
    try:
        from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
    except ImportError:  # pragma: no cover - the SDK is an optional dependency
        return _ApiSpans(provider)
    required = ("_active_span_processor", "resource", "sampler", "id_generator")
    if type(provider) is SdkTracerProvider and all(hasattr(provider, a) for a in required):
        return _LeanSpans(provider)
    return _ApiSpans(provider)
