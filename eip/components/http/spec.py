"""The ``http:`` endpoint specs: a server path to consume from, a URL to call.

One scheme, two forms, told apart by the slashes (the URI forms the issue asked for):

- ``http:/api/customers?methods=POST,PUT`` (one slash): a path on eip's HTTP server, for
  ``from_``; typed form :func:`http_server`, which can also declare the body type to bind and
  the reply type (for the OpenAPI document);
- ``http://erp.local/api/customers?timeout=5`` or ``https://...`` (two slashes): a URL to call,
  for ``to``; typed form :func:`http_client`.

Everything after ``?`` is an eip option, checked strictly like every endpoint's (a typo fails
at start, it is never sent on as a query parameter). Query parameters for the called URL come
from the ``eip.http.query`` header, or are written into the URL of the typed form.

Decisions, where the issue left room:

- **Secrets never sit in a URI.** Credentials are named by environment variable
  (``credentials_env`` on the server side, ``secret_env`` on the client side); the literal
  forms exist for tests and are redacted like every URI secret.
- **No request header is forwarded by default** on the client side (``copy_headers`` lists the
  ones to forward, globs allowed): forwarding everything, as Camel does, leaks an incoming
  ``Authorization`` to the next system.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar, Literal

import msgspec

from eip.components.base import EndpointSpec
from eip.components.http.auth import AuthSpec
from eip.components.typed import make_spec, typed_spec

__all__ = [
    "AuthScheme",
    "HttpClientSpec",
    "HttpServerSpec",
    "ServedAuth",
    "http_client",
    "http_server",
]

AuthScheme = Literal["", "none", "api_key", "bearer", "jwt", "basic"]
ClientAuth = Literal["none", "basic", "bearer", "api_key"]
Pattern = Literal["in-out", "in-only"]


class ServedAuth(EndpointSpec, frozen=True):
    """The authentication options of every served endpoint (``http:/...`` and
    ``soap:/...``); see :class:`~eip.components.http.auth.AuthSpec`. ``auth=""`` inherits the
    server's, ``auth="none"`` makes the endpoint public."""

    auth: AuthScheme = ""
    auth_header: str = "x-api-key"
    credentials: str = ""
    credentials_env: str = ""
    jwt_algorithms: list[str] = msgspec.field(default_factory=lambda: ["HS256"])
    jwt_key_file: str = ""
    jwt_audience: str = ""
    jwt_issuer: str = ""
    required_scopes: list[str] = []

    def auth_spec(self) -> AuthSpec | None:
        """This endpoint's own authentication, or None to inherit the server's."""
        if not self.auth:
            return None
        return AuthSpec(
            scheme=self.auth,
            header=self.auth_header,
            credentials=self.credentials,
            credentials_env=self.credentials_env,
            jwt_algorithms=list(self.jwt_algorithms),
            jwt_key_file=self.jwt_key_file,
            jwt_audience=self.jwt_audience,
            jwt_issuer=self.jwt_issuer,
            required_scopes=list(self.required_scopes),
        )


class HttpServerSpec(ServedAuth, frozen=True, kw_only=True):
    """A path served by eip's HTTP server (see :mod:`eip.components.http.consumer`)."""

    scheme: ClassVar[str] = "http"
    path_field: ClassVar[str] = "path"

    path: str
    methods: list[str] = []
    #: Server address; empty / -1 take the component's defaults ($EIP_HTTP_HOST, $EIP_HTTP_PORT).
    host: str = ""
    port: int = -1
    #: in-out answers the exchange's message (200); in-only answers 202 with no body, once the
    #: route has completed (so the caller knows eip took responsibility for the message).
    pattern: Pattern = "in-out"
    #: The request body type (a msgspec Struct or any msgspec type), typed form only: JSON and
    #: XML bodies are decoded into it before the route runs; invalid ones get 400.
    body: Any = None
    #: The reply type, for the OpenAPI document only.
    response: Any = None
    consumes: list[Literal["json", "xml"]] = msgspec.field(default_factory=lambda: ["json", "xml"])
    max_body_size: int = -1
    response_content_type: str = ""
    #: Show the failure's type and message in 500 answers (off: internals never leak).
    expose_errors: bool = False
    openapi: bool = True
    summary: str = ""

    @property
    def uri(self) -> str:
        # Types are not URI options: name them, so logs and route listings stay readable.
        text = super(HttpServerSpec, msgspec.structs.replace(self, body=None, response=None)).uri
        for option in ("body", "response"):
            value = getattr(self, option)
            if value is not None:
                name = getattr(value, "__name__", None) or repr(value)
                text += f"{'&' if '?' in text else '?'}{option}={name}"
        return text


class HttpClientSpec(EndpointSpec, frozen=True):
    """A URL to call (see :mod:`eip.components.http.producer`)."""

    scheme: ClassVar[str] = "http"
    path_field: ClassVar[str] = "url"

    url: str
    #: The method; the ``eip.http.method`` header wins; default POST with a body, else GET.
    method: str = ""
    timeout: float = 30.0
    connect_timeout: float = 10.0
    max_connections: int = 100
    #: Raise HttpOperationFailed for status >= 400 (then redelivery and dead letter apply).
    throw_on_failure: bool = True
    follow_redirects: bool = False
    auth: ClientAuth = "none"
    username: str = ""
    secret: str = ""
    secret_env: str = ""
    auth_header: str = "X-API-Key"
    copy_headers: list[str] = []
    content_type: str = ""
    verify: bool = True
    ca_file: str = ""
    #: ``aiohttp`` (eip's lean path on an aiohttp session: the fast one, measured in
    #: benchmarks/README.md) or ``httpx`` (httpx's client and pool); see
    #: :mod:`eip.components.http.calls`.
    transport: Literal["aiohttp", "httpx"] = "aiohttp"
    #: An ``httpx.AsyncClient`` of your own (typed form only; implies the httpx path). eip
    #: does not close it.
    client: Any = None

    @property
    def uri(self) -> str:
        # The URL keeps its own scheme (http:// or https://) in the canonical form; a client
        # object is not an option, but two clients make two endpoints.
        plain = msgspec.structs.replace(self, client=None)
        text = super(HttpClientSpec, plain).uri.replace(f"http:{self.url}", self.url, 1)
        if self.client is not None:
            text += f"{'&' if '?' in text else '?'}client=httpx@{id(self.client):x}"
        return text

    def resolved_secret(self) -> str:
        """The secret for ``auth`` (read when the producer starts; never logged)."""
        if self.secret_env:
            value = os.environ.get(self.secret_env)
            if value is None:
                raise ValueError(f"secret_env '{self.secret_env}' is not set")
            return value
        return self.secret


@typed_spec(HttpServerSpec)
def http_server(path: str, **options: Any) -> HttpServerSpec:
    """Typed form of ``http:/path?...``, e.g. ``http_server("/api/customers/{id}",
    methods=["PUT"], body=Customer, response=Ack, auth="api_key",
    credentials_env="CRM_KEYS")``."""
    body, response = options.pop("body", None), options.pop("response", None)
    spec = make_spec(HttpServerSpec, {"path": path, **options})
    return msgspec.structs.replace(spec, body=body, response=response)


@typed_spec(HttpClientSpec)
def http_client(url: str, **options: Any) -> HttpClientSpec:
    """Typed form of ``https://host/path?...``; the URL may carry its own query string."""
    client = options.pop("client", None)
    spec = make_spec(HttpClientSpec, {"url": url, **options})
    return msgspec.structs.replace(spec, client=client) if client is not None else spec
