"""Logs for machines: one JSON object per line (``eip run --log-format json``).

Each line holds ``time`` (ISO 8601, UTC), ``level``, ``logger`` and ``message``, plus
``route_id``, ``exchange_id``, ``message_id``, ``trace_id`` and ``span_id`` where the line is
about an exchange, and ``exception`` (the formatted traceback) when one is attached. The log
calls about an exchange pass those fields with :func:`exchange_fields` as ``extra``; the text
format ignores them, so they cost nothing to read for a person.
"""

from __future__ import annotations

import datetime
import logging
from typing import Any

import msgspec

from eip import headers as H

__all__ = ["FIELDS", "JsonFormatter", "exchange_fields"]

FIELDS = ("route_id", "exchange_id", "message_id", "trace_id", "span_id")
_encode = msgspec.json.Encoder().encode


def exchange_fields(exchange: Any, route_id: str | None = None) -> dict[str, Any]:
    """The ``extra`` of a log call about ``exchange`` (on ``route_id``)."""
    fields: dict[str, Any] = {
        "route_id": route_id or getattr(exchange, "route_id", None),
        "exchange_id": getattr(exchange, "id", None),
    }
    headers = getattr(exchange, "headers", None)
    if headers:
        message_id = headers.get(H.MESSAGE_ID)
        if message_id is not None:
            fields["message_id"] = str(message_id)
    context = getattr(exchange, "trace_context", None)
    if context is not None:
        get = getattr(context, "get_span_context", None)
        span = get() if get is not None else context
        trace_id, span_id = getattr(span, "trace_id", 0), getattr(span, "span_id", 0)
        if trace_id:
            fields["trace_id"] = f"{trace_id:032x}"
            fields["span_id"] = f"{span_id:016x}"
    return fields


class JsonFormatter(logging.Formatter):
    """One JSON object per record."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return _encode(line).decode()
