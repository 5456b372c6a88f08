"""Helpers shared by the example routes: where the data lives, how the demo seeds it, and what
a dead-letter file holds.

**Folders.** ``<data>`` is ``$EIP_DATA_DIR`` (default ``./data``). Every example uses one
scheme, so a folder's name says which way its files go:

- ``inbox/<what>/``: files the routes read; drop your own here. A file moves to ``.done/``
  once its exchange completed (rejections included) and to ``.error/`` when it failed.
- ``outbox/<what>/``: what the routes write for the next system.
- ``rejected/<example>/``: input refused for its content; a retry cannot help, so fix it and
  drop it into the inbox again.
- ``dead-letter/<example>/``: what could not be delivered after the retries; send it again
  once the other side is back.
- ``demo/<system>/``: what the demo's stand-in systems received (``EIP_DEMO=0`` leaves them
  out).
- ``state/``: durable state (idempotent and aggregation repositories).

**Dead-letter files** are one JSON envelope (:class:`DeadLetter`), whatever the example: the
failure headers the engine set, the other headers (never credentials), and the body as the
failing step had it. One shape means one tool can read, count or re-send them all.

With ``EIP_DEMO`` not ``0``, each example has a one-shot timer route that seeds its samples.

**Settings** (the ERP's addresses, its user) are placeholders in the endpoints, resolved from
``eip.toml`` at route start (:func:`setting`): ``{{erp.url}}``, or with the demo
``{{demo.erp.url}}``, the stand-in ERP that eip serves itself. ``EIP_DATA_DIR`` and
``EIP_DEMO`` stay environment variables: they decide which routes exist and where their
folders are before any endpoint is resolved.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
from collections.abc import Iterable
from pathlib import Path, PurePath
from typing import Any, Literal

import msgspec

from eip import Exchange
from eip import headers as H
from eip.redaction import is_credential_header, redact_uri

__all__ = [
    "FAILURE_HEADERS",
    "SAMPLES",
    "DeadLetter",
    "copy_samples",
    "data_dir",
    "dead_letter",
    "dead_letters",
    "demo_enabled",
    "demo_output",
    "inbox",
    "outbox",
    "read_dead_letter",
    "rejected",
    "safe_file_name",
    "setting",
    "state",
]

SAMPLES = Path(__file__).parent / "samples"

#: The headers the engine sets on a failed exchange; a dead letter keeps them under "failure".
FAILURE_HEADERS = (
    H.EXCEPTION_TYPE,
    H.EXCEPTION_MESSAGE,
    H.FAILURE_ROUTE,
    H.FAILURE_ENDPOINT,
    H.REDELIVERY_COUNT,
)
_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,150}")

BodyEncoding = Literal["json", "text", "base64", "path"]


def data_dir() -> Path:
    return Path(os.environ.get("EIP_DATA_DIR", "data"))


def demo_enabled() -> bool:
    return os.environ.get("EIP_DEMO", "1") != "0"


def setting(key: str) -> str:
    """The placeholder of a setting: ``{{erp.url}}`` (``url`` in the ``[erp]`` table of
    eip.toml, or ``$EIP_ERP__URL``), or with the demo ``{{demo.erp.url}}`` (the stand-in
    systems eip serves itself: ``[demo.erp]`` in the shipped eip.toml). Without the demo a
    missing setting fails the route's start, and ``eip check``, naming it."""
    return "{{" + ("demo." if demo_enabled() else "") + key + "}}"


def _under(kind: str, name: str, data: Path | None) -> Path:
    return (data if data is not None else data_dir()) / kind / name


def inbox(name: str, data: Path | None = None) -> Path:
    """``<data>/inbox/<name>``: files a route reads."""
    return _under("inbox", name, data)


def outbox(name: str, data: Path | None = None) -> Path:
    """``<data>/outbox/<name>``: files a route writes for the next system."""
    return _under("outbox", name, data)


def rejected(example: str, data: Path | None = None) -> Path:
    """``<data>/rejected/<example>``: input refused for its content."""
    return _under("rejected", example, data)


def dead_letters(example: str, data: Path | None = None) -> Path:
    """``<data>/dead-letter/<example>``: what could not be delivered after the retries."""
    return _under("dead-letter", example, data)


