"""``to_d``: send to an endpoint computed per message (Camel's toD).

The endpoint is a URI template, formatted with the exchange's ``headers``, ``body`` and
``properties`` (``"https://erp.local/api/customers/{headers[customer_id]}"``), or an expression
of the exchange that gives a URI or a spec. Producers are resolved through the context (started
on first use) and kept per URI, least recently used out past ``cache_size``: a repeated URI is
a dict lookup and, for an in-memory endpoint, stays on the sync path.

Each distinct URI is its own endpoint, with its own producer (for HTTP, its own connection
pool). To vary only the path or query of an HTTP call, prefer a static ``to(url)`` with the
``eip.http.request.path`` / ``eip.http.request.query`` headers: one pool serves them all.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Self

from eip._callables import is_async_callable
from eip.dsl.base import StepsBase
from eip.dsl.compiler import CompileContext, register_step
from eip.dsl.model import StepDef
from eip.endpoint import EndpointResolver, EndpointSpec, Sender, endpoint_text
from eip.errors import EipError, ResolveEndpointError
from eip.message import Exchange
from eip.processors.base import Step, describe_callable

__all__ = ["DynamicSteps", "ToDynamicDef"]


@dataclass(slots=True)
class ToDynamicDef(StepDef):
    target: str | Callable[..., Any]
    cache_size: int = 100
    kind = "to_d"

    def describe(self) -> str:
        if isinstance(self.target, str):
            return f"to_d({self.target!r})"
        return f"to_d({describe_callable(self.target)})"


class DynamicSteps(StepsBase):
    def to_d(self, target: str | Callable[..., Any], *, cache_size: int = 100) -> Self:
        """Send to the endpoint a URI template or an expression names, per message."""
        return self._add(ToDynamicDef(target, cache_size))


class _Template:
    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __call__(self, exchange: Exchange) -> str:
        try:
            return self.text.format_map(
                {
                    "headers": exchange.headers,
                    "body": exchange.body,
                    "properties": exchange.properties,
                }
            )
        except (KeyError, IndexError, AttributeError, ValueError) as exc:
            raise ResolveEndpointError(
                f"cannot fill the endpoint template {self.text!r}: {type(exc).__name__}: {exc}"
            ) from exc


class _DynamicSend:
    """The compiled step: resolve, cache, send."""

    def __init__(
        self, render: Callable[[Exchange], Any], context: EndpointResolver, size: int
    ) -> None:
        self.render = render
        self.context = context
        self.size = size
        self.cache: OrderedDict[str, Sender] = OrderedDict()

    def __call__(self, exchange: Exchange) -> Any:
        ref = self.render(exchange)
        key = _key(ref)
        producer = self.cache.get(key)
        if producer is None:
            return self._resolve_and_send(ref, key, exchange)
        self.cache.move_to_end(key)
        return producer.process(exchange)

    async def _resolve_and_send(self, ref: Any, key: str, exchange: Exchange) -> None:
        if not isinstance(ref, str | EndpointSpec) or not key:
            raise ResolveEndpointError(f"to_d needs a URI or an endpoint spec, got {ref!r}")
        try:
            producer = await self.context.producer(ref)
        except EipError as exc:
            raise ResolveEndpointError(
                f"to_d: invalid endpoint {endpoint_text(ref)}: {exc}"
            ) from exc
        self.cache[key] = producer
        if len(self.cache) > self.size:
            self.cache.popitem(last=False)
        result = producer.process(exchange)
        if result is not None and hasattr(result, "__await__"):
            await result


def _key(ref: Any) -> str:
    if isinstance(ref, str):
        return ref
    if isinstance(ref, EndpointSpec):
        return ref.uri
    return ""


@register_step(ToDynamicDef)
def _compile_to_d(step: ToDynamicDef, cc: CompileContext) -> Step:
    if step.cache_size < 1:
        raise cc.error(f"to_d cache_size must be >= 1, got {step.cache_size}")
    target = step.target
    if isinstance(target, str):
        render: Callable[[Exchange], Any] = _Template(target)
    else:
        render = cc.callable_(target, "to_d expression")
        if is_async_callable(render):
            raise cc.error("to_d expressions must be plain functions (they name an endpoint)")
    return _DynamicSend(render, cc.context, step.cache_size)
