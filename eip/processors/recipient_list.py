"""Recipient list: a multicast whose outputs an expression names, per message.

- The expression (sync or async) gives a str, split at ``delimiter`` (blanks are skipped), an
  endpoint spec, or an iterable of str/spec items (not split further). None or nothing means no
  recipients: the exchange continues unchanged.
- Endpoints are resolved at runtime through the context, seen as an
  :class:`~eip.endpoint.EndpointResolver` (``await context.producer(ref)``, which starts the
  producer on first use). Each recipient becomes a one-step pipeline with the route's error
  handling, so a failing recipient is redelivered on its own, as in Camel.
  Recipients are cached per endpoint ref (least recently used out, up to ``cache_size``): a
  cache hit is a dict lookup, so a route whose recipients repeat stays on the sync path.
- An endpoint that cannot be resolved (unknown scheme, bad option, not an endpoint at all)
  fails the exchange with :class:`ResolveEndpointError`; with ``ignore_invalid_endpoints`` it
  is skipped and logged once while it stays in the cache.
- Sending, aggregation, failures and timeouts are the multicast's
  (:mod:`eip.processors.multicast`).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from eip._callables import is_async_callable
from eip.endpoint import EndpointRef, EndpointResolver, EndpointSpec, endpoint_text
from eip.errors import ResolveEndpointError, RouteDefinitionError
from eip.message import Exchange
from eip.processors.base import Step, unwrap
from eip.processors.multicast import Multicast
from eip.processors.pipeline import Pipeline

if TYPE_CHECKING:
    from eip.processors.error_handler import ErrorHandling

__all__ = ["RecipientList", "ResolveEndpointError"]

log = logging.getLogger("eip.recipient_list")

_Entry = tuple[Step, str] | None  # None: an invalid endpoint that is ignored


class RecipientList:
    """Resolves the recipients of an exchange, then multicasts to them; ``step`` is the step."""

    def __init__(
        self,
        expression: Callable[[Exchange], Any],
        engine: Multicast,
        *,
        context: EndpointResolver,
        errors: ErrorHandling,
        delimiter: str = ",",
        ignore_invalid_endpoints: bool = False,
        cache_size: int = 100,
    ) -> None:
        if not delimiter:
            raise ValueError("delimiter must not be empty")
        if cache_size < 1:
            raise ValueError(f"cache_size must be >= 1, got {cache_size}")
        self.engine = engine
        self.context = context
        self.errors = errors
        self.delimiter = delimiter
        self.ignore_invalid_endpoints = ignore_invalid_endpoints
        self.cache_size = cache_size
        self._expression = unwrap(expression)
        self._cache: OrderedDict[EndpointRef, _Entry] = OrderedDict()
        self.step: Step = self._process_async if is_async_callable(expression) else self.process

    def process(self, exchange: Exchange) -> Any:
        return self._send(exchange, self._refs(self._expression(exchange)))

    async def _process_async(self, exchange: Exchange) -> None:
        result = self._send(exchange, self._refs(await self._expression(exchange)))
        if result is not None:
            await result

    def _send(self, exchange: Exchange, refs: list[EndpointRef]) -> Any:
        outputs: list[Step] = []
        labels: list[str] = []
        cache = self._cache
        for ref in refs:
            try:
                entry = cache[ref]
            except KeyError:
                return self._resolve_and_send(exchange, refs)
            cache.move_to_end(ref)
            if entry is not None:
                outputs.append(entry[0])
                labels.append(entry[1])
        return self.engine.send(exchange, outputs, labels) if outputs else None

    async def _resolve_and_send(self, exchange: Exchange, refs: list[EndpointRef]) -> None:
        outputs: list[Step] = []
        labels: list[str] = []
        for ref in refs:
            try:
                entry = self._cache[ref]
            except KeyError:
                entry = await self._resolve(ref)
            if entry is not None:
                outputs.append(entry[0])
                labels.append(entry[1])
        result = self.engine.send(exchange, outputs, labels) if outputs else None
        if result is not None:
            await result

    async def _resolve(self, ref: EndpointRef) -> _Entry:
        text = endpoint_text(ref)
        entry: _Entry = None
        try:
            producer = await self.context.producer(ref)
        except RouteDefinitionError as exc:
            if not self.ignore_invalid_endpoints:
                raise ResolveEndpointError(
                    f"recipient '{text}' is not a valid endpoint: {exc}", endpoint=text
                ) from exc
            log.warning("%s: ignoring invalid recipient '%s': %s", self.engine.name, text, exc)
        else:
            send: Step = producer.process
            if self.context.tracing.enabled:
                send = self.context.tracing.traced_send(send, text)
            entry = (Pipeline([send], [text], self.errors, f"{self.engine.name}>{text}").run, text)
        self._cache[ref] = entry
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return entry

    def _refs(self, value: Any) -> list[EndpointRef]:
        """The endpoint refs named by the expression's value."""
        if value is None:
            return []
        if isinstance(value, str):
            return [part for part in map(str.strip, value.split(self.delimiter)) if part]
        if isinstance(value, EndpointSpec):
            return [value]
        if not isinstance(value, Iterable) or isinstance(value, bytes | bytearray | dict):
            return self._invalid(value, [])
        refs: list[EndpointRef] = []
        for item in value:
            if isinstance(item, str):
                item = item.strip()
                if item:
                    refs.append(item)
            elif isinstance(item, EndpointSpec):
                refs.append(item)
            else:
                self._invalid(item, refs)
        return refs

    def _invalid(self, value: Any, refs: list[EndpointRef]) -> list[EndpointRef]:
        if not self.ignore_invalid_endpoints:
            raise ResolveEndpointError(
                f"{self.engine.name}: expected endpoint URIs or specs, got "
                f"{type(value).__name__} {value!r:.60}"
            )
        return refs
