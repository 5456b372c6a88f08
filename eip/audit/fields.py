"""The body fields an audit record keeps, when a route chooses some (none by default)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from eip.expressions import path_getter

__all__ = ["FieldPicker"]


class FieldPicker:
    """Reads the chosen body fields: from a dict, a Struct or an object, or from a JSON body
    (bytes or text, decoded only for this); a missing field is null."""

    __slots__ = ("_getters",)

    def __init__(self, paths: Sequence[str]) -> None:
        self._getters = [(path, path_getter(path)) for path in paths]

    def __call__(self, body: Any) -> dict[str, Any]:
        if isinstance(body, bytes | bytearray | memoryview | str):
            try:
                body = msgspec.json.decode(body)
            except Exception:  # not JSON (msgspec may raise more than DecodeError)
                body = None
        out: dict[str, Any] = {}
        for name, get in self._getters:
            try:
                out[name] = _plain(get(body))
            except Exception:
                out[name] = None
        return out


def _plain(value: Any) -> Any:
    """A value as plain JSON data (Structs, dates, decimals, enums converted)."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    try:
        return msgspec.to_builtins(value, str_keys=True)
    except TypeError:
        return repr(value)
