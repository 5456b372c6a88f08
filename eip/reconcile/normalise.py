"""Normalisers: make two spellings of one value compare equal (``" Ada "`` and ``"ada"``).

A normaliser is a function of one value. Give them per field, alone or as a list applied left
to right; the field ``"*"`` applies to every field, before the field's own::

    normalise={"*": trim, "email": casefold, "revenue": number(decimal=",", thousands="."),
               "since": date("%d.%m.%Y"), "name": [collapse_spaces, casefold]}

A normaliser that does not apply to a value returns it unchanged (``trim`` of a number, a
``number`` of ``"n/a"``): the value then compares as it is and shows up as a difference,
rather than stopping the whole check. Normalisers run only when two records are not already
equal as stored, so their cost is paid by the few keys that differ, not by every record.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

__all__ = [
    "Normaliser",
    "casefold",
    "collapse_spaces",
    "compile_normalisers",
    "compose",
    "date",
    "empty_as_none",
    "number",
    "trim",
]

Normaliser = Callable[[Any], Any]
NormaliserSpec = Normaliser | Sequence[Normaliser]


def trim(value: Any) -> Any:
    """Strip leading and trailing whitespace of a string."""
    return value.strip() if isinstance(value, str) else value


def casefold(value: Any) -> Any:
    """Case-insensitive form of a string (``str.casefold``: ``"Straße"`` equals ``"STRASSE"``)."""
    return value.casefold() if isinstance(value, str) else value


def collapse_spaces(value: Any) -> Any:
    """Runs of whitespace become one space, and the ends are trimmed."""
    return " ".join(value.split()) if isinstance(value, str) else value


def empty_as_none(value: Any) -> Any:
    """An empty or blank string counts as no value (None, as a missing field is)."""
    return None if isinstance(value, str) and not value.strip() else value


def number(
    *, decimal: str = ".", thousands: str | None = None, places: int | None = None
) -> Normaliser:
    """Numbers as exact decimals: ``"1.234,50"`` (``decimal=","``, ``thousands="."``),
    ``1234.5`` and ``"1234.50"`` are equal. ``places`` rounds half up first (money in
    cents: ``places=2``). Ints, floats and Decimals are taken as they are; bools are not
    numbers."""
    if decimal == thousands:
        raise ValueError("number(): decimal and thousands separators must differ")
    quantum = Decimal(1).scaleb(-places) if places is not None else None

    def normalise(value: Any) -> Any:
        if isinstance(value, bool):
            return value
        if isinstance(value, int | float | Decimal):
            parsed = Decimal(str(value)) if isinstance(value, float) else Decimal(value)
        elif isinstance(value, str):
            text = value.strip().replace(" ", "").replace("\u00a0", "")
            if thousands:
                text = text.replace(thousands, "")
            if decimal != ".":
                text = text.replace(decimal, ".")
            try:
                parsed = Decimal(text)
            except InvalidOperation:
                return value
        else:
            return value
        if not parsed.is_finite():
            return value
        if quantum is not None:
            parsed = parsed.quantize(quantum, ROUND_HALF_UP)
        return parsed.normalize()

    return normalise


def date(*formats: str) -> Normaliser:
    """Dates as ``datetime.date``: strings parsed with the first of ``formats`` that fits
    (default: ISO 8601, with or without a time), datetimes cut to their date."""

    def normalise(value: Any) -> Any:
        if isinstance(value, dt.datetime):
            return value.date()
        if isinstance(value, dt.date) or not isinstance(value, str):
            return value
        text = value.strip()
        if not formats:
            try:
                return dt.datetime.fromisoformat(text).date()
            except ValueError:
                return value
        for fmt in formats:
            try:
                return dt.datetime.strptime(text, fmt).date()
            except ValueError:
                continue
        return value

    return normalise


def compose(*normalisers: Normaliser) -> Normaliser:
    """Apply ``normalisers`` left to right: ``compose(trim, casefold)``."""
    if len(normalisers) == 1:
        return normalisers[0]

    def composed(value: Any) -> Any:
        for normalise in normalisers:
            value = normalise(value)
        return value

    return composed


def _safe(normalise: Normaliser) -> Normaliser:
    """A normaliser that raises leaves the value as it was (see the module docstring)."""

    def guarded(value: Any) -> Any:
        try:
            return normalise(value)
        except Exception:
            return value

    return guarded


def _one(spec: NormaliserSpec, field: str) -> Normaliser:
    if callable(spec):
        return spec
    if isinstance(spec, Sequence) and spec:
        for item in spec:
            if not callable(item):
                raise TypeError(f"normalise[{field!r}]: {item!r} is not a function")
        return compose(*spec)
    raise TypeError(f"normalise[{field!r}] must be a function or a list of them, got {spec!r}")


def compile_normalisers(spec: Mapping[str, NormaliserSpec] | None) -> dict[str, Normaliser]:
    """Field -> one guarded normaliser, with ``"*"`` folded into every named field; the
    ``"*"`` entry itself stays for the fields not named."""
    if not spec:
        return {}
    if not isinstance(spec, Mapping):
        raise TypeError(f"normalise must be a mapping of field to normaliser, got {spec!r}")
    every = _one(spec["*"], "*") if "*" in spec else None
    compiled: dict[str, Normaliser] = {}
    for field, item in spec.items():
        if not isinstance(field, str):
            raise TypeError(f"normalise: field names must be str, got {field!r}")
        if field == "*":
            continue
        own = _one(item, field)
        compiled[field] = _safe(compose(every, own) if every is not None else own)
    if every is not None:
        compiled["*"] = _safe(every)
    return compiled
