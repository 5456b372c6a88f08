"""JSON data format built on msgspec: one Encoder and one Decoder per format, reused."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import msgspec

from eip.errors import MarshalError, UnmarshalError

__all__ = ["JsonFormat", "encode_failure", "msgspec_reason"]

_AT = re.compile(r"^(?P<reason>.*?) - at `(?P<path>[^`]*)`$", re.DOTALL)
_FIELD = re.compile(r"field `([^`]*)`")
_BYTE = re.compile(r"^(?P<reason>.*?) \(byte (?P<byte>\d+)\)$", re.DOTALL)
_UNSUPPORTED = re.compile(r"^Encoding objects of type (?P<type>\S+) is unsupported$")
_MAX_LOCATE_DEPTH = 64


def msgspec_reason(message: str) -> tuple[str, str]:
    """Split a msgspec ValidationError message into ``(reason, path)``.

    ``"Expected `str`, got `int` - at `$.address.zip`"`` becomes
    ``("expected str, got int", "$.address.zip")``; a message without a path gets ``"$"``.
    The XML and CSV formats reuse this to phrase conversion errors the same way.
    """
    path = "$"
    match = _AT.match(message)
    if match is not None:
        message, path = match["reason"], match["path"]
    message = _FIELD.sub(r"field '\1'", message).replace("`", "")
    message = message.removeprefix("Object ")
    return message[:1].lower() + message[1:], path


def _decode_error(exc: msgspec.DecodeError, data: Any) -> UnmarshalError:
    message = str(exc)
    match = _BYTE.match(message)
    if match is None:
        if message == "Input data was truncated":
            if not _strip(data):
                return UnmarshalError("json", "empty input", location="byte 0")
            return UnmarshalError(
                "json", "malformed JSON: input ended early", location=f"byte {_size(data)}"
            )
        return UnmarshalError("json", message[:1].lower() + message[1:])
    reason = match["reason"].removeprefix("JSON is malformed: ")
    offset = int(match["byte"])
    return UnmarshalError(
        "json", f"malformed JSON: {reason}{_line_column(data, offset)}", location=f"byte {offset}"
    )


def _strip(data: Any) -> Any:
    return bytes(data).strip() if isinstance(data, bytearray | memoryview) else data.strip()


def _size(data: Any) -> int:
    return len(_raw(data)) if isinstance(data, str) else len(data)


def _line_column(data: Any, offset: int) -> str:
    """Say ``" at line L, column C"`` for multi-line documents, where a byte offset alone is
    hard to find. msgspec's offset is where its reader stopped, at or just past the culprit,
    so the line and column are those of the byte before it."""
    raw = _raw(data)
    index = max(min(offset, len(raw)) - 1, 0)
    line = raw.count(b"\n", 0, index) + 1
    if line == 1:
        return ""
    column = index - raw.rfind(b"\n", 0, index)
    return f" at line {line}, column {column}"


def _raw(data: Any) -> bytes:
    return data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)


def _unicode_error(exc: UnicodeError, data: Any) -> UnmarshalError:
    if isinstance(exc, UnicodeDecodeError):
        # msgspec decodes one string at a time, so exc.start is relative to that string;
        # decoding the whole document again (error path only) finds the absolute offset.
        try:
            _raw(data).decode("utf-8")
        except UnicodeDecodeError as whole:
            exc = whole
        return UnmarshalError("json", f"invalid UTF-8: {exc.reason}", location=f"byte {exc.start}")
    start = getattr(exc, "start", None)
    reason = f"text is not valid Unicode (position {start}): {getattr(exc, 'reason', exc)}"
    return UnmarshalError("json", reason)


def _children(obj: Any, path: str) -> Iterator[tuple[str, Any]]:
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield (f"{path}.{key}" if isinstance(key, str) else f"{path}[{key!r}]"), value
    elif isinstance(obj, list | tuple | set | frozenset):
        for index, value in enumerate(obj):
            yield f"{path}[{index}]", value
    elif isinstance(obj, msgspec.Struct):
        for name in obj.__struct_fields__:
            yield f"{path}.{name}", getattr(obj, name)


def _locate(encode: Callable[[Any], object], obj: Any, path: str = "$", depth: int = 0) -> str:
    """Find the path of the innermost value that cannot be encoded (error path only)."""
    if depth >= _MAX_LOCATE_DEPTH:
        return path
    for child_path, value in _children(obj, path):
        try:
            encode(value)
        except (TypeError, ValueError, msgspec.EncodeError):
            return _locate(encode, value, child_path, depth + 1)
        except RecursionError:
            return child_path
    return path


def encode_failure(exc: Exception, body: Any, encode: Callable[[Any], object]) -> str:
    """Phrase an encoding failure with the path of the culprit, e.g. ``cannot encode value of
    type 'Widget' at $.lines[1].widget``. The XML and CSV formats reuse it (error path only)."""
    path = _locate(encode, body)
    message = str(exc)
    match = _UNSUPPORTED.match(message)
    if match is not None:
        return f"cannot encode value of type '{match['type']}' at {path}"
    if isinstance(exc, UnicodeEncodeError):
        return f"string at {path} is not valid Unicode: {exc.reason}"
    return f"{message[:1].lower()}{message[1:]} at {path}"


class JsonFormat:
    """Read and write JSON with msgspec; ``type`` (a Struct, dataclass, ``list[X]``, ...) makes
    unmarshal validate and build typed objects in one pass, which is why routes should pass one.
    """

    name = "json"
    __slots__ = ("_decode", "_encode", "fast_marshal", "fast_unmarshal", "type")

    def __init__(self, type: Any = None) -> None:
        self.type = type
        # Built once: msgspec caches the type's decoding plan inside the Decoder, so reusing
        # it keeps the per-message cost close to raw msgspec.
        self._decode = msgspec.json.Decoder(type if type is not None else Any).decode
        self._encode = msgspec.json.Encoder().encode
        #: The raw msgspec calls, for the fused pipeline (see :mod:`eip.dataformats`): they
        #: return what ``unmarshal`` and ``marshal`` (for a body that is not ``bytes``) return
        #: whenever they succeed; on a failure the step calls the full method for the error.
        self.fast_unmarshal = self._decode
        self.fast_marshal = self._encode

    def __repr__(self) -> str:
        if self.type is None:
            return "json()"
        return f"json({getattr(self.type, '__name__', self.type)})"

    def unmarshal(self, data: Any) -> Any:
        """Decode JSON from bytes, bytearray, memoryview or str; bad input raises
        :class:`~eip.errors.UnmarshalError` with a JSON path or byte offset."""
        try:
            return self._decode(data)
        except msgspec.ValidationError as exc:
            reason, path = msgspec_reason(str(exc))
            raise UnmarshalError("json", reason, location=path) from exc
        except msgspec.DecodeError as exc:
            raise _decode_error(exc, data) from exc
        except UnicodeError as exc:
            raise _unicode_error(exc, data) from exc
        except RecursionError as exc:
            raise UnmarshalError("json", "document is nested too deeply") from exc
        except TypeError as exc:
            if not isinstance(data, bytes | bytearray | memoryview | str):
                reason = f"expected bytes or str, got {type(data).__name__}"
                raise UnmarshalError("json", reason) from exc
            raise UnmarshalError("json", str(exc)) from exc

    def marshal(self, body: Any) -> bytes:
        """Encode ``body`` as JSON bytes. Bytes pass through unchanged (already serialized);
        a ``str`` is encoded as a JSON string value, not parsed."""
        if body.__class__ is bytes:
            return body
        try:
            return self._encode(body)
        except (TypeError, ValueError, msgspec.EncodeError) as exc:
            raise MarshalError("json", encode_failure(exc, body, self._encode)) from exc
        except RecursionError as exc:
            reason = "body is nested too deeply or contains a reference cycle"
            raise MarshalError("json", reason) from exc
