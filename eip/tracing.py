"""OpenTelemetry tracing built into the engine.

One span per route execution and one child span per endpoint send; not one per step, because
a span costs more than a whole message through a pipeline (see ``benchmarks/README.md``).

The trace context travels on the exchange (``exchange.trace_context`` holds the current span),
not in a context variable: exchanges interleave on one event loop, and a seda hop or a
``direct:`` call must parent the next route's span correctly. Transports inject and extract
W3C ``traceparent`` with :func:`inject` and :func:`extract`.

Whether tracing is on is decided once, when the context starts: with no SDK tracer provider
configured, routes are compiled without any tracing code and the cost is zero. Configure your
``TracerProvider`` before starting the context.

**The lean span path.** With the OpenTelemetry SDK's ``TracerProvider``, eip does not go through
``Tracer.start_span`` (about 19 µs per span here: locks, bounded attribute maps, the sampler
and context plumbing). It builds its spans directly as SDK ``ReadableSpan`` objects, using the
provider's id generator, resource and sampler (with a fast path for the default
parent-based always-on sampler), and hands each finished span to the provider's span
processors' ``on_end``, exactly what the SDK itself does at ``span.end()``. What is left out:
``on_start`` is not called (the SDK's batch and simple processors do nothing there), and span
limits are not applied (eip's spans carry three or four attributes). Any other tracer provider
goes through the plain OpenTelemetry API.
"""

from __future__ import annotations

import random
import time
import traceback
from collections.abc import Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagate import get_global_textmap
from opentelemetry.trace import (
    ProxyTracerProvider,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)

from eip.message import Exchange
from eip.processors.base import STOP, Step, with_inline

if TYPE_CHECKING:
    from eip.runtime.route import Route

__all__ = ["InlineTrace", "Tracing", "extract", "inject", "inject_span"]

_ROOT = otel_context.Context()


def _parent_context(parent: Any) -> otel_context.Context:
    if parent is None:
        return _ROOT
    if not isinstance(parent, trace.Span):
        # eip's lean spans are SDK ReadableSpans, not API Spans: the API (propagators,
        # samplers) only sees spans through get_current_span, which wants a Span.
        parent = trace.NonRecordingSpan(parent.get_span_context())
    return trace.set_span_in_context(parent, _ROOT)


def inject(exchange: Exchange, carrier: MutableMapping[str, Any]) -> None:
    """Write the exchange's trace context (``traceparent``/``tracestate``) into ``carrier``."""
    inject_span(exchange.trace_context, carrier)


def inject_span(span: Any, carrier: MutableMapping[str, Any]) -> None:
    """Write ``span``'s context into ``carrier`` (a transport's own client span, say)."""
    if span is not None:
        get_global_textmap().inject(carrier, context=_parent_context(span))


def extract(carrier: Any) -> Any:
    """Read a remote span context from ``carrier`` headers; None when there is none."""
    ctx = get_global_textmap().extract(carrier, context=_ROOT)
    span = trace.get_current_span(ctx)
    return span if span.get_span_context().is_valid else None


