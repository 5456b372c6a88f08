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

**The lean span path.** With the OpenTelemetry SDK's ``TracerProvider``, eip builds its spans
directly as SDK ``ReadableSpan`` objects instead of going through ``Tracer.start_span`` (see
:mod:`eip.spans`); any other tracer provider goes through the plain OpenTelemetry API. With
the SDK's ``ParentBased(TraceIdRatioBased(rate))`` sampler, a route's generated dispatch
decides an exchange's root span itself (a count down, see :mod:`eip._span_sampling`) and an
exchange not sampled builds no attributes and no send spans: at 1% sampling tracing costs
about a tenth of an untraced exchange, at 100% about one and a half untraced exchanges
(``python -m benchmarks pipeline``: tracing-1pct-vs-off, tracing-on-vs-off).
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.propagate import get_global_textmap
from opentelemetry.trace import ProxyTracerProvider, SpanKind

from eip.message import Exchange, id_parts
from eip.processors.base import STOP, Step, splice_inline, with_inline
from eip.spans import ROOT, _ApiSpans, _LeanSpans, otel_parent, spans_for

if TYPE_CHECKING:
    from eip.runtime.route import Route

__all__ = ["InlineTrace", "Tracing", "extract", "inject", "inject_span"]


def inject(exchange: Exchange, carrier: MutableMapping[str, Any]) -> None:
    """Write the exchange's trace context (``traceparent``/``tracestate``) into ``carrier``."""
    inject_span(exchange.trace_context, carrier)


def inject_span(span: Any, carrier: MutableMapping[str, Any]) -> None:
    """Write ``span``'s context into ``carrier`` (a transport's own client span, say)."""
    if span is not None:
        get_global_textmap().inject(carrier, context=otel_parent(span))


def extract(carrier: Any) -> Any:
    """Read a remote span context from ``carrier`` headers; None when there is none."""
    ctx = get_global_textmap().extract(carrier, context=ROOT)
    span = trace.get_current_span(ctx)
    return span if span.get_span_context().is_valid else None


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
        self.spans: _ApiSpans | _LeanSpans | None = spans_for(provider) if enabled else None

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

        started = (
            "route_span_ = span_start_(span_name_, route_parent_, span_consumer_"
            " if route_parent_ is None else span_internal_, {"
            "'eip.route.id': span_route_, 'eip.exchange.id': route_xid_, "
            "'eip.endpoint.uri': span_source_})"
        )
        # The exchange's id, as Exchange.id makes it, without the property's call.
        starts = [
            "route_xid_ = ex._id",
            "if route_xid_ is None:",
            "    ex._id = route_xid_ = f'{span_id_prefix_}{span_ids_()}'",
            started,
        ]
        prologue = ["route_parent_ = ex.trace_context", *starts]
        id_prefix, next_id_number = id_parts()
        final = ["span_end_(route_span_)"]
        values: dict[str, Any] = {
            "span_start_": start,
            "span_end_": end,
            "span_fail_": fail,
            "span_name_": name,
            "span_route_": route_id,
            "span_source_": source,
            "span_consumer_": SpanKind.CONSUMER,
            "span_internal_": SpanKind.INTERNAL,
            "span_id_prefix_": id_prefix,
            "span_ids_": next_id_number,
        }
        unsampled = getattr(self.spans, "unsampled", None)
        if unsampled is not None:
            # Ratio sampling: an exchange not sampled takes a count down and an object (the
            # decision start itself would take, see eip._span_sampling), not a call, and no
            # attributes are built for it.
            prologue[1:] = [
                "if route_parent_ is None and span_roots_.left > 0:",
                "    span_roots_.left -= 1",
                "    route_span_ = span_unsampled_()",  # (a type call: faster than __new__)
                "elif route_parent_.__class__ is span_unsampled_:",
                "    route_span_ = route_parent_",
                "else:",
                *["    " + line for line in starts],
            ]
            final = [
                "if route_span_.__class__ is not span_unsampled_:",
                "    span_end_(route_span_)",
            ]
            values.update(
                span_roots_=self.spans.roots,  # type: ignore[union-attr]
                span_unsampled_=unsampled,
            )
        inline = InlineTrace(
            prologue=[*prologue, "ex.trace_context = route_span_"],
            final=[*final, "ex.trace_context = route_parent_"],
            failed=["span_fail_(route_span_, raised_)", "ex.trace_context = route_parent_"],
            values=values,
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
        values = [attributes_by_route, attributes_for, start, name, SpanKind.PRODUCER, send]
        values += [fail, end, _finish]
        unsampled = getattr(self.spans, "unsampled", None)
        if unsampled is not None:
            # Ratio sampling: the child of a span not sampled is that span (see start), so
            # an exchange not sampled only sends.
            code = ["if parent_.__class__ is {9}:", "    r = {5}(ex)", "else:"] + [
                "    " + line for line in code
            ]
            values.append(unsampled)
        code.insert(0, "parent_ = ex.trace_context")
        code, more = splice_inline(code, "r = {5}(ex)", send, len(values))  # a mock's count
        return with_inline(traced, code, *values, *more, result=True)


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
