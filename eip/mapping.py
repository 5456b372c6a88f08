"""Declarative field mapping: turn one record shape into another (CRM -> ERP and the like).

Build a :class:`FieldMapper` once from rules, then call it per record::

    to_erp = FieldMapper(
        field("billing.postal_code", source="address.zip"),
        field("revenue_cents", source="revenue_eur", convert=scale(100, to=int)),
        rename("email", "email_address"), drop("internal_notes"), target=ErpCustomer,
    )
    erp = to_erp(crm_record)

Dotted paths are split once at construction; a call is one loop over precompiled rule tuples
plus a subset check per dict level that has rules. Every per-record failure is a
:class:`~eip.errors.MappingError` whose ``path`` is JSON-style (``$.address.zip``). Mistakes in
the rules themselves raise :class:`~eip.errors.RouteDefinitionError` at construction.

Code lists: ``convert=lookup(table, "column")`` translates a value through a
:class:`CsvTable` (a CSV reference file that reloads when it changes) or a dict
(:mod:`eip.lookups`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, Final, Generic, Literal, TypeVar, cast, overload

import msgspec

from eip.errors import MappingError, RouteDefinitionError
from eip.lookups import CsvTable, lookup  # code lists: see eip/lookups.py
from eip.security.masking import hash_with_salt, mask, redact  # for exports and logs

# fmt: off
__all__ = [
    "Converter", "CsvTable", "Drop", "Field", "FieldMapper", "Rule", "chain", "convert", "drop",
    "field", "hash_with_salt", "lookup", "lower", "mask", "redact", "rename", "scale", "strip",
    "to_bool", "to_date", "to_float", "to_int", "to_str", "upper",
]
# fmt: on

Converter = Callable[[Any], Any]
Path = tuple[str, ...]
UnknownMode = Literal["error", "ignore", "keep"]
T = TypeVar("T")


_MISSING: Final[Any] = object()
_UNSET: Final[Any] = msgspec.UNSET


@dataclass(frozen=True, slots=True)
class Field:
    """One target field; build it with :func:`field`, :func:`rename` or ``field(value=...)``."""

    target: Path
    source: Path | None  # None for a constant
    value: Any
    convert: Converter | None
    default: Any
    required: bool


@dataclass(frozen=True, slots=True)
class Drop:
    """Source fields that are known and deliberately discarded; build it with :func:`drop`."""

    paths: tuple[Path, ...]


Rule = Field | Drop


def _split(path: str) -> Path:
    parts = tuple(path.split("."))
    if not all(parts):
        raise RouteDefinitionError(f"field mapper: invalid path {path!r}")
    return parts


def field(
    target: str,
    *,
    source: str | None = None,
    value: Any = _MISSING,
    convert: Converter | None = None,
    default: Any = _MISSING,
    required: bool = False,
) -> Field:
    """Map the dotted ``source`` path (default: same as ``target``) to the dotted ``target`` path.

    ``convert`` is applied to present, non-None values. ``default`` (used as is) replaces a
    missing or None source. ``required`` makes a missing or None source without default a
    :class:`MappingError`. Otherwise a missing source leaves the target out and None is written
    as None. ``value=`` makes a constant field and excludes every other option.
    """
    if value is not _MISSING:
        if source is not None or convert is not None or default is not _MISSING or required:
            raise RouteDefinitionError(f"field mapper: constant {target!r} takes only value=")
        return Field(_split(target), None, value, None, _MISSING, False)
    src = _split(source if source is not None else target)
    return Field(_split(target), src, _MISSING, convert, default, required)


def rename(source: str, target: str) -> Field:
    """Shorthand for ``field(target, source=source)``."""
    return field(target, source=source)


def drop(*paths: str) -> Drop:
    """Mark source fields (dotted paths) as known and discarded, so ``unknown="error"`` passes."""
    return Drop(tuple(_split(p) for p in paths))


class _Known:
    """Referenced source keys at one dict level; ``children`` are levels only partly consumed."""

    __slots__ = ("children", "keys", "listing", "path")

    def __init__(self, raw: dict[str, Any], path: Path) -> None:
        self.path = path
        self.keys = frozenset(raw)
        self.listing = ", ".join(sorted(raw))
        self.children = tuple(
            (k, _Known(sub, (*path, k))) for k, sub in raw.items() if sub is not None
        )


def _insert(raw: dict[str, Any], path: Path) -> None:
    node = raw
    for key in path[:-1]:
        if key in node and node[key] is None:
            return  # an ancestor is consumed as a whole
        node = node.setdefault(key, {})
    node[path[-1]] = None


def _jpath(path: Path) -> str:
    return "$." + ".".join(path)


def _scan(obj: Any, node: _Known, found: list[tuple[Path, Any]] | None) -> None:
    """Raise on the first unknown field (``found`` is None) or collect them into ``found``."""
    is_dict = isinstance(obj, dict)
    keys = obj if is_dict else obj.__struct_fields__
    if not node.keys.issuperset(keys):
        for key in keys:
            if key in node.keys:
                continue
            if found is None:
                reason = f"unknown source field (mapped fields: {node.listing})"
                raise MappingError(_jpath((*node.path, key)), reason)
            value = obj[key] if is_dict else getattr(obj, key)
            if value is not _UNSET:
                found.append(((*node.path, key), value))
    for key, child in node.children:
        value = obj.get(key) if is_dict else getattr(obj, key, None)
        if isinstance(value, dict | msgspec.Struct):
            _scan(value, child, found)


def _dig(obj: Any, path: Path) -> Any:
    for key in path:
        if isinstance(obj, dict):
            obj = obj.get(key, _MISSING)
        elif isinstance(obj, msgspec.Struct) and key in obj.__struct_fields__:
            obj = getattr(obj, key)
        else:
            return _MISSING
    return obj


def _put(out: dict[str, Any], path: Path, value: Any) -> None:
    for key in path[:-1]:
        out = out.setdefault(key, {})
    out[path[-1]] = value


def _put_missing(out: dict[str, Any], path: Path, value: Any) -> None:
    """Write ``value`` unless a mapped field already occupies the place."""
    place: Any = out
    for key in path[:-1]:
        place = place.setdefault(key, {})
        if not isinstance(place, dict):
            return
    place.setdefault(path[-1], value)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


_AT = re.compile(r"(.*) - at `(\$.*)`", re.DOTALL)

# (top-level source key | None, nested source path | None, source JSON path,
#  top-level target key | None, target path, target name, converter, default, required)
_Compiled = tuple[str | None, Path | None, str, str | None, Path, str, Converter | None, Any, bool]


class FieldMapper(Generic[T]):
    """Map a dict or msgspec Struct record to a dict (or to ``target`` via ``msgspec.convert``).

    ``unknown`` decides what happens to source fields no rule references, at any depth:
    ``"error"`` raises :class:`MappingError`, ``"ignore"`` drops them, ``"keep"`` copies them to
    the same path in the result (never over a mapped field). A source field referenced as a
    whole counts as fully consumed, nested fields included.
    """

    @overload
    def __init__(
        self: FieldMapper[dict[str, Any]],
        *rules: Rule,
        unknown: UnknownMode = "error",
        target: None = None,
    ) -> None: ...
    @overload
    def __init__(
        self: FieldMapper[T], *rules: Rule, unknown: UnknownMode = "error", target: type[T]
    ) -> None: ...
    def __init__(
        self, *rules: Rule, unknown: UnknownMode = "error", target: type[T] | None = None
    ) -> None:
        if unknown not in ("error", "ignore", "keep"):
            valid = ["error", "ignore", "keep"]
            raise RouteDefinitionError("field mapper: bad unknown=", option="unknown", valid=valid)
        self.rules = rules
        self.unknown: UnknownMode = unknown
        self.target = target
        raw: dict[str, Any] = {}
        compiled: list[_Compiled] = []
        seen: set[Path] = set()
        parents: set[Path] = set()
        for rule in rules:
            if isinstance(rule, Drop):
                for path in rule.paths:
                    _insert(raw, path)
                continue
            if not isinstance(rule, Field):
                raise RouteDefinitionError(f"field mapper: not a rule: {rule!r}")
            tgt = rule.target
            if tgt in seen or tgt in parents or any(tgt[:i] in seen for i in range(1, len(tgt))):
                raise RouteDefinitionError(f"field mapper: target {'.'.join(tgt)!r} set twice")
            seen.add(tgt)
            parents.update(tgt[:i] for i in range(1, len(tgt)))
            src, default = rule.source, rule.default if rule.source else rule.value
            if src is not None:
                _insert(raw, src)
            skey, spath = (src[0], None) if src and len(src) == 1 else (None, src)
            sjp, tkey = (_jpath(src) if src else "$"), (tgt[0] if len(tgt) == 1 else None)
            compiled.append(
                (skey, spath, sjp, tkey, tgt, ".".join(tgt), rule.convert, default, rule.required)
            )
        self._rules = tuple(compiled)
        self._known = _Known(raw, ())

    def __call__(self, record: Any) -> T:
        """Map one record; raises :class:`MappingError` naming the offending path."""
        if isinstance(record, dict):
            rec = record
        elif isinstance(record, msgspec.Struct):
            rec = msgspec.structs.asdict(record)
        else:
            raise MappingError("$", f"expected a mapping or Struct, got {type(record).__name__}")
        if self.unknown == "error":
            _scan(rec, self._known, None)
        missing, unset = _MISSING, _UNSET
        out: dict[str, Any] = {}
        for skey, spath, sjp, tkey, tpath, tname, conv, default, required in self._rules:
            if skey is not None:
                value = rec.get(skey, missing)
            elif spath is not None:
                value = _dig(rec, spath)
            else:
                value = missing  # constant: its value is the default
            if value is None or value is missing or value is unset:
                if default is not missing:
                    value = default
                elif required:
                    raise MappingError(sjp, "required field is missing")
                elif value is not None:
                    continue
            elif conv is not None:
                try:
                    value = conv(value)
                except Exception as exc:
                    reason = f"cannot convert {_short(value)} for target {tname!r}: {exc}"
                    raise MappingError(sjp, reason) from exc
            if tkey is not None:
                out[tkey] = value
            else:
                _put(out, tpath, value)
        if self.unknown == "keep":
            found: list[tuple[Path, Any]] = []
            _scan(rec, self._known, found)
            for path, value in found:
                _put_missing(out, path, value)
        if self.target is None:
            return cast(T, out)
        return self._to_target(out, self.target)

    @staticmethod
    def _to_target(out: dict[str, Any], target: type[T]) -> T:
        try:
            return msgspec.convert(out, target, strict=False)
        except msgspec.ValidationError as exc:
            match = _AT.fullmatch(str(exc))
            path, reason = (match[2], match[1]) if match else ("$", str(exc))
            raise MappingError(path, f"{reason} (target {target.__name__})") from exc


def _num(value: Any) -> Decimal:
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int | float | str) and not isinstance(value, bool):
        try:
            number = Decimal(str(value))
        except InvalidOperation:
            raise ValueError(f"not a number: {_short(value)}") from None
    else:
        raise TypeError(f"expected a number, got {type(value).__name__}")
    if not number.is_finite():
        raise ValueError(f"not a finite number: {_short(value)}")
    return number


def scale(factor: float | str, *, to: type[int] | type[float] = float) -> Converter:
    """Multiply by ``factor`` in decimal arithmetic (19.99 * 100 is 1999, not 1998.99...).

    ``to=int`` rounds half away from zero (commercial rounding).
    """
    by = _num(factor)
    if to is int:
        return lambda v: int((_num(v) * by).to_integral_value(ROUND_HALF_UP))
    if to is float:
        return lambda v: float(_num(v) * by)
    raise RouteDefinitionError(f"scale: to must be int or float, got {to!r}")


def to_int(value: Any) -> int:
    """int from an int, an integral float/Decimal or a numeric string; 1.5 raises."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    number = _num(value)
    if number != number.to_integral_value():
        raise ValueError(f"not an integer: {_short(value)}")
    return int(number)