class _ApiSpans:
    """Spans through the plain OpenTelemetry API (any tracer provider)."""

    def __init__(self, provider: trace.TracerProvider) -> None:
        self.tracer = provider.get_tracer("eip")

    def start(self, name: str, parent: Any, kind: SpanKind, attributes: dict[str, Any]) -> Any:
        return self.tracer.start_span(
            name, context=_parent_context(parent), kind=kind, attributes=attributes
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
        from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope

        processor = provider._active_span_processor
        # One processor (the usual case): call it directly, not through the multiplexer.
        processors = getattr(processor, "_span_processors", None)
        if isinstance(processors, tuple) and len(processors) == 1:
            processor = processors[0]
        self.on_end: Callable[[Any], None] = processor.on_end
        # The batch processor's on_end checks that the span is sampled (``end`` did) and
        # hands it to its queue: call the queue's ``emit`` directly (five property reads and
        # a call less per span).
        emit = getattr(getattr(processor, "_batch_processor", None), "emit", None)
        if type(processor) is BatchSpanProcessor and callable(emit):
            self.on_end = emit
        self.sampler = provider.sampler
        # A ReadableSpan subclass whose constant fields are class attributes: a span then costs
        # six attribute stores instead of ReadableSpan.__init__'s keyword call.
        self.span_type: type[Any] = type(
            "EipSpan",
            (ReadableSpan,),
            {
                "_instrumentation_info": None,
                "_instrumentation_scope": InstrumentationScope("eip"),
                "_resource": provider.resource,
                "_end_time": None,
                "_events": (),
                "_links": (),
                "_status": _UNSET,
                "__init__": _span_init,
            },
        )
        self.default_sampling = self.sampler is ALWAYS_ON or (
            isinstance(self.sampler, ParentBased)
            and type(self.sampler) is ParentBased
            and self.sampler._root is ALWAYS_ON
            and self.sampler._local_parent_sampled is ALWAYS_ON
            and self.sampler._remote_parent_sampled is ALWAYS_ON
        )
        generator = provider.id_generator
        #: The SDK's default ids (what RandomIdGenerator does), drawn inline in ``start``.
        self.random_ids = type(generator) is RandomIdGenerator
        self._trace_id: Callable[[], int] = generator.generate_trace_id
        self._span_id: Callable[[], int] = generator.generate_span_id
        self.start: Callable[[str, Any, SpanKind, dict[str, Any]], Any] = self._start
        self.end: Callable[[Any], None] = _ender(self.on_end)
        if self.default_sampling and self.random_ids:
            self.start = _fast_starter(self.span_type, self._start)

    def _start(self, name: str, parent: Any, kind: SpanKind, attributes: dict[str, Any]) -> Any:
        parent_context: SpanContext | None = None
        if parent is None:
            pass
        elif parent.__class__ is self.span_type:
            # One of ours (the route span of a send, say): its context is a SpanContext that
            # ``start`` built, valid and flagged with _SAMPLED or _NOT_SAMPLED.
            parent_context = parent._context
        else:
            parent_context = parent.get_span_context()
            if parent_context is not None and not parent_context.is_valid:
                parent_context = None
        if parent_context is None:
            trace_id = (getrandbits(128) or 1) if self.random_ids else self._trace_id()
            sampled = True
            trace_state = None
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
                _parent_context(parent), trace_id, name, kind, attributes
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
        context = tuple.__new__(SpanContext, (trace_id, span_id, False, flags, trace_state, True))
        # What _span_init does, without a Python __init__ call: the constant fields are class
        # attributes of the span type.
        span = _new(self.span_type)
        span._name = name
        span._context = context
        span._kind = kind
        span._parent = parent_context
        span._attributes = attributes
        span._start_time = time_ns()
        return span

    @staticmethod
    def annotate(span: Any, attributes: dict[str, Any], error: str | None = None) -> None:
        """Add attributes (and an error status) to a span that has not ended yet; ``start``
        was given a dict of the caller's own, which the span keeps."""
        span._attributes.update(attributes)
        if error is not None:
            span._status = Status(StatusCode.ERROR, error)

    def fail(self, span: Any, exc: BaseException) -> None:
        from opentelemetry.sdk.trace import Event

        description = f"{type(exc).__name__}: {exc}"
        span._status = Status(StatusCode.ERROR, description)
        span._events = (
            Event(
                "exception",
                {
                    "exception.type": f"{type(exc).__module__}.{type(exc).__qualname__}",
                    "exception.message": str(exc),
                    "exception.stacktrace": "".join(traceback.format_exception(exc)),
                },
            ),
        )
        self.end(span)


def _fast_starter(span_type: type[Any], general: Callable[..., Any]) -> Callable[..., Any]:
    """``start`` for the default sampler and ids (the usual SDK set-up), as a closure over
    what it needs: a root span or a child of one of ours takes the few steps that matter
    (sampled follows the parent, ids drawn at random); any other parent goes the general way."""
    new_context = tuple.__new__
    span_context = SpanContext

    def start(name: str, parent: Any, kind: SpanKind, attributes: dict[str, Any]) -> Any:
        if parent is None:
            parent_context = None
            trace_id = getrandbits(128) or 1
            flags = _SAMPLED
            state = _EMPTY_STATE
        elif parent.__class__ is span_type:
            # One of ours: its context is a valid SpanContext that a start built, flagged
            # _SAMPLED or _NOT_SAMPLED, with a TraceState already normalised.
            parent_context = parent._context
            trace_id = parent_context[0]
            flags = parent_context[3]
            state = parent_context[4]
        else:
            return general(name, parent, kind, attributes)
        span = _new(span_type)
        span._name = name
        span._context = new_context(
            span_context, (trace_id, getrandbits(64) or 1, False, flags, state, True)
        )
        span._kind = kind
        span._parent = parent_context
        span._attributes = attributes
        span._start_time = time_ns()
        return span

    return start


def _ender(on_end: Callable[[Any], None]) -> Callable[[Any], None]:
    def end(span: Any) -> None:
        span._end_time = time_ns()
        if span._context[3] is _SAMPLED:  # every start flags its span _SAMPLED or not
            on_end(span)

    return end


def _span_init(self: Any, name: str, context: Any, kind: Any, parent: Any, attributes: Any) -> None:
    self._name = name
    self._context = context
    self._kind = kind
    self._parent = parent
    self._attributes = attributes
    self._start_time = time.time_ns()


_new = object.__new__
getrandbits = random.getrandbits
time_ns = time.time_ns
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_NOT_SAMPLED = TraceFlags(TraceFlags.DEFAULT)
_EMPTY_STATE = trace.TraceState()
_UNSET = Status(StatusCode.UNSET)


def _spans_for(provider: trace.TracerProvider) -> _ApiSpans | _LeanSpans:
    try:
        from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
    except ImportError:  # pragma: no cover - the SDK is an optional dependency
        return _ApiSpans(provider)
    required = ("_active_span_processor", "resource", "sampler", "id_generator")
    if type(provider) is SdkTracerProvider and all(hasattr(provider, a) for a in required):
        return _LeanSpans(provider)
    return _ApiSpans(provider)


class InlineTrace:
    """A route span as source lines for the route's generated dispatch (see
    :meth:`eip.runtime.route.Route.trace_inline`), doing what the dispatch wrapper of
    :meth:`Tracing.traced_dispatch` does: start the span in the prologue, end it on a
    synchronous return (``final``), fail it on an exception (``failed``), and hand a
    suspended exchange's span to ``wrap(exchange, span, parent, pending)``."""

    __slots__ = ("failed", "final", "prologue", "slow_args", "values", "wrap")

    def __init__(
        self,
        *,
        prologue: list[str],
        final: list[str],
        failed: list[str],
        values: dict[str, Any],
        slow_args: str,
        wrap: Callable[[Exchange, Any, Any, Any], Any],
    ) -> None:
        self.prologue = prologue
        self.final = final
        self.failed = failed
        self.values = values
        self.slow_args = slow_args
        self.wrap = wrap


class Tracing:
    """The context's tracer, or nothing at all when no SDK is configured."""

    def __init__(self, provider: trace.TracerProvider | None = None, enabled: bool | None = None):
        provider = provider if provider is not None else trace.get_tracer_provider()
        if enabled is None:
            enabled = not isinstance(provider, ProxyTracerProvider | trace.NoOpTracerProvider)
        if enabled and getattr(provider, "_disabled", False):
            enabled = False  # OTEL_SDK_DISABLED=true
        self.enabled = enabled
        self.spans: _ApiSpans | _LeanSpans | None = _spans_for(provider) if enabled else None

    def traced_dispatch(self, route: Route) -> Callable[[Exchange], Any]:
        """Run a route's exchanges in a span that is a child of the exchange's current span:
        inside the route's generated dispatch when it is still that (:class:`InlineTrace`),
        else wrapping whatever its dispatch is."""
        assert self.spans is not None
        start, end, fail = self.spans.start, self.spans.end, self.spans.fail
        name = route_id = route.id
        source = route.source_uri

        def wrap(exchange: Exchange, span: Any, parent: Any, pending: Any) -> Any:
            return _finish(exchange, span, parent, pending, end, fail)

        inline = InlineTrace(
            prologue=[
                "route_parent_ = ex.trace_context",
                "route_span_ = span_start_(span_name_, route_parent_, span_consumer_"
                " if route_parent_ is None else span_internal_, {"
                "'eip.route.id': span_route_, 'eip.exchange.id': ex.id, "
                "'eip.endpoint.uri': span_source_})",
                "ex.trace_context = route_span_",
            ],
            final=["span_end_(route_span_)", "ex.trace_context = route_parent_"],
            failed=["span_fail_(route_span_, raised_)", "ex.trace_context = route_parent_"],
            values={
                "span_start_": start,
                "span_end_": end,
                "span_fail_": fail,
                "span_name_": name,
                "span_route_": route_id,
                "span_source_": source,
                "span_consumer_": SpanKind.CONSUMER,
                "span_internal_": SpanKind.INTERNAL,
            },
            slow_args=", route_span_, route_parent_",
            wrap=wrap,
        )
        if route.trace_inline(inline):
            return route.dispatch
        inner = route.dispatch

        def dispatch(exchange: Exchange) -> Any:
            parent = exchange.trace_context
            span = start(
                name,
                parent,
                SpanKind.INTERNAL if parent is not None else SpanKind.CONSUMER,
                {
                    "eip.route.id": route_id,
                    "eip.exchange.id": exchange.id,
                    "eip.endpoint.uri": source,
                },
            )
            exchange.trace_context = span
            try:
                result = inner(exchange)
            except BaseException as exc:
                fail(span, exc)
                exchange.trace_context = parent
                raise
            if result is None:
                end(span)
                exchange.trace_context = parent
                return None
            return _finish(exchange, span, parent, result, end, fail)

        return dispatch

    def traced_send(self, send: Step, uri: str) -> Step:
        """Wrap an endpoint send in a child span of the route span."""
        assert self.spans is not None
        start, end, fail = self.spans.start, self.spans.end, self.spans.fail
        name = f"send {uri.split('?', 1)[0]}"
        # Exporters only read span attributes, so one dict per route id serves every span.
        attributes_by_route: dict[str | None, dict[str, Any]] = {}

        def attributes_for(exchange: Exchange) -> dict[str, Any]:
            attributes = {"eip.endpoint.uri": uri, "eip.route.id": exchange.route_id or ""}
            attributes_by_route[exchange.route_id] = attributes
            return attributes

        def traced(exchange: Exchange) -> Any:
            parent = exchange.trace_context
            attributes = attributes_by_route.get(exchange.route_id)
            if attributes is None:
                attributes = attributes_for(exchange)
            span = start(name, parent, SpanKind.PRODUCER, attributes)
            exchange.trace_context = span
            try:
                result = send(exchange)
            except BaseException as exc:
                fail(span, exc)
                exchange.trace_context = parent
                raise
            if result is None or result is STOP:
                end(span)
                exchange.trace_context = parent
                return result
            return _finish(exchange, span, parent, result, end, fail)

        # The same inline in a fused pipeline (no call of its own; see eip.processors.fuse).
        code = [
            "parent_ = ex.trace_context",
            "attrs_ = {0}.get(ex.route_id)",
            "if attrs_ is None:",
            "    attrs_ = {1}(ex)",
            "span_ = {2}({3}, parent_, {4}, attrs_)",
            "ex.trace_context = span_",
            "try:",
            "    r = {5}(ex)",
            "except BaseException as error_:",
            "    {6}(span_, error_)",
            "    ex.trace_context = parent_",
            "    raise",
            "if r is None or r is STOP:",
            "    {7}(span_)",
            "    ex.trace_context = parent_",
            "else:",
            "    r = {8}(ex, span_, parent_, r, {7}, {6})",
        ]
        values = (attributes_by_route, attributes_for, start, name, SpanKind.PRODUCER, send)
        return with_inline(traced, code, *values, fail, end, _finish, result=True)


async def _finish(
    exchange: Exchange,
    span: Any,
    parent: Any,
    pending: Any,
    end: Callable[[Any], None],
    fail: Callable[[Any, BaseException], None],
) -> Any:
    try:
        result = await pending
    except BaseException as exc:
        fail(span, exc)
        raise
    else:
        end(span)
        return result
    finally:
        exchange.trace_context = parent
