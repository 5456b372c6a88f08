"""An audit record, its canonical encoding and the hash chain that seals it.

The hot path produces an :data:`Entry`, a plain tuple (cheap to make); a store turns a batch
of entries into :class:`AuditRecord` objects with :func:`seal`, inside the transaction that
writes them, because only there is the head of the chain (the last record's number and hash)
known for sure when several writers share it.

**Canonical encoding**: JSON, UTF-8, no whitespace, object keys sorted at every level, every
field present (``null`` when empty). A JSON Lines line is that content with ``"hash"``
appended as its last member (:func:`line_of`). The record's ``hash`` is the SHA-256 (hex) of that
encoding of the record *without* its ``hash`` field, and that content includes ``prev``, the
previous record's hash (:data:`GENESIS` for the first), and ``seq``, its place in the chain
(1, 2, 3, ...). Editing, removing or reordering a record therefore breaks the hash of the
record itself or the link of the one after it (see :mod:`eip.audit.verify`). Outside eip the
hash is checked with, for example, ``jq -cjS 'del(.hash)' | sha256sum`` (for records
whose numbers jq keeps exact).
"""

from __future__ import annotations

import hashlib
import time as _time
from collections.abc import Sequence
from typing import Any

import msgspec

__all__ = [
    "COMPLETED",
    "DEAD_LETTERED",
    "FAILED",
    "FILTERED",
    "GENESIS",
    "HANDLED",
    "OUTCOMES",
    "AuditRecord",
    "Content",
    "Entry",
    "Sealed",
    "content_of",
    "decode_record",
    "entry",
    "format_time",
    "line_of",
    "seal",
    "seal_array",
]

#: The exchange went through the route.
COMPLETED = "completed"
#: The route failed it: its source gets it back (a RabbitMQ requeue, an HTTP error).
FAILED = "failed"
#: The route's dead letter channel took it after its failure.
DEAD_LETTERED = "dead-lettered"
#: A filter at the route's top level stopped it.
FILTERED = "filtered"
#: An ``on_exception(...).handled()`` clause of the route took its failure.
HANDLED = "handled"
OUTCOMES = (COMPLETED, FAILED, DEAD_LETTERED, FILTERED, HANDLED)

#: ``prev`` of a chain's first record.
GENESIS = "0" * 64


class AuditRecord(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One sealed record, as read back and shown (fields in canonical, sorted order)."""

    chain: str
    endpoints: list[str]
    error: str | None
    exchange: str
    fields: dict[str, Any] | None
    #: SHA-256 (hex) of the canonical content: this record without ``hash``.
    hash: str = ""
    key: str | None
    message_id: str | None
    outcome: str
    prev: str
    principal: str | None
    route: str
    seq: int
    #: When the record was sealed, in UTC (``2026-11-05T12:00:00.123456Z``; fixed width, so
    #: text order is time order): within milliseconds of the exchange's end, the same for
    #: every record of one batch.
    time: str


class Content(msgspec.Struct, gc=False):
    """A record's canonical content (fields declared in sorted order, so the JSON is
    canonical once dict keys are sorted too). The hot path makes one per exchange, with
    ``chain``, ``prev``, ``seq`` and ``time`` left empty: :func:`seal` fills them in. It holds
    plain data only, never a cycle, so the garbage collector need not track it."""

    chain: str
    endpoints: list[str]
    error: str | None
    exchange: str
    fields: dict[str, Any] | None
    key: str | None
    message_id: str | None
    outcome: str
    prev: str
    principal: str | None
    route: str
    seq: int
    time: str


#: What the hot path hands the writer: a record's content, not yet sealed.
Entry = Content

#: A sealed record: its content, the canonical JSON of it, and that JSON's SHA-256 (hex).
Sealed = tuple[Content, bytes, str]

_plain = msgspec.json.Encoder()  # fields as declared: canonical while there are no dicts
_encoder = msgspec.json.Encoder(order="deterministic")  # dict keys sorted too
_decoder = msgspec.json.Decoder(AuditRecord)


def content_of(record: AuditRecord) -> bytes:
    """The canonical content of ``record``: its JSON without ``hash``."""
    if record.hash:
        record = msgspec.structs.replace(record, hash="")
    return _sorted.encode(record)


_sorted = msgspec.json.Encoder(order="sorted")


def decode_record(data: bytes | str) -> AuditRecord:
    """A record from its JSON (with or without ``hash``); raises msgspec.DecodeError."""
    return _decoder.decode(data)


def line_of(content: bytes, digest: str) -> bytes:
    """A JSON Lines line: the canonical content with ``hash`` appended as its last member."""
    return b'%s,"hash":"%s"}' % (content[:-1], digest.encode())


def format_time(when: float) -> str:
    """Unix time as the records' UTC text."""
    second, micros = divmod(round(when * 1_000_000), 1_000_000)
    return f"{_time.strftime('%Y-%m-%dT%H:%M:%S', _time.gmtime(second))}.{micros:06d}Z"


def entry(
    route: str,
    exchange: str,
    outcome: str,
    *,
    endpoints: list[str] | None = None,
    key: str | None = None,
    principal: str | None = None,
    message_id: str | None = None,
    fields: dict[str, Any] | None = None,
    error: str | None = None,
) -> Entry:
    """An entry made by name (the hot path makes :class:`Content` positionally)."""
    sent = [] if endpoints is None else endpoints
    return Content(
        "", sent, error, exchange, fields, key, message_id, outcome, "", principal, route, 0, ""
    )


def seal(
    entries: Sequence[Entry], chain: str, seq: int, prev: str, when: float | None = None
) -> list[Sealed]:
    """Number, stamp (``when``, default now) and hash ``entries`` onto ``chain`` after its
    head (``seq``, ``prev``): the records to write, in order. The entries are filled in."""
    out: list[Sealed] = []
    plain, deterministic = _plain.encode, _encoder.encode
    sha256 = hashlib.sha256
    stamp = format_time(_time.time() if when is None else when)
    for content in entries:
        seq += 1
        content.chain = chain
        content.prev = prev
        content.seq = seq
        content.time = stamp
        data = plain(content) if content.fields is None else deterministic(content)
        prev = sha256(data).hexdigest()
        out.append((content, data, prev))
    return out


def seal_array(
    entries: Sequence[Entry], chain: str, seq: int, prev: str, when: float | None = None
) -> tuple[bytes, str]:
    """As :func:`seal`, but the records as one JSON array of their lines (:func:`line_of`,
    byte for byte) and the last record's hash: a batch stored as one value (the SQLite
    store's row) is built in one join, without a line formatted per record."""
    parts: list[bytes] = [b"["]
    add = parts.append
    for _, data, digest in seal(entries, chain, seq, prev, when):
        add(data[:-1])  # the content without its closing brace, then the hash as last member
        add(b',"hash":"')
        add(digest.encode())
        add(b'"},')
        prev = digest
    if len(parts) > 1:
        parts[-1] = b'"}'  # no comma after the last line
    add(b"]")
    return b"".join(parts), prev
