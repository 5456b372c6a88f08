"""Failed-exchange history: what an operator needs at 3 a.m., kept safely and off the hot path.

Camel's backlog tracer records every exchange; this records only failures, per route, in a
bounded ring (the last ``size``, default 50). A record is made once per failed exchange, where
error handling gives up on it (whether a dead letter channel then takes it or not), so nothing
is done for an exchange that succeeds. Each record keeps:

- when, the route, the exchange id and the message id, and where it failed (the step path or
  endpoint that error handling names);
- the exception type and message, the redelivery count, and the trace id when traced;
- the headers, redacted by the same rules as the logs (secret-looking names are masked,
  URI values lose their credentials), and a body excerpt capped at ``BODY_EXCERPT`` bytes,
  with bytes shown safely (invalid UTF-8 escaped, never raw).

A failure inside a split part or a multicast/recipient list output is recorded where it
happened, on the part's exchange, before the EIP knows of it; the EIP then says which part it
was (:func:`locate`): ``failed_at`` becomes ``split part index 2 > process(check)``, and,
for nested parts, ``multicast output index 0 (direct:x) > split part index 2 > ...``. The
exception type and message stay the original's, the type ``on_exception`` clauses match.
"""

from __future__ import annotations

import collections
import time
from typing import Any

import msgspec

from eip import headers as H
from eip.message import Exchange
from eip.redaction import is_credential_header, redact_uri

__all__ = [
    "BODY_EXCERPT",
    "RECORD_PROPERTY",
    "FailureHistory",
    "FailureRecord",
    "hand_over_record",
    "locate",
]

BODY_EXCERPT = 2048
#: Exchange property: ``(exchange id, history, record)`` of the failure recorded for that
#: exchange, so that the split or multicast it is a part of can say which part it was. The id
#: keeps copies made later (which inherit properties) from taking the record for theirs.
RECORD_PROPERTY = "eip.failure.record"
_encode = msgspec.json.Encoder().encode


class FailureRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One failed exchange, as the control API serves it."""

    time: float
    route_id: str
    exchange_id: str
    message_id: str | None
    failed_at: str | None
    exception_type: str
    message: str
    redelivery_count: int
    handled: bool
    trace_id: str | None
    headers: dict[str, Any]
    body: str
    body_truncated: bool


class FailureHistory:
    """The last ``size`` failures of each route."""

    def __init__(self, size: int = 50) -> None:
        if size < 1:
            raise ValueError(f"the failure history keeps at least 1 record, not {size}")
        self.size = size
        self._rings: dict[str, collections.deque[FailureRecord]] = {}

    def record(
        self,
        route_id: str,
        exchange: Exchange,
        error: BaseException,
        failed_at: str | None,
        attempts: int,
        *,
        handled: bool = False,
    ) -> FailureRecord:
        body, truncated = body_excerpt(exchange.body)
        record = FailureRecord(
            time=time.time(),
            route_id=route_id,
            exchange_id=exchange.id,
            message_id=_text_or_none(exchange.headers.get(H.MESSAGE_ID)),
            failed_at=redact_uri(failed_at) if failed_at else None,
            exception_type=f"{type(error).__module__}.{type(error).__qualname__}",
            message=redact_uri(str(error))[:1000],
            redelivery_count=attempts,
            handled=handled,
            trace_id=_trace_id(exchange),
            headers=safe_headers(exchange.headers),
            body=body,
            body_truncated=truncated,
        )
        ring = self._rings.get(route_id)
        if ring is None:
            ring = self._rings[route_id] = collections.deque(maxlen=self.size)
        ring.append(record)
        exchange.properties[RECORD_PROPERTY] = (exchange.id, self, record)
        return record

    def amend(self, record: FailureRecord, where: str) -> FailureRecord:
        """Put ``where`` (the part it was) before the record's ``failed_at``, in its ring.

        A record already pushed out of the ring is amended for the caller only."""
        failed_at = f"{where} > {record.failed_at}" if record.failed_at else where
        amended = msgspec.structs.replace(record, failed_at=redact_uri(failed_at))
        ring = self._rings.get(record.route_id)
        if ring is not None:
            for position in range(len(ring) - 1, -1, -1):
                if ring[position] is record:
                    ring[position] = amended
                    break
        return amended

    def of(self, route_id: str) -> list[FailureRecord]:
        """The route's failures, newest first."""
        return list(reversed(self._rings.get(route_id, ())))

    def last(self, route_id: str) -> FailureRecord | None:
        ring = self._rings.get(route_id)
        return ring[-1] if ring else None

    def clear(self, route_id: str | None = None) -> None:
        if route_id is None:
            self._rings.clear()
        else:
            self._rings.pop(route_id, None)


def locate(part: Exchange, where: str) -> None:
    """Say in the failure recorded for ``part`` (if any) which part of its EIP it was; called
    for every part that has a record (a dead-lettered one too), so a check of one dict key
    for a part without."""
    mark = part.properties.get(RECORD_PROPERTY)
    if mark is None or mark[0] != part.id:
        return  # nothing recorded, or the mark came with properties copied from the parent
    _, history, record = mark
    part.properties[RECORD_PROPERTY] = (mark[0], history, history.amend(record, where))


def hand_over_record(part: Exchange, parent: Exchange) -> None:
    """The part's failure became the parent's: so does its record, for an enclosing split or
    multicast to say which part the parent was in turn."""
    mark = part.properties.get(RECORD_PROPERTY)
    if mark is not None and mark[0] == part.id:
        parent.properties[RECORD_PROPERTY] = (parent.id, mark[1], mark[2])


def safe_headers(headers: dict[str, Any]) -> dict[str, Any]:
    """Headers fit to show: secrets masked, URIs without credentials, values as plain data."""
    shown: dict[str, Any] = {}
    for name, value in headers.items():
        if is_credential_header(name):
            shown[name] = "***"
        elif isinstance(value, str):
            shown[name] = redact_uri(value)[:500] if "://" in value or "=" in value else value[:500]
        elif isinstance(value, bool | int | float) or value is None:
            shown[name] = value
        else:
            shown[name] = repr(value)[:200]
    return shown


def body_excerpt(body: Any, limit: int = BODY_EXCERPT) -> tuple[str, bool]:
    """At most ``limit`` bytes of the body as text, and whether it was cut."""
    if body is None:
        return "", False
    if isinstance(body, bytes | bytearray | memoryview):
        raw = bytes(body[: limit + 1])
    elif isinstance(body, str):
        raw = body.encode("utf-8", "backslashreplace")[: limit + 1]
    else:
        try:
            raw = _encode(body)[: limit + 1]
        except (TypeError, msgspec.EncodeError):
            raw = repr(body).encode("utf-8", "backslashreplace")[: limit + 1]
    truncated = len(raw) > limit
    return raw[:limit].decode("utf-8", "backslashreplace"), truncated


def _text_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def _trace_id(exchange: Exchange) -> str | None:
    context = exchange.trace_context
    if context is None:
        return None
    get = getattr(context, "get_span_context", None)
    span_context = get() if get is not None else context
    trace_id = getattr(span_context, "trace_id", 0)
    return f"{trace_id:032x}" if trace_id else None
