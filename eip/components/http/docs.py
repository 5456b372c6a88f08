"""The ``/openapi.json`` handler: the OpenAPI 3.1 document of one server's routes.

Built on first request from the operations every HTTP consumer on the server declares
(:meth:`eip.components.http.consumer.HttpConsumer.operations`), cached, and rebuilt after the
set of routes changes. Each consumer builds its operations when it is created, so a route whose
path or types OpenAPI cannot express fails at start, not when somebody reads the docs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from eip.components.http.openapi import OperationDoc, openapi_json
from eip.components.http.server import HttpServer, Receive, Scope, Send, respond

if TYPE_CHECKING:
    from eip.components.http import HttpComponent

__all__ = ["OpenApiHandler"]


class OpenApiHandler:
    def __init__(self, component: HttpComponent, server: HttpServer) -> None:
        self.component = component
        self.server = server
        self._document: bytes | None = None

    def invalidate(self) -> None:
        self._document = None

    def collect(self) -> list[OperationDoc]:
        found: list[OperationDoc] = []
        seen: set[int] = set()
        for entry in self.server.entries():
            for handler in [*entry.methods.values(), entry.any]:
                describe = getattr(handler, "operations", None)
                if describe is None or id(handler) in seen:
                    continue
                seen.add(id(handler))
                found.extend(describe())
        return found

    def document(self) -> bytes:
        if self._document is None:
            settings = self.component.settings
            self._document = openapi_json(
                self.collect(),
                title=settings.title,
                version=settings.api_version,
                servers=[self.server.base_url],
            )
        return self._document

    async def handle(
        self, scope: Scope, receive: Receive, send: Send, params: dict[str, Any] | None
    ) -> None:
        await respond(send, 200, self.document())
