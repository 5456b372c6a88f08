"""The codecs' fast simple-type converters against zeep's own: for every built-in zeep type
with a fast path, reading and writing give exactly zeep's value or text (type included), on
plain, padded, tab/CR/LF-laden and invalid input, and a failure is the same failure."""

from __future__ import annotations

import datetime
from decimal import Decimal
from typing import Any

import pytest
import zeep.xsd.types.builtins as builtins

from eip.components.soap._codec_parts import _Converter, _Invalid

TEXTS = [
    "1",
    "0",
    "-7",
    " 42 ",
    "10.50",
    "  3.25\u00a0",
    "1e3",
    "true",
    "false",
    " true ",
    "1\t",
    "\n2.5\r\n",
    "\t\ttrue",
    "a\tb",
    "",
    "   ",
    "abc",
    "NaN",
    "inf",
    "1_000",
]
VALUES: list[Any] = [
    True,
    False,
    0,
    7,
    -3,
    Decimal("1000.00"),
    Decimal("1E+3"),
    Decimal("-0.5"),
    Decimal("NaN"),
    1.5,
    "10.50",
    "text",
    "",
    datetime.date(2024, 2, 29),
]
TYPES = [
    builtins.Decimal,
    builtins.Boolean,
    builtins.Float,
    builtins.Double,
    builtins.Integer,
    builtins.Long,
    builtins.Int,
    builtins.Short,
    builtins.UnsignedInt,
    builtins.String,
]


def outcome(fn: Any, value: Any) -> tuple[str, Any]:
    """What calling ``fn`` gives: its value with its type, or the exception type."""
    try:
        result = fn(value)
    except _Invalid:
        return ("invalid", None)
    except Exception as exc:  # the failure itself is what is compared
        return ("raised", type(exc))
    return ("value", (type(result), repr(result)))


def zeep_parse(xsd_type: Any, text: str) -> tuple[str, Any]:
    """_Converter.parse's contract on zeep's own function: TypeError/ValueError -> None,
    anything else -> _Invalid."""
    try:
        result = xsd_type.pythonvalue(text)
    except (TypeError, ValueError):
        return ("value", (type(None), "None"))
    except Exception:  # zeep failing otherwise: _Invalid
        return ("invalid", None)
    return ("value", (type(result), repr(result)))


@pytest.mark.parametrize("cls", TYPES, ids=lambda c: c.__name__)
def test_reading_is_zeeps(cls: type) -> None:
    xsd_type = cls()
    convert = _Converter(xsd_type)
    for text in TEXTS:
        assert outcome(convert.parse, text) == zeep_parse(xsd_type, text), (cls, text)


@pytest.mark.parametrize("cls", TYPES, ids=lambda c: c.__name__)
def test_writing_is_zeeps(cls: type) -> None:
    xsd_type = cls()
    convert = _Converter(xsd_type)
    for value in VALUES:
        ours = outcome(convert.text, value)
        theirs = outcome(xsd_type.xmlvalue, value)
        if theirs[0] == "raised":
            assert ours == ("invalid", None), (cls, value)
        else:
            assert ours == theirs, (cls, value)


def test_fast_paths_are_used_for_the_common_types() -> None:
    assert _Converter(builtins.Decimal()).read is not builtins.Decimal().pythonvalue
    assert _Converter(builtins.Integer()).read is int
    assert bool in _Converter(builtins.Boolean()).exact
    assert Decimal in _Converter(builtins.Decimal()).exact
    assert _Converter(builtins.String()).read is None  # identity, as before
