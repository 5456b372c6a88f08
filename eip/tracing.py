"""OpenTelemetry tracing built into the engine.

One span per route execution and one child span per endpoint send; not one per step, because
the SDK costs 10-20 times a whole message through a pipeline (see ``benchmarks/README.md``).

The trace context travels on the exchange (``exchange.trace_context`` holds the current span),
not in a context variable: exchanges interleave on one event loop, and a seda hop or a
``direct:`` call must parent the next route's span correctly. Transports inject and extract
W3C ``traceparent`` with :func:`inject` and :func:`extract`.

Whether tracing is on is decided once, when the context starts: with no SDK tracer provider
configured, routes are compiled without any tracing code and the cost is zero. Configure your
``TracerProvider`` before starting the context.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagate import get_global_textmap
from opentelemetry.trace import ProxyTracerProvider, SpanKind, Status, StatusCode

from eip.message import Exchange
from eip.processors.base import STOP, Step

if TYPE_CHECKING:
    from eip.runtime.route import Route

__all__ = ["Tracing", "extract", "inject"]

_ROOT = otel_context.Context()


def _parent_context(parent: Any) -> otel_context.Context:
    if parent is None:
        return _ROOT
    return trace.set_span_in_context(parent, _ROOT)


def inject(exchange: Exchange, carrier: MutableMapping[str, Any]) -> None:
    """Write the exchange's trace context (``traceparent``/``tracestate``) into ``carrier``."""
    if exchange.trace_context is not None:
        get_global_textmap().inject(carrier, context=_parent_context(exchange.trace_context))


def extract(carrier: Any) -> Any:
    """Read a remote span context from ``carrier`` headers; None when there is none."""
    ctx = get_global_textmap().extract(carrier, context=_ROOT)
    span = trace.get_current_span(ctx)
    return span if span.get_span_context().is_valid else None


class Tracing:
    """The context's tracer, or nothing at all when no SDK is configured."""

    def __init__(self, provider: trace.TracerProvider | None = None, enabled: bool | None = None):
        provider = provider if provider is not None else trace.get_tracer_provider()
        if enabled is None:
            enabled = not isinstance(provider, ProxyTracerProvider | trace.NoOpTracerProvider)
        self.enabled = enabled
        self.tracer = provider.get_tracer("eip") if enabled else trace.NoOpTracer()

    def traced_dispatch(self, route: Route) -> Callable[[Exchange], Any]:
        """Wrap a route's dispatch in a span that is a child of the exchange's current span."""
        inner = route.dispatch
        tracer = self.tracer
        name = route.id
        route_id = route.id
        source = route.source_uri

        def dispatch(exchange: Exchange) -> Any:
            parent = exchange.trace_context
            span = tracer.start_span(
                name,
                context=_parent_context(parent),
                kind=SpanKind.INTERNAL if parent is not None else SpanKind.CONSUMER,
                attributes={
                    "eip.route.id": route_id,
                    "eip.exchange.id": exchange.id,
                    "eip.endpoint.uri": source,
                },
            )
            exchange.trace_context = span
            try:
                result = inner(exchange)
            except BaseException as exc:
                _end_failed(span, exc)
                exchange.trace_context = parent
                raise
            if result is None:
                span.end()
                exchange.trace_context = parent
                return None
            return _finish(exchange, span, parent, result)

        return dispatch

    def traced_send(self, send: Step, uri: str) -> Step:
        """Wrap an endpoint send in a child span of the route span."""
        tracer = self.tracer
        name = f"send {uri.split('?', 1)[0]}"

        def traced(exchange: Exchange) -> Any:
            parent = exchange.trace_context
            span = tracer.start_span(
                name,
                context=_parent_context(parent),
                kind=SpanKind.PRODUCER,
                attributes={"eip.endpoint.uri": uri, "eip.route.id": exchange.route_id or ""},
            )
            exchange.trace_context = span
            try:
                result = send(exchange)
            except BaseException as exc:
                _end_failed(span, exc)
                exchange.trace_context = parent
                raise
            if result is None or result is STOP:
                span.end()
                exchange.trace_context = parent
                return result
            return _finish(exchange, span, parent, result)

        return traced


async def _finish(exchange: Exchange, span: Any, parent: Any, pending: Any) -> Any:
    try:
        result = await pending
    except BaseException as exc:
        _end_failed(span, exc)
        raise
    else:
        span.end()
        return result
    finally:
        exchange.trace_context = parent


def _end_failed(span: Any, exc: BaseException) -> None:
    if span.is_recording():
        span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
    span.end()
