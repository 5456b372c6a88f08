"""Request bodies in, reply bodies out: media types, typed binding, reply encoding.

Decisions, where the issue left room:

- A route that declares a body type gets JSON (``application/json``, ``*+json``) and XML
  (``application/xml``, ``text/xml``, ``*+xml``) bodies decoded into it before it runs; any other
  media type is 415. A request without ``Content-Type`` is read as JSON (webhook senders often
  leave it out). Bodies that do not fit the type get 400 naming the field path.
- A reply body that is a Struct, dict, list, number or bool is encoded as JSON; ``str`` is sent as
  ``text/plain; charset=utf-8``; bytes are sent as they are. The route's ``Content-Type`` header
  wins; without one, bytes that look like JSON (``{``/``[``) or XML (``<``) are labelled so, and
  anything else is ``application/octet-stream``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from eip.dataformats import json as json_format
from eip.dataformats import xml as xml_format

__all__ = ["BodyBinder", "UnsupportedMediaType", "encode_reply", "media_type"]

_JSON_TYPES = frozenset({"application/json", "text/json"})
_XML_TYPES = frozenset({"application/xml", "text/xml"})
_encode = msgspec.json.Encoder().encode


class UnsupportedMediaType(Exception):
    """The request's media type is not one the route reads."""

    def __init__(self, media: str, accepted: Sequence[str]) -> None:
        self.media = media
        self.accepted = list(accepted)
        super().__init__(f"unsupported media type '{media}' (accepted: {', '.join(accepted)})")


def media_type(content_type: str | None) -> str:
    """``"application/json; charset=utf-8"`` -> ``"application/json"``."""
    if not content_type:
        return ""
    return content_type.split(";", 1)[0].strip().lower()


def _kind(media: str) -> str | None:
    if not media or media in _JSON_TYPES or media.endswith("+json"):
        return "json"
    if media in _XML_TYPES or media.endswith("+xml"):
        return "xml"
    return None


class BodyBinder:
    """Decodes request bodies into the route's declared type, by media type."""

    def __init__(self, body_type: Any, consumes: Sequence[str], max_body_size: int) -> None:
        self.type = body_type
        self.consumes = tuple(consumes)
        self._json = json_format(body_type).unmarshal if "json" in consumes else None
        self._xml = (
            xml_format(body_type, max_bytes=max(max_body_size, 1)).unmarshal
            if "xml" in consumes
            else None
        )
        accepted = []
        if self._json is not None:
            accepted.append("application/json")
        if self._xml is not None:
            accepted += ["application/xml", "text/xml"]
        self.accepted = tuple(accepted)

    def decode(self, content_type: str | None, body: bytes) -> Any:
        """The typed body; raises UnsupportedMediaType or eip's UnmarshalError."""
        media = media_type(content_type)
        kind = _kind(media)
        if kind == "json" and self._json is not None:
            return self._json(body)
        if kind == "xml" and self._xml is not None:
            return self._xml(body)
        raise UnsupportedMediaType(media, self.accepted)


def encode_reply(body: Any, content_type: str | None) -> tuple[bytes, str]:
    """The reply's bytes and content type (see the module docstring for the rules)."""
    if body is None:
        return b"", content_type or ""
    if body.__class__ is bytes:
        return body, content_type or _sniff(body)
    if isinstance(body, str):
        return body.encode(), content_type or "text/plain; charset=utf-8"
    if isinstance(body, bytearray | memoryview):
        data = bytes(body)
        return data, content_type or _sniff(data)
    return _encode(body), content_type or "application/json"


def _sniff(data: bytes) -> str:
    head = data[:1] if data[:1] not in (b" ", b"\n", b"\r", b"\t") else data.lstrip()[:1]
    if head in (b"{", b"["):
        return "application/json"
    if head == b"<":
        return "application/xml"
    return "application/octet-stream"
