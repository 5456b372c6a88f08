"""The REST DSL: HTTP routes declared by verb and path under a base path.

::

    api = self.rest("/api", auth="api_key", credentials_env="CRM_KEYS")
    api.post("/customers", body=Customer, response=Ack).to("direct:upsert")
    api.get("/customers/{id}").to("direct:lookup")

Each verb is a route from ``http_server(base + path, methods=[VERB], ...)``; options given to
``rest`` apply to every verb under it (a verb's own options win). A route's id defaults to the
verb and path (``post-api-customers``), so OpenAPI operation ids read well; ``.route_id()``
renames it.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from eip.components.http.spec import http_server

if TYPE_CHECKING:
    from eip.dsl.builder import RouteBuilder, RouteDefinition

__all__ = ["RestBuilder"]

_NOT_WORD = re.compile(r"[^A-Za-z0-9]+")


class RestBuilder:
    def __init__(self, builder: RouteBuilder, base: str, options: dict[str, Any]) -> None:
        self.builder = builder
        self.base = "/" + base.strip("/") if base.strip("/") else ""
        self.options = options

    def verb(self, method: str, path: str = "", **options: Any) -> RouteDefinition:
        """A route serving ``method`` on ``base + path``."""
        full = self.base + ("/" + path.strip("/") if path.strip("/") else "")
        spec = http_server(full or "/", **{**self.options, **options, "methods": [method]})
        route = self.builder.from_(spec)
        slug = _NOT_WORD.sub("-", full).strip("-") or "root"
        route.route_id(f"{method.lower()}-{slug}")
        return route

    def get(self, path: str = "", **options: Any) -> RouteDefinition:
        return self.verb("GET", path, **options)

    def post(self, path: str = "", **options: Any) -> RouteDefinition:
        return self.verb("POST", path, **options)

    def put(self, path: str = "", **options: Any) -> RouteDefinition:
        return self.verb("PUT", path, **options)

    def patch(self, path: str = "", **options: Any) -> RouteDefinition:
        return self.verb("PATCH", path, **options)

    def delete(self, path: str = "", **options: Any) -> RouteDefinition:
        return self.verb("DELETE", path, **options)
