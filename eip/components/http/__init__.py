"""``http:`` / ``https:`` - serve HTTP routes and call HTTP APIs.

See :mod:`.spec` for both endpoint forms and their options, :mod:`.server` for the shared
uvicorn server, :mod:`.consumer` for what a served route sees and answers, :mod:`.producer`
for calls, :mod:`.auth` for authentication and :mod:`.openapi` for the generated document.

Server settings are per context::

    context.component("http").configure(port=0, max_body_size=256 * 1024,
                                        auth=AuthSpec(scheme="api_key", credentials_env="KEYS"))

Every route on one host and port shares one server; the OpenAPI 3.1 document of the routes it
serves is at ``/openapi.json`` (``openapi_path``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import msgspec

from eip.components.base import (
    Component,
    Consumer,
    EndpointSpec,
    Producer,
    parse_uri,
)
from eip.components.http.auth import AuthSpec
from eip.components.http.server import HttpServer, ServerSettings
from eip.components.http.spec import HttpClientSpec, HttpServerSpec, http_client, http_server
from eip.errors import RouteDefinitionError, redact_uri

if TYPE_CHECKING:
    from eip.runtime.route import Route

__all__ = [
    "AuthSpec",
    "HttpClientSpec",
    "HttpComponent",
    "HttpServer",
    "HttpServerSpec",
    "HttpsComponent",
    "ServerSettings",
    "http_client",
    "http_server",
]


class HttpComponent(Component):
    scheme: ClassVar[str] = "http"
    spec_type: ClassVar[type[EndpointSpec]] = HttpServerSpec

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        self.settings = ServerSettings()
        self.servers: dict[tuple[str, int], HttpServer] = {}

    def configure(self, settings: ServerSettings | None = None, **options: Any) -> None:
        """Set the server settings (before the context starts); see :class:`ServerSettings`."""
        if self.servers:
            raise RouteDefinitionError("configure the HTTP servers before routes are compiled")
        base = settings if settings is not None else self.settings
        self.settings = msgspec.structs.replace(base, **options) if options else base

    # -- endpoints -------------------------------------------------------------------------
    def parse(self, uri: str) -> EndpointSpec:
        scheme, _, rest = uri.partition(":")
        if not rest.startswith("//"):
            return parse_uri(uri, HttpServerSpec)
        return parse_uri(uri, HttpClientSpec, path_value=f"{scheme}:{rest.partition('?')[0]}")

    def validate(self, spec: Any) -> None:
        if isinstance(spec, HttpServerSpec):
            _validate_server(spec)
        elif isinstance(spec, HttpClientSpec):
            _validate_client(spec)

    def create_producer(self, spec: Any) -> Producer:
        if not isinstance(spec, HttpClientSpec):
            raise RouteDefinitionError(
                f"http:{spec.path} is a path served by eip; to call an API write the URL, "
                "http://host/path"
            )
        from eip.components.http.producer import HttpProducer

        return HttpProducer(self, spec)

    def acknowledges_source(self, spec: Any) -> bool:
        """An in-only call is answered 202 when its exchange completes."""
        return isinstance(spec, HttpServerSpec) and spec.pattern == "in-only"

    def create_consumer(self, spec: Any, route: Route) -> Consumer:
        if not isinstance(spec, HttpServerSpec):
            raise RouteDefinitionError(
                f"{redact_uri(spec.url)} is a URL to call; to serve a path write http:/path"
            )
        from eip.components.http.consumer import HttpConsumer

        try:
            return HttpConsumer(self, spec, route)
        except ValueError as exc:
            raise RouteDefinitionError(str(exc), route_id=route.id, step="from") from None

    # -- servers ---------------------------------------------------------------------------
    def server_for(self, spec: HttpServerSpec) -> HttpServer:
        """The shared server of the spec's address (created on first use)."""
        return self.server_at(spec.host, spec.port)

    def server_at(self, host: str = "", port: int = -1) -> HttpServer:
        """The shared server of an address ("" and -1: the settings' defaults), created on
        first use; SOAP services share it with HTTP routes."""
        default_host, default_port = self.settings.address()
        key = (host or default_host, port if port >= 0 else default_port)
        server = self.servers.get(key)
        if server is None:
            server = self.servers[key] = HttpServer(self.settings, *key)
            server.on_change = lambda: self._document_changed(server)
            self._add_openapi(server)
        return server

    @property
    def server(self) -> HttpServer:
        """The default server (for tests: ``component.server.base_url``)."""
        host, port = self.settings.address()
        found = self.servers.get((host, port))
        if found is None:
            if len(self.servers) == 1:
                return next(iter(self.servers.values()))
            raise LookupError("no HTTP route uses the default server")
        return found

    async def stop(self) -> None:
        for server in self.servers.values():
            await server.stop()

    def _add_openapi(self, server: HttpServer) -> None:
        if not self.settings.openapi_path:
            return
        from eip.components.http.docs import OpenApiHandler

        server.add(self.settings.openapi_path, ["GET"], OpenApiHandler(self, server))

    def _document_changed(self, server: HttpServer) -> None:
        for entry in server.entries():
            handler = entry.methods.get("GET")
            if handler is not None and hasattr(handler, "invalidate"):
                handler.invalidate()


class HttpsComponent(HttpComponent):
    """``https://host/...``: calls over TLS. Serving TLS is a server setting (``ssl_*``)."""

    scheme: ClassVar[str] = "https"

    def parse(self, uri: str) -> EndpointSpec:
        if not uri.partition(":")[2].startswith("//"):
            raise RouteDefinitionError(
                f"'{redact_uri(uri)}': https: endpoints are URLs to call (https://host/path); "
                "to serve TLS, set the HTTP server's ssl_certfile and ssl_keyfile"
            )
        return super().parse(uri)


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _validate_server(spec: HttpServerSpec) -> None:
    if not spec.path.startswith("/"):
        raise ValueError(f"the path to serve must start with '/', got '{spec.path}'")
    unknown = [m for m in spec.methods if m.upper() not in _METHODS]
    if unknown:
        raise ValueError(f"unknown HTTP method(s) {', '.join(unknown)} in methods")
    if spec.port > 65535:
        raise ValueError(f"port must be 0..65535, got {spec.port}")


def _validate_client(spec: HttpClientSpec) -> None:
    import urllib.parse

    parts = urllib.parse.urlsplit(spec.url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"'{redact_uri(spec.url)}' is not an http(s):// URL with a host")
    if spec.timeout <= 0 or spec.connect_timeout <= 0:
        raise ValueError("timeout and connect_timeout must be > 0 seconds")
    if spec.max_connections < 1:
        raise ValueError(f"max_connections must be >= 1, got {spec.max_connections}")
    if spec.method and spec.method.upper() not in _METHODS:
        raise ValueError(f"unknown HTTP method '{spec.method}'")
    if spec.auth != "none":
        spec.resolved_secret()  # a missing environment variable fails at start, named
        if spec.auth == "basic" and not spec.username:
            raise ValueError("auth=basic needs a username")
