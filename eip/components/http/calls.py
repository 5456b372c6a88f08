"""The two ways the HTTP producer makes a call: eip's lean path on aiohttp, or httpx.

Measured at 50 calls in flight (benchmarks/README.md): httpx's own pool does ~0.03x the calls
of a raw aiohttp session, httpx's client on the httpx-aiohttp transport ~0.4x, and even that
transport called directly ~0.5x; httpx's per-call cost is in building its Request and Response
objects and cookie handling, not in the pool. So the default (``transport=aiohttp``) calls one
``aiohttp.ClientSession`` per endpoint directly, with plain-dict headers and the body read at
once (~0.8x raw aiohttp, the issue's target). ``transport=httpx`` keeps httpx's client, and the
typed spec's ``client=`` takes an ``httpx.AsyncClient`` of the user's own (event hooks,
proxies, ``httpx.MockTransport`` in unit tests).

Both return ``(status, headers, body)`` and raise eip errors: :class:`ExchangeTimeoutError`
when ``timeout`` (the whole call: connect, send, wait, read) ran out, :class:`EndpointError`
for everything else that kept the call from completing.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import Any

import httpx

from eip.components.http.spec import HttpClientSpec
from eip.errors import EndpointError, ExchangeTimeoutError, redact_uri

__all__ = ["AiohttpCalls", "Calls", "HttpxCalls", "calls_for"]

Result = tuple[int, Mapping[str, str], bytes]


class Calls:
    """One endpoint's connection pool."""

    def __init__(self, spec: HttpClientSpec, endpoint: str) -> None:
        self.spec = spec
        self.endpoint = endpoint
        self.timeout = spec.timeout

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def call(
        self, method: str, url: str, headers: dict[str, str], content: bytes | None
    ) -> Result:
        raise NotImplementedError

    def _timed_out(self, method: str, url: str) -> ExchangeTimeoutError:
        return ExchangeTimeoutError(
            f"{method} {redact_uri(url)} timed out after {self.timeout:g}s", endpoint=self.endpoint
        )

    def _failed(self, method: str, url: str, exc: BaseException) -> EndpointError:
        return EndpointError(
            f"{method} {redact_uri(url)} failed: {type(exc).__name__}: {exc}",
            endpoint=self.endpoint,
        )


def _ssl_context(spec: HttpClientSpec) -> ssl.SSLContext | bool:
    if spec.ca_file:
        return ssl.create_default_context(cafile=spec.ca_file)
    return ssl.create_default_context() if spec.verify else False


class AiohttpCalls(Calls):
    """eip's lean path: one aiohttp session, the whole call under one total time-out."""

    session: Any = None

    async def start(self) -> None:
        import aiohttp

        spec = self.spec
        connector = aiohttp.TCPConnector(limit=spec.max_connections, ssl=_ssl_context(spec))
        self._aiohttp = aiohttp
        self._timeout = aiohttp.ClientTimeout(total=spec.timeout, sock_connect=spec.connect_timeout)
        self.session = aiohttp.ClientSession(
            connector=connector, timeout=self._timeout, trust_env=False, cookie_jar=_NO_COOKIES()
        )

    async def stop(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None

    async def call(
        self, method: str, url: str, headers: dict[str, str], content: bytes | None
    ) -> Result:
        session = self.session
        if session is None:
            raise EndpointError(f"HTTP producer {redact_uri(url)} is not started", endpoint=url)
        try:
            async with session.request(
                method,
                url,
                data=content,
                headers=headers,
                allow_redirects=self.spec.follow_redirects,
            ) as response:
                return response.status, response.headers, await response.read()
        except TimeoutError as exc:
            raise self._timed_out(method, url) from exc
        except (self._aiohttp.ClientError, OSError, ValueError) as exc:
            raise self._failed(method, url, exc) from exc


def _NO_COOKIES() -> Any:
    """Integration calls are not a browser: a cookie jar would carry state between exchanges."""
    import aiohttp

    return aiohttp.DummyCookieJar()


class HttpxCalls(Calls):
    """httpx's client: its own pool (``transport=httpx``) or the user's ``client``."""

    client: httpx.AsyncClient | None = None

    def __init__(self, spec: HttpClientSpec, endpoint: str) -> None:
        super().__init__(spec, endpoint)
        self._owned = spec.client is None

    async def start(self) -> None:
        spec = self.spec
        if spec.client is not None:
            self.client = spec.client
            return
        limits = httpx.Limits(
            max_connections=spec.max_connections,
            max_keepalive_connections=spec.max_connections,
        )
        self.client = httpx.AsyncClient(
            verify=_ssl_context(spec),
            limits=limits,
            timeout=httpx.Timeout(spec.timeout, connect=spec.connect_timeout),
            follow_redirects=spec.follow_redirects,
            trust_env=False,
        )

    async def stop(self) -> None:
        if self.client is not None and self._owned:
            await self.client.aclose()
        self.client = None

    async def call(
        self, method: str, url: str, headers: dict[str, str], content: bytes | None
    ) -> Result:
        import asyncio

        client = self.client
        if client is None:
            raise EndpointError(f"HTTP producer {redact_uri(url)} is not started", endpoint=url)
        try:
            # httpx's timeouts are per phase (a server dribbling bytes stretches them): the
            # whole call gets one deadline on top.
            async with asyncio.timeout(self.timeout):
                response = await client.request(method, url, content=content, headers=headers)
                data = await response.aread()
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise self._timed_out(method, url) from exc
        except httpx.HTTPError as exc:
            raise self._failed(method, url, exc) from exc
        return response.status_code, response.headers, data


def calls_for(spec: HttpClientSpec, endpoint: str) -> Calls:
    if spec.client is not None or spec.transport == "httpx":
        return HttpxCalls(spec, endpoint)
    return AiohttpCalls(spec, endpoint)
