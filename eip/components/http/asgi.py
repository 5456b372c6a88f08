"""ASGI plumbing of eip's HTTP server: the ASGI callables' types, the handler protocol, path
templates (``/api/customers/{id}``) and whole-response helpers."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any, Protocol

__all__ = [
    "Handler",
    "PathEntry",
    "Receive",
    "Scope",
    "Send",
    "json_headers",
    "normalize_path",
    "respond",
]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


class Handler(Protocol):
    """Serves the requests of one path (and some methods) on a server."""

    async def handle(
        self, scope: Scope, receive: Receive, send: Send, params: dict[str, str] | None
    ) -> None: ...


class PathEntry:
    """The handlers of one path template, by method (``None``: any method)."""

    __slots__ = ("any", "methods", "names", "regex", "template")

    def __init__(self, template: str) -> None:
        self.template = template
        self.methods: dict[str, Handler] = {}
        self.any: Handler | None = None
        self.names = _PARAM.findall(template)
        self.regex: re.Pattern[str] | None = None
        if self.names:
            parts, last = [], 0
            for match in _PARAM.finditer(template):
                parts.append(re.escape(template[last : match.start()]))
                parts.append(f"(?P<{match.group(1)}>[^/]+)")
                last = match.end()
            parts.append(re.escape(template[last:]))
            self.regex = re.compile("".join(parts) + "$")

    def handler(self, method: str) -> Handler | None:
        found = self.methods.get(method)
        if found is None and method == "HEAD":
            found = self.methods.get("GET")
        return found if found is not None else self.any

    @property
    def literal_length(self) -> int:
        """Characters outside ``{params}``: more of them match more specifically."""
        return len(_PARAM.sub("", self.template))

    @property
    def allow(self) -> str:
        return ", ".join(sorted(self.methods)) if self.any is None else "*"


def normalize_path(path: str) -> str:
    if not path.startswith("/"):
        path = "/" + path
    return path.rstrip("/") or "/"


def json_headers(size: int, extra: Sequence[tuple[bytes, bytes]] = ()) -> list[tuple[bytes, bytes]]:
    return [
        (b"content-type", b"application/json"),
        (b"content-length", str(size).encode()),
        *extra,
    ]


async def respond(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    """Send a whole response (JSON unless ``headers`` say otherwise)."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": headers if headers is not None else json_headers(len(body)),
        }
    )
    await send({"type": "http.response.body", "body": body})