def demo_output(system: str, data: Path | None = None) -> Path:
    """``<data>/demo/<system>``: what a stand-in system of the demo received."""
    return _under("demo", system, data)


def state(name: str, data: Path | None = None) -> Path:
    """``<data>/state/<name>``: a durable state file."""
    return _under("state", name, data)


def copy_samples(samples: Iterable[Path], inbox: Path) -> None:
    """Copy each sample into ``inbox`` atomically: it is written under a hidden temporary
    name (which file consumers never take) and renamed, so no route sees half a file."""
    inbox.mkdir(parents=True, exist_ok=True)
    for sample in samples:
        temp = inbox / f".{sample.name}.tmp"
        shutil.copyfile(sample, temp)
        temp.replace(inbox / sample.name)


def safe_file_name(key: str, prefix: str = "event", suffix: str = ".json") -> str:
    """``<key><suffix>``, or ``<prefix>-<hash><suffix>`` when ``key`` is not a plain file name
    (a ``/``, a NUL, ``..``): keys come from other systems, and a dead letter must be written
    whatever they sent. The same key always gives the same name."""
    if _PLAIN_NAME.fullmatch(key) and ".." not in key:
        return f"{key}{suffix}"
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:20]
    return f"{prefix}-{digest}{suffix}"


class DeadLetter(msgspec.Struct, frozen=True):
    """A dead-letter (or rejection) file: why it failed, its headers, and its body.

    ``failure`` maps each of :data:`FAILURE_HEADERS` to its value (None if the engine did not
    set it). ``body_encoding`` says how to get the body back (:meth:`original_body`): ``json``
    (a typed or structured body, as JSON), ``text`` (bytes that were UTF-8, or a str),
    ``base64`` (other bytes), ``path`` (a streamed file's path)."""

    failure: dict[str, Any]
    headers: dict[str, Any]
    body_encoding: BodyEncoding
    body: Any

    def original_body(self) -> Any:
        """The body as the route had it: bytes for text and base64, a Path, or the JSON value."""
        if self.body_encoding == "text":
            return str(self.body).encode("utf-8")
        if self.body_encoding == "base64":
            return base64.b64decode(self.body)
        if self.body_encoding == "path":
            return Path(self.body)
        return self.body


def _encoded_body(body: Any) -> tuple[BodyEncoding, Any]:
    if isinstance(body, bytes | bytearray | memoryview):
        raw = bytes(body)
        try:
            return "text", raw.decode("utf-8")
        except UnicodeDecodeError:
            return "base64", base64.b64encode(raw).decode("ascii")
    if isinstance(body, str):
        return "text", body
    if isinstance(body, PurePath):
        return "path", str(body)
    return "json", body


def _safe_headers(headers: dict[str, Any]) -> dict[str, Any]:
    """The headers to keep beside the failure: none that carries a credential, and every URL
    redacted (an endpoint URI may hold a password)."""
    kept: dict[str, Any] = {}
    for name, value in headers.items():
        if name in FAILURE_HEADERS:
            continue
        if is_credential_header(name):
            continue
        kept[name] = redact_uri(value) if isinstance(value, str) and "://" in value else value
    return kept


def _fallback(value: Any) -> Any:
    return str(value)  # Decimal, Path, enums...: readable rather than a failed dead letter


def dead_letter(exchange: Exchange) -> bytes:
    """Transform: the exchange as a :class:`DeadLetter` envelope (JSON bytes), to write with a
    ``file:`` producer. Use it where the failure headers are set: in an ``on_exception``
    clause, a dead letter channel's route, or a consumer of dead-lettered messages."""
    headers = exchange.headers
    failure = {name: headers.get(name) for name in FAILURE_HEADERS}
    message = failure[H.EXCEPTION_MESSAGE]
    if isinstance(message, str):
        failure[H.EXCEPTION_MESSAGE] = redact_uri(message) if "://" in message else message
    encoding, body = _encoded_body(exchange.body)
    letter = DeadLetter(failure, _safe_headers(headers), encoding, body)
    return msgspec.json.encode(letter, enc_hook=_fallback)


_reader = msgspec.json.Decoder(DeadLetter)


def read_dead_letter(data: bytes) -> DeadLetter:
    """A dead-letter file's content as a :class:`DeadLetter`."""
    return _reader.decode(data)
