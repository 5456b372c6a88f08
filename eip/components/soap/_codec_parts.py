"""The parts :mod:`eip.components.soap.codec` builds its element codecs from: zeep's classes
(imported once, untyped), simple-type converters bound once, and the signals the compiler and
the codecs pass among themselves (unsupported, hand to zeep, invalid)."""

from __future__ import annotations

import datetime
import decimal
import functools
import importlib
from collections.abc import Callable, Mapping
from types import SimpleNamespace
from typing import Any

import msgspec
from lxml import etree

from eip.components.soap.zeep_support import plain

_XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"
_SubElement = etree.SubElement
#: Values handed to zeep's xmlvalue as they are; others may be zeep's own objects or Structs.
_SCALARS = frozenset({str, int, float, bool, decimal.Decimal, datetime.date, datetime.datetime})


class _Unsupported(Exception):
    """The compiler does not mirror this construct: the caller keeps zeep."""


class _Fallback(Exception):
    """This document needs zeep's own machinery (xsi:type, comments, zeep value objects)."""


class _Invalid(Exception):
    """Bad data or XML; ``path`` grows as the error climbs back to the root element."""

    def __init__(self, message: str, *where: str) -> None:
        super().__init__(message)
        self.message = message
        self.path: list[str] = list(where)

    def where(self) -> str:
        return ".".join(reversed(self.path))


@functools.cache
def _zeep() -> SimpleNamespace:
    """zeep's classes, imported on first use (zeep is an optional dependency) and untyped."""
    xsd: Any = importlib.import_module("zeep.xsd")
    values: Any = importlib.import_module("zeep.xsd.valueobjects")
    indicators: Any = importlib.import_module("zeep.xsd.elements.indicators")
    base: Any = importlib.import_module("zeep.xsd.types.base")
    # NotSet, SkipValue and Nil share one class; CDATA, like them, is written by zeep only
    specials = (values.CompoundValue, values.AnyObject, type(xsd.const.NotSet), etree.CDATA)
    return SimpleNamespace(
        Element=xsd.Element,
        Attribute=xsd.Attribute,
        Sequence=indicators.Sequence,
        All=indicators.All,
        Type=base.Type,
        ComplexType=xsd.ComplexType,
        AnySimpleType=xsd.AnySimpleType,
        String=xsd.String,
        specials=specials,
    )


def _collapsed(
    convert: Callable[[str], Any], original: Callable[[str], Any]
) -> Callable[[str], Any]:
    """zeep's ``treat_whitespace("collapse")`` reading, without its ``re.sub`` where that
    changes nothing: ``convert(value.strip())`` when no tab, CR or LF is in the value (the
    sub then only replaces spaces with spaces), else zeep's own function."""

    def read(value: str) -> Any:
        if "\n" in value or "\r" in value or "\t" in value:
            return original(value)
        return convert(value.strip())

    return read


def _bool_text(value: bool) -> str:
    return "true" if value else "false"


def _decimal_text(value: decimal.Decimal) -> str:
    return format(value, "f")


def _str_text(value: str) -> str:
    return value


@functools.cache
def _fast_paths() -> tuple[dict[Any, Callable[[Any], Callable[[str], Any]]], dict[Any, Any]]:
    """zeep's built-in converters (the functions, as classes inherit them) with an exact
    faster equivalent: readers by ``pythonvalue`` (given zeep's bound one to fall back to),
    and writers by ``xmlvalue``, per Python type of the value (exact types only: a bool is
    not written as an int)."""
    b: Any = importlib.import_module("zeep.xsd.types.builtins")
    readers: dict[Any, Callable[[Any], Callable[[str], Any]]] = {
        b.Decimal.pythonvalue: lambda zeep: _collapsed(decimal.Decimal, zeep),
        b.Boolean.pythonvalue: lambda zeep: _collapsed(lambda v: v in ("true", "1"), zeep),
        b.Float.pythonvalue: lambda zeep: _collapsed(float, zeep),
        b.Double.pythonvalue: lambda zeep: _collapsed(float, zeep),
        b.Integer.pythonvalue: lambda zeep: int,  # int(value), as zeep does
        b.Long.pythonvalue: lambda zeep: int,
    }
    writers: dict[Any, Any] = {
        b.String.xmlvalue: {str: _str_text},
        b.Boolean.xmlvalue: {bool: _bool_text},
        b.Decimal.xmlvalue: {decimal.Decimal: _decimal_text, int: str, float: str, str: str},
        b.Integer.xmlvalue: {int: str, str: str},
    }
    return readers, writers


class _Converter:
    """One simple type: zeep's ``pythonvalue``/``xmlvalue``, bound, skipped where identity,
    and replaced by an exact faster equivalent for zeep's common built-ins (``exact``: the
    writers by the value's type)."""

    __slots__ = ("exact", "read", "write", "write_str")

    def __init__(self, xsd_type: Any) -> None:
        z, cls = _zeep(), type(xsd_type)
        overrides = (
            not isinstance(xsd_type, z.AnySimpleType)
            or cls.parse_xmlelement is not z.AnySimpleType.parse_xmlelement
            or cls.render is not z.AnySimpleType.render
            or cls.validate is not z.AnySimpleType.validate
            or cls.parse_kwargs is not z.Type.parse_kwargs
        )
        if overrides:
            raise _Unsupported(f"simple type {cls.__name__}")
        identity = cls.pythonvalue is z.String.pythonvalue
        readers, writers = _fast_paths()
        self.read: Callable[[str], Any] | None = None
        if not identity:
            fast = readers.get(cls.pythonvalue)
            self.read = xsd_type.pythonvalue if fast is None else fast(xsd_type.pythonvalue)
        self.write: Callable[[Any], str] = xsd_type.xmlvalue
        self.write_str = cls.xmlvalue is z.String.xmlvalue  # a str is written as it is
        self.exact: dict[type, Callable[[Any], str]] = writers.get(cls.xmlvalue, {})

    def parse(self, text: str) -> Any:
        """zeep's reading: a value it cannot convert (TypeError, ValueError) becomes None."""
        read = self.read
        if read is None:
            return text
        try:
            return read(text)
        except (TypeError, ValueError):
            return None
        except Exception as exc:  # decimal.InvalidOperation escapes zeep itself
            raise _Invalid(f"cannot read {text!r}: {type(exc).__name__}") from exc

    def text(self, value: Any) -> str:
        exact = self.exact.get(type(value))
        if exact is not None:
            return exact(value)
        if self.write_str and type(value) is str:
            return value
        if type(value) not in _SCALARS:
            if isinstance(value, _zeep().specials):
                raise _Fallback
            if isinstance(value, msgspec.Struct | Mapping | list | tuple):
                value = plain(value)
        try:
            return self.write(value)
        except Exception as exc:
            raise _Invalid(f"cannot write {value!r}: {exc}") from exc


def _dict(value: Any) -> dict[str, Any]:
    """A complex value as zeep's data_to_element sees it (after ``plain``), else zeep's job."""
    if type(value) is dict:
        return value
    if isinstance(value, msgspec.Struct | Mapping) and not isinstance(value, _zeep().specials):
        result: dict[str, Any] = plain(value)
        return result
    raise _Fallback
