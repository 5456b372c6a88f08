"""The HTTP producer: one pooled client per endpoint, on eip's lean aiohttp path by default
(or httpx's client: :mod:`eip.components.http.calls` says why and when).

The request: method from ``eip.http.request.method``, else the endpoint's ``method``, else POST
when there is a body and GET when there is none; the URL is the endpoint's, or
``eip.http.request.url``, plus ``eip.http.request.path`` appended and ``eip.http.request.query``
(a str or dict) added. The body: bytes as they are, ``str`` as UTF-8, anything else (a Struct,
a dict) as JSON. Content type: the endpoint's ``content_type``, else the exchange's
``content-type`` header, else what the body is. Headers named in ``copy_headers`` are
forwarded, nothing else; then authentication and ``traceparent``.

The reply: the body becomes the response's bytes; ``eip.http.response.status`` and
``content-type`` are set, and the response headers are in the ``eip.http.response.headers``
property. Status >= 400 raises :class:`~eip.errors.HttpOperationFailed`
(``throw_on_failure=false`` keeps the response instead), so redelivery and dead letters apply.

**Timeouts really apply**: ``timeout`` bounds the whole call (connect, send, wait, read the
body) with one deadline, not per socket read (which a server dribbling bytes can stretch for
ever), and a time-out raises :class:`~eip.errors.ExchangeTimeoutError` naming the URL.
"""

from __future__ import annotations

import base64
import fnmatch
import logging
import urllib.parse
from typing import TYPE_CHECKING, Any

from eip import headers as H
from eip.components.base import Producer
from eip.components.http.binding import encode_reply
from eip.components.http.calls import Calls, calls_for
from eip.components.http.spec import HttpClientSpec
from eip.components.http.tracing import ClientSpans
from eip.errors import HttpOperationFailed, redact_uri
from eip.message import Exchange
from eip.tracing import inject_span

if TYPE_CHECKING:
    from eip.components.http import HttpComponent

__all__ = ["HttpProducer"]

log = logging.getLogger("eip.http")


class HttpProducer(Producer):
    #: This producer opens its own CLIENT span; the generic send span would only repeat it.
    traces_itself = True

    def __init__(self, component: HttpComponent, spec: HttpClientSpec) -> None:
        self.component = component
        self.spec = spec
        parts = urllib.parse.urlsplit(spec.url)
        # Credentials in the URL are sent as basic auth, to the URL without them: they then
        # never reach an error message, a span or a log line.
        self._url_auth = _basic(parts.username, parts.password) if parts.username else None
        if self._url_auth is not None:
            parts = parts._replace(netloc=parts.netloc.rpartition("@")[2])
        self.url = urllib.parse.urlunsplit(parts)
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.calls: Calls = calls_for(spec, redact_uri(self.url))
        self._auth_header: tuple[str, str] | None = None
        self._copy = [p.lower() for p in spec.copy_headers]
        self._spans: ClientSpans | None = None

    async def start(self) -> None:
        self._auth_header = _auth_header(self.spec) or self._url_auth
        await self.calls.start()
        tracing = self.component.context.tracing
        self._spans = ClientSpans(tracing, self.host, self.port) if tracing.enabled else None

    async def stop(self) -> None:
        await self.calls.stop()

    def process(self, exchange: Exchange) -> Any:
        return self._call(exchange)

    async def _call(self, exchange: Exchange) -> None:
        method, url, headers, content = self._request(exchange)
        spans = self._spans
        if spans is None:
            status, reply_headers, data = await self.calls.call(method, url, headers, content)
        else:
            span = spans.start(exchange, method, url)
            inject_span(span, headers)
            try:
                status, reply_headers, data = await self.calls.call(method, url, headers, content)
            except Exception as exc:
                spans.fail(span, exc)
                raise
            spans.finish(span, status)
        out = exchange.headers
        out[H.HTTP_RESPONSE_STATUS] = status
        content_type = reply_headers.get("content-type")
        if content_type is not None:
            out["content-type"] = content_type
        exchange.properties[H.HTTP_RESPONSE_HEADERS] = reply_headers
        if status >= 400 and self.spec.throw_on_failure:
            raise HttpOperationFailed(method, url, status, data, dict(reply_headers))
        exchange.body = data

    def _request(self, exchange: Exchange) -> tuple[str, str, dict[str, str], bytes | None]:
        spec = self.spec
        source = exchange.headers
        body = exchange.body
        content: bytes | None = None
        headers: dict[str, str] = {}
        if body is not None:
            given = spec.content_type or source.get("content-type") or source.get("Content-Type")
            content, content_type = encode_reply(body, given)
            if content_type:
                headers["content-type"] = content_type
        method = (
            source.get(H.HTTP_REQUEST_METHOD)
            or spec.method
            or ("POST" if content is not None else "GET")
        )
        url = source.get(H.HTTP_REQUEST_URL) or self.url
        extra_path = source.get(H.HTTP_REQUEST_PATH)
        if extra_path:
            url = _join(url, str(extra_path))
        query = source.get(H.HTTP_REQUEST_QUERY)
        if query:
            text = query if isinstance(query, str) else urllib.parse.urlencode(query, doseq=True)
            url = f"{url}{'&' if '?' in url else '?'}{text}"
        if self._copy:
            for name, value in source.items():
                lower = name.lower()
                if not lower.startswith("eip.") and any(
                    fnmatch.fnmatchcase(lower, p) for p in self._copy
                ):
                    headers[lower] = str(value)
        if self._auth_header is not None:
            headers[self._auth_header[0]] = self._auth_header[1]
        return method.upper(), url, headers, content


def _join(url: str, path: str) -> str:
    base, sep, query = url.partition("?")
    joined = base.rstrip("/") + "/" + urllib.parse.quote(path.lstrip("/"), safe="/:@!$&'()*+,;=")
    return joined + sep + query


def _basic(username: str, password: str | None) -> tuple[str, str]:
    user, secret = urllib.parse.unquote(username), urllib.parse.unquote(password or "")
    token = base64.b64encode(f"{user}:{secret}".encode()).decode("ascii")
    return "authorization", f"Basic {token}"


def _auth_header(spec: HttpClientSpec) -> tuple[str, str] | None:
    if spec.auth == "none":
        return None
    secret = spec.resolved_secret()
    if spec.auth == "basic":
        return _basic(spec.username, secret)
    if spec.auth == "bearer":
        return "authorization", f"Bearer {secret}"
    return spec.auth_header.lower(), secret
