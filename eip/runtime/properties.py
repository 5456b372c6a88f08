"""Property placeholders in endpoint URIs and typed spec options, resolved once at route start.

============================== =============================================================
``{{erp.url}}``                the key ``url`` of the ``[erp]`` table (:mod:`eip.config`: the
                               file, the ``EIP_ERP__URL`` variable over it)
``{{erp.timeout:5}}``          the same, with a default when the key is not set
``{{env:ERP_TOKEN}}``          the environment variable
``{{env:ERP_URL:http://x}}``   the variable, else the default (everything after the second
                               ``:``; it may hold placeholders itself)
``{{file:/run/secrets/x}}``    the file's content, stripped of surrounding whitespace
============================== =============================================================

A config value may itself hold placeholders (``url = "http://127.0.0.1:{{server.http_port}}"``).
In the query part of a URI a value is percent-encoded, so an option gets it exactly (a ``&`` in
a password does not start another option); elsewhere it is inserted as it is.

**Secrets.** A value that came from ``{{env:...}}`` or ``{{file:...}}``, or from a config key
whose name says secret (``password``, ``token``, ``api_key``...: the redaction rules), is a
secret. What is shown (the route model, ``eip routes``, the control API, spans, the endpoint's
name in logs and errors) keeps the placeholder, never the value; the resolved form only builds
the endpoint. The values are also kept in :data:`eip.runtime.secrets.SECRETS`, so the texts the
endpoint makes itself (a failure naming its URL) can be scrubbed: ``eip run`` puts
:class:`~eip.runtime.secrets.ScrubSecrets` on its log handlers, and a producer built from a
secret scrubs its failures before error handling, the failure history, dead letters or spans
see them. Use config keys, not ``env:``, for settings that are not secret.

Not covered here: texts a component makes through :func:`eip.redaction.redact_uri` outside a
failure (the HTTP client span's ``url.full``, a consumer's readiness problem). Those need
``redact_uri`` itself to scrub the secret values.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple
from urllib.parse import quote

import msgspec

from eip.components.base import EndpointSpec
from eip.config import Config, ServerSettings
from eip.errors import RouteDefinitionError
from eip.redaction import is_secret_option
from eip.runtime.secrets import SECRETS

if TYPE_CHECKING:
    from eip.dsl.model import EndpointRef

__all__ = [
    "Placeholder",
    "PlaceholderError",
    "Properties",
    "Resolved",
    "find_placeholders",
    "has_placeholders",
]

OPEN, CLOSE = "{{", "}}"
_DEPTH = 10  # config values that refer to config values, at most this deep
_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_ENV = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
Kind = Literal["config", "env", "file"]
_SERVER_DEFAULTS = ServerSettings().as_config()
_FORMS = "{{key}}, {{key:default}}, {{env:NAME}}, {{env:NAME:default}} or {{file:PATH}}"


class PlaceholderError(RouteDefinitionError):
    """A placeholder that has no value, or is not written as one."""


class Placeholder(NamedTuple):
    """One ``{{...}}`` in a text: where it is, and what it names."""

    start: int
    end: int
    kind: Kind
    name: str
    default: str | None

    def text(self, source: str) -> str:
        return source[self.start : self.end]


class Resolved(NamedTuple):
    """A resolved text, and whether a secret went into it."""

    value: Any
    secret: bool


def has_placeholders(text: object) -> bool:
    return isinstance(text, str) and OPEN in text


def find_placeholders(text: str) -> list[Placeholder]:
    """The outermost placeholders of ``text``, in order; a malformed one raises."""
    found: list[Placeholder] = []
    pos = 0
    while (start := text.find(OPEN, pos)) >= 0:
        end = _closing(text, start)
        found.append(_parse(text, start, end))
        pos = end
    return found


def _closing(text: str, start: int) -> int:
    """The index after the ``}}`` that closes the ``{{`` at ``start`` (nesting counted)."""
    depth, pos = 0, start
    while pos < len(text):
        if text.startswith(OPEN, pos):
            depth += 1
            pos += 2
        elif text.startswith(CLOSE, pos):
            depth -= 1
            pos += 2
            if depth == 0:
                return pos
        else:
            pos += 1
    raise PlaceholderError(f"unclosed placeholder '{text[start : start + 40]}' (write {_FORMS})")


def _parse(text: str, start: int, end: int) -> Placeholder:
    inner = text[start + 2 : end - 2]
    kind: Kind = "config"
    if inner.startswith("env:"):
        kind, inner = "env", inner[4:]
    elif inner.startswith("file:"):
        kind, inner = "file", inner[5:]
    if kind == "file":
        name, default = inner.strip(), None
        ok = bool(name) and OPEN not in name
    else:
        name, sep, rest = inner.partition(":")
        default = rest if sep else None
        ok = bool((_ENV if kind == "env" else _KEY).fullmatch(name))
    if not ok:
        raise PlaceholderError(f"'{text[start:end]}' is not a placeholder (write {_FORMS})")
    return Placeholder(start, end, kind, name, default)


# -- resolving --------------------------------------------------------------------------------
class Properties:
    """Resolves placeholders from a config and the environment (read when resolving)."""

    def __init__(
        self, config: Config | None = None, environ: Mapping[str, str] | None = None
    ) -> None:
        self.config = config if config is not None else Config.from_environment()
        self._environ = environ

    @property
    def environ(self) -> Mapping[str, str]:
        return os.environ if self._environ is None else self._environ

    def resolve(self, text: str, *, in_uri: bool = False) -> Resolved:
        """``text`` with its placeholders replaced; the first one without a value raises a
        PlaceholderError naming it. ``in_uri``: percent-encode values in the query part."""
        return self._text(text, (), in_uri, True)

    def resolve_value(self, text: str, *, strict: bool = True) -> Resolved:
        """As :meth:`resolve`, but a text that is one config placeholder and nothing else
        gives the config's value as it is (a number, a list), for a typed option."""
        found = find_placeholders(text)
        whole = len(found) == 1 and found[0].start == 0 and found[0].end == len(text)
        if whole and found[0].kind == "config":
            try:
                return self._placeholder(text, found[0], ())
            except PlaceholderError:
                if strict:
                    raise
                return Resolved(text, False)
        return self._text(text, (), False, strict)

    def resolve_ref(self, ref: object, *, strict: bool = True) -> Resolved:
        """An endpoint (URI or typed spec) with its placeholders resolved; with
        ``strict=False`` those without a value stay as written (``eip check`` reads the rest)."""
        if isinstance(ref, str):
            return self._text(ref, (), True, strict) if OPEN in ref else Resolved(ref, False)
        if not isinstance(ref, EndpointSpec):
            return Resolved(ref, False)
        changes: dict[str, Any] = {}
        secret = False
        for name in ref.__struct_fields__:
            value = getattr(ref, name)
            resolved = self._option(value, strict)
            if resolved.value is not value:
                changes[name] = resolved.value
                secret = secret or resolved.secret
        if not changes:
            return Resolved(ref, False)
        return Resolved(_with_options(ref, changes), secret)

    def problems(self, ref: EndpointRef) -> list[str]:
        """Every placeholder of an endpoint that cannot be resolved, as its error says it."""
        texts = [ref] if isinstance(ref, str) else _texts(ref)
        out: list[str] = []
        for text in texts:
            try:
                found = find_placeholders(text)
            except PlaceholderError as exc:
                out.append(exc.reason)
                continue
            for placeholder in found:
                try:
                    self._placeholder(text, placeholder, ())
                except PlaceholderError as exc:
                    out.append(exc.reason)
        return list(dict.fromkeys(out))

    def _option(self, value: Any, strict: bool) -> Resolved:
        if isinstance(value, str):
            return (
                self.resolve_value(value, strict=strict)
                if OPEN in value
                else Resolved(value, False)
            )
        if isinstance(value, list | tuple) and any(has_placeholders(v) for v in value):
            items = [self._option(v, strict) for v in value]
            return Resolved(type(value)(i.value for i in items), any(i.secret for i in items))
        if isinstance(value, dict) and any(has_placeholders(v) for v in value.values()):
            entries = {k: self._option(v, strict) for k, v in value.items()}
            return Resolved(
                {k: r.value for k, r in entries.items()}, any(r.secret for r in entries.values())
            )
        return Resolved(value, False)

    def _text(self, text: str, stack: tuple[str, ...], in_uri: bool, strict: bool) -> Resolved:
        found = find_placeholders(text)
        if not found:
            return Resolved(text, False)
        query = text.find("?") if in_uri else -1
        parts: list[str] = []
        secret = False
        pos = 0
        for placeholder in found:
            written = placeholder.text(text)
            try:
                value, is_secret = self._placeholder(text, placeholder, stack)
            except PlaceholderError:
                if strict:
                    raise
                value, is_secret = written, False
            else:
                value = _text_of(value, written)
                if 0 <= query < placeholder.start:
                    value = quote(value, safe="")
            parts += [text[pos : placeholder.start], value]
            secret = secret or is_secret
            pos = placeholder.end
        parts.append(text[pos:])
        return Resolved("".join(parts), secret)

    def _placeholder(self, text: str, placeholder: Placeholder, stack: tuple[str, ...]) -> Resolved:
        written = placeholder.text(text)
        if placeholder.kind == "env":
            value = self.environ.get(placeholder.name)
            if value is not None:
                SECRETS.add(value)
                return Resolved(value, True)
            if placeholder.default is not None:
                return self._text(placeholder.default, stack, False, True)
            raise PlaceholderError(
                f"placeholder {written}: the environment variable {placeholder.name} is not set"
                f" (or give a default: {{{{env:{placeholder.name}:value}}}})"
            )
        if placeholder.kind == "file":
            return Resolved(_read_secret(placeholder.name, written), True)
        return self._config(written, placeholder, stack)

    def _config(self, written: str, placeholder: Placeholder, stack: tuple[str, ...]) -> Resolved:
        key = placeholder.name
        if key in stack:
            chain = " -> ".join((*stack, key))
            raise PlaceholderError(f"placeholder {written}: {key} refers to itself ({chain})")
        if len(stack) >= _DEPTH:
            raise PlaceholderError(f"placeholder {written}: nested more than {_DEPTH} deep")
        found, value = self.config.lookup(key)
        if not found and key in _SERVER_DEFAULTS:  # {{server.http_port}} without a config
            found, value = True, _SERVER_DEFAULTS[key]
        if not found:
            if placeholder.default is not None:
                return self._text(placeholder.default, stack, False, True)
            raise PlaceholderError(
                f"placeholder {written} has no value: {self.config.how_to_set(key)}"
            )
        if isinstance(value, dict):
            keys = ", ".join(sorted(self.config.keys(key))) or "none"
            raise PlaceholderError(
                f"placeholder {written}: {key} is a table, not a value (its keys: {keys})"
            )
        secret = is_secret_option(key.rpartition(".")[2])
        if isinstance(value, str):
            resolved = self._text(value, (*stack, key), False, True)
            value, secret = resolved.value, secret or resolved.secret
        if secret and isinstance(value, str):
            SECRETS.add(value)
        return Resolved(value, secret)


def _texts(spec: EndpointSpec) -> list[str]:
    """The option texts of a spec that hold placeholders (lists and mappings included)."""
    out: list[str] = []
    for name in spec.__struct_fields__:
        value = getattr(spec, name)
        if isinstance(value, str):
            items: Any = [value]
        elif isinstance(value, dict):
            items = value.values()
        elif isinstance(value, list | tuple):
            items = value
        else:
            continue
        out += [item for item in items if has_placeholders(item)]
    return out


def _with_options(spec: EndpointSpec, changes: dict[str, Any]) -> EndpointSpec:
    """The spec with resolved options, each converted to its field's type as a URI option
    is (``"500"`` -> 500); an option still holding a placeholder is left as it is."""
    types = _field_types(type(spec))
    converted: dict[str, Any] = {}
    for name, value in changes.items():
        if _holds_placeholder(value):
            converted[name] = value
            continue
        try:
            converted[name] = msgspec.convert(value, types[name], strict=False)
        except msgspec.ValidationError as exc:
            written = getattr(spec, name)
            reason = str(exc).split(" - at ", 1)[0].replace("`", "")
            raise PlaceholderError(
                f"option '{name}' ({written!r} resolved): {reason[:1].lower()}{reason[1:]}",
                option=name,
            ) from None
    return msgspec.structs.replace(spec, **converted)


def _holds_placeholder(value: Any) -> bool:
    if isinstance(value, dict):
        return any(has_placeholders(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(has_placeholders(v) for v in value)
    return has_placeholders(value)


@functools.cache
def _field_types(spec_type: type[EndpointSpec]) -> dict[str, Any]:
    return {f.name: f.type for f in msgspec.structs.fields(spec_type)}


def _text_of(value: Any, written: str) -> str:
    """A config value as it goes into a text: TOML's true/false, lists comma-separated."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        if any(isinstance(item, dict | list) for item in value):
            raise PlaceholderError(f"placeholder {written}: a list of tables cannot go into text")
        return ",".join(_text_of(item, written) for item in value)
    if hasattr(value, "isoformat"):
        return str(value.isoformat())
    return str(value)


def _read_secret(path: str, written: str) -> str:
    try:
        value = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise PlaceholderError(f"placeholder {written}: cannot read {path}: {reason}") from None
    SECRETS.add(value)
    return value