def to_float(value: Any) -> float:
    """float from a number or a numeric string; bools raise."""
    return value if isinstance(value, float) else float(_num(value))


to_str: Final[Converter] = str
strip: Final[Converter] = str.strip  # non-str values raise TypeError
lower: Final[Converter] = str.lower
upper: Final[Converter] = str.upper
_BOOLS: Final[dict[object, bool]] = {"true": True, "yes": True, "1": True, 1: True}
_BOOLS.update({"false": False, "no": False, "0": False, 0: False})


def to_bool(value: Any) -> bool:
    """bool from a bool, 0/1 or true/false/yes/no/1/0 (any case); anything else raises."""
    if isinstance(value, bool):
        return value
    key = value.strip().lower() if isinstance(value, str) else value
    if isinstance(key, str | int) and key in _BOOLS:
        return _BOOLS[key]
    raise ValueError(f"not a boolean: {_short(value)} (expected true/false, yes/no or 1/0)")


def to_date(fmt: str = "%Y-%m-%d") -> Converter:
    """Converter parsing a string with ``fmt`` into a ``datetime.date`` (dates pass through)."""

    def parse(value: Any) -> date:
        if isinstance(value, date):
            return value.date() if isinstance(value, datetime) else value
        return datetime.strptime(value, fmt).date()  # non-str raises TypeError

    return parse


def chain(*converters: Converter) -> Converter:
    """Apply ``converters`` left to right: ``chain(strip, lower)``."""

    def chained(value: Any) -> Any:
        for conv in converters:
            value = conv(value)
        return value

    return chained


class _Converters:
    """The converter helpers as a namespace: ``convert.scale(100, to=int)``, ``convert.to_int``."""

    scale = staticmethod(scale)
    to_int = staticmethod(to_int)
    to_float = staticmethod(to_float)
    to_str = staticmethod(to_str)
    to_bool = staticmethod(to_bool)
    to_date = staticmethod(to_date)
    strip = staticmethod(strip)
    lower = staticmethod(lower)
    upper = staticmethod(upper)
    chain = staticmethod(chain)


convert: Final = _Converters()
