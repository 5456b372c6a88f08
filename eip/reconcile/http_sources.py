"""The HTTP source of a reconcile: GETs through one of the route's ``http:`` endpoints.

The route binds the source to its producer at compile time (:meth:`Source.bind`), so auth,
timeouts, TLS and ``{{placeholders}}`` are the endpoint's, resolved when the route starts.
Paging follows RFC 8288 ``Link: <...>; rel="next"`` headers, or counts a page parameter up
until a short page.
"""

from __future__ import annotations

import inspect
import re
import urllib.parse
from collections.abc import AsyncIterator
from typing import Any

import msgspec

from eip import headers as H
from eip.endpoint import EndpointRef, Sender, endpoint_text
from eip.message import Exchange, ExchangePattern
from eip.reconcile.base import ReconcileError
from eip.reconcile.sources import Resolve, Source, at_path
from eip.redaction import redact_uri

__all__ = ["HttpSource", "http_source", "next_link"]

_decode = msgspec.json.Decoder().decode


def next_link(value: str | None) -> str | None:
    """The target of ``rel="next"`` in an RFC 8288 ``Link`` header value, if any."""
    if not value:
        return None
    for link in _LINK.finditer(value):
        for param in link["params"].split(";"):
            name, _, rel = param.partition("=")
            if name.strip().lower() == "rel" and "next" in rel.strip().strip('"').lower().split():
                return link["target"]
    return None


_LINK = re.compile(r"<(?P<target>[^>]*)>(?P<params>[^,]*)")


class HttpSource(Source):
    """Records from an HTTP API: see :func:`http_source`."""

    def __init__(
        self,
        endpoint: EndpointRef,
        *,
        name: str,
        items: str | None,
        page_param: str | None,
        first_page: int,
        size_param: str | None,
        page_size: int | None,
        query: dict[str, Any],
        max_pages: int,
        send: Sender | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.name = name
        self.items = items
        self.page_param = page_param
        self.first_page = first_page
        self.size_param = size_param
        self.page_size = page_size
        self.query = query
        self.max_pages = max_pages
        self.send = send

    def bind(self, resolve: Resolve) -> Source:
        bound = HttpSource.__new__(HttpSource)
        bound.__dict__.update(self.__dict__)
        bound.send = resolve(self.endpoint)
        return bound

    def describe(self) -> str:
        return f"{self.name} (GET {endpoint_text(self.endpoint)})"

    async def batches(self) -> AsyncIterator[list[Any]]:
        if self.send is None:
            raise ReconcileError(
                f"source '{self.name}': an http_source is read by a route's reconcile step "
                "(which binds its endpoint), not on its own"
            )
        base = getattr(self.send, "url", None) or endpoint_text(self.endpoint)
        url: str | None = None  # None: the endpoint's own URL, with the query
        page = self.first_page
        for number in range(1, self.max_pages + 1):
            exchange = await self._get(url, page, number)
            records = self._page(exchange.body, number, url or base)
            if records:
                yield records
            headers = exchange.properties.get(H.HTTP_RESPONSE_HEADERS) or {}
            link = next_link(headers.get("link") or headers.get("Link"))
            if link:
                url = urllib.parse.urljoin(url or base, link)
                continue
            full = self.page_size is None or len(records) >= self.page_size
            if self.page_param is not None and records and full and url is None:
                page += 1
                continue
            return
        raise ReconcileError(
            f"source '{self.name}': more than max_pages={self.max_pages} pages; "
            "raise max_pages or check the paging"
        )

    async def _get(self, url: str | None, page: int, number: int) -> Exchange:
        headers: dict[str, Any] = {H.HTTP_REQUEST_METHOD: "GET"}
        if url is not None:
            headers[H.HTTP_REQUEST_URL] = url  # a next link carries its own query
        else:
            query = dict(self.query)
            if self.page_param is not None:
                query[self.page_param] = page
            if self.size_param is not None and self.page_size is not None:
                query[self.size_param] = self.page_size
            if query:
                headers[H.HTTP_REQUEST_QUERY] = query
        exchange = Exchange(None, headers, ExchangePattern.IN_OUT)
        assert self.send is not None
        try:
            result = self.send.process(exchange)
            if result is not None and inspect.isawaitable(result):
                await result
        except Exception as exc:
            raise ReconcileError(f"source '{self.name}': page {number} failed: {exc}") from exc
        return exchange

    def _page(self, body: Any, number: int, url: str) -> list[Any]:
        where = f"source '{self.name}' (page {number}, {redact_uri(url)})"
        try:
            doc = _decode(body) if isinstance(body, bytes | bytearray | memoryview | str) else body
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
            raise ReconcileError(f"{where}: the reply is not JSON: {exc}") from exc
        if self.items is not None:
            return at_path(doc, self.items, where)
        if not isinstance(doc, list):
            raise ReconcileError(
                f"{where}: the reply is a JSON {type(doc).__name__}, not an array; "
                "say items='path.to.list'"
            )
        return doc


def http_source(
    endpoint: EndpointRef,
    *,
    name: str | None = None,
    items: str | None = None,
    page_param: str | None = None,
    first_page: int = 1,
    size_param: str | None = None,
    page_size: int | None = None,
    query: dict[str, Any] | None = None,
    max_pages: int = 10_000,
) -> Source:
    """Records from GETs to an HTTP endpoint (a URI or ``http_client(...)``: auth, timeouts
    and ``{{placeholders}}`` apply; the route starts its producer). Each reply is a JSON array
    of records, or an object holding one at the dotted path ``items``.

    Paging: a reply with ``Link: <url>; rel="next"`` is followed to that URL; with
    ``page_param`` the page number (from ``first_page``) is sent and increased until a page
    comes back empty or shorter than ``page_size`` (sent as ``size_param`` when given).
    ``query`` adds fixed parameters to the first request. A failed page fails the run, naming
    the page."""
    if max_pages < 1:
        raise ValueError(f"http_source: max_pages must be >= 1, got {max_pages}")
    if page_size is not None and page_size < 1:
        raise ValueError(f"http_source: page_size must be >= 1, got {page_size}")
    return HttpSource(
        endpoint,
        name=name or _name_of(endpoint),
        items=items,
        page_param=page_param,
        first_page=first_page,
        size_param=size_param,
        page_size=page_size,
        query=dict(query or {}),
        max_pages=max_pages,
    )


def _name_of(endpoint: EndpointRef) -> str:
    text = endpoint_text(endpoint)
    path = urllib.parse.urlsplit(text).path.rstrip("/")
    return path.rpartition("/")[2] or text
