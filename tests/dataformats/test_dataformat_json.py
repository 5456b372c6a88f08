"""JSON data format: typed decoding, error locations, and marshalling."""

from __future__ import annotations

import datetime
import uuid

import msgspec
import pytest

from eip.dataformats import DataFormat, JsonFormat, json
from eip.errors import DataFormatError, MarshalError, UnmarshalError


class Address(msgspec.Struct):
    street: str
    zip: str
    country: str = "FR"


class Customer(msgspec.Struct):
    id: int
    name: str
    address: Address
    tags: list[str] = []
    since: datetime.date | None = None


GOOD = b'{"id":7,"name":"Ann","address":{"street":"1 rue X","zip":"75001"},"tags":["vip"]}'


def unmarshal_error(fmt: JsonFormat, data: object) -> UnmarshalError:
    with pytest.raises(UnmarshalError) as info:
        fmt.unmarshal(data)
    return info.value


def test_json_is_a_data_format() -> None:
    fmt = json(Customer)
    assert isinstance(fmt, DataFormat)
    assert fmt.name == "json"
    assert repr(fmt) == "json(Customer)"
    assert repr(json()) == "json()"


def test_untyped_unmarshal_accepts_all_buffer_types_and_str() -> None:
    fmt = json()
    expected = {"a": [1, 2.5, None, True], "b": "é"}
    raw = '{"a": [1, 2.5, null, true], "b": "é"}'
    for data in (raw, raw.encode(), bytearray(raw.encode()), memoryview(raw.encode())):
        assert fmt.unmarshal(data) == expected


def test_typed_unmarshal_builds_structs() -> None:
    customer = json(Customer).unmarshal(GOOD)
    assert customer == Customer(
        id=7, name="Ann", address=Address(street="1 rue X", zip="75001"), tags=["vip"]
    )


def test_typed_round_trip() -> None:
    fmt = json(Customer)
    customer = Customer(1, "Bob", Address("s", "z", "DE"), ["a"], datetime.date(2024, 2, 29))
    data = fmt.marshal(customer)
    assert isinstance(data, bytes)
    assert fmt.unmarshal(data) == customer


def test_wrong_type_names_json_path() -> None:
    data = b'{"id":7,"name":"Ann","address":{"street":"s","zip":75001}}'
    err = unmarshal_error(json(Customer), data)
    assert err.format == "json"
    assert err.location == "$.address.zip"
    assert err.reason == "expected str, got int"
    assert str(err) == "invalid json input: $.address.zip: expected str, got int"
    assert isinstance(err.__cause__, msgspec.ValidationError)
    assert isinstance(err, DataFormatError)


def test_wrong_type_inside_list_names_index() -> None:
    err = unmarshal_error(json(Customer), GOOD.replace(b'["vip"]', b'["vip", 3]'))
    assert err.location == "$.tags[1]"
    assert err.reason == "expected str, got int"


def test_missing_required_field() -> None:
    err = unmarshal_error(json(Customer), b'{"id":7,"name":"Ann"}')
    assert err.location == "$"
    assert err.reason == "missing required field 'address'"
    nested = unmarshal_error(json(Customer), b'{"id":7,"name":"A","address":{"street":"s"}}')
    assert nested.location == "$.address"
    assert nested.reason == "missing required field 'zip'"
    assert str(nested) == "invalid json input: $.address: missing required field 'zip'"


def test_wrong_top_level_shape_has_root_location() -> None:
    err = unmarshal_error(json(Customer), b"[1, 2]")
    assert err.location == "$"
    assert err.reason == "expected object, got array"


def test_unknown_field_when_forbidden() -> None:
    class Strict(msgspec.Struct, forbid_unknown_fields=True):
        a: int

    err = unmarshal_error(json(Strict), b'{"a": 1, "b": 2}')
    assert (err.location, err.reason) == ("$", "contains unknown field 'b'")


def test_constraint_and_special_type_messages() -> None:
    class Order(msgspec.Struct):
        qty: int = msgspec.field(default=1)
        ref: uuid.UUID | None = None

    err = unmarshal_error(json(Order), b'{"ref": "nope"}')
    assert (err.location, err.reason) == ("$.ref", "invalid UUID")


def test_malformed_json_gives_byte_offset() -> None:
    err = unmarshal_error(json(), b'{"id": 1, "x": tru}')
    assert err.location == "byte 19"
    assert err.reason == "malformed JSON: invalid character"
    assert str(err) == "invalid json input: byte 19: malformed JSON: invalid character"
    assert isinstance(err.__cause__, msgspec.DecodeError)


def test_malformed_multiline_json_adds_line_and_column() -> None:
    err = unmarshal_error(json(), b'{\n  "id": 1,\n  "ok": tru\n}')
    assert err.location == "byte 25"
    assert err.reason == "malformed JSON: invalid character at line 3, column 12"


def test_trailing_garbage_and_truncation() -> None:
    trailing = unmarshal_error(json(), b'{"a": 1} x')
    assert (trailing.location, trailing.reason) == (
        "byte 10",
        "malformed JSON: trailing characters",
    )
    truncated = unmarshal_error(json(), b'{"a": [1, 2')
    keys = unmarshal_error(json(), b'{"id": 1,, "x": 2}')
    assert (keys.location, keys.reason) == ("byte 9", "malformed JSON: object keys must be strings")
    assert (truncated.location, truncated.reason) == (
        "byte 11",
        "malformed JSON: input ended early",
    )


def test_empty_input() -> None:
    for data in (b"", b"  \n", ""):
        err = unmarshal_error(json(Customer), data)
        assert (err.location, err.reason) == ("byte 0", "empty input")


def test_invalid_utf8_is_an_unmarshal_error() -> None:
    err = unmarshal_error(json(), b'{"name": "\xff\xfe"}')
    assert err.reason == "invalid UTF-8: invalid start byte"
    assert err.location == "byte 10"
    assert isinstance(err.__cause__, UnicodeDecodeError)


def test_lone_surrogate_in_str_input() -> None:
    err = unmarshal_error(json(), '{"name": "\ud800"}')
    assert err.reason.startswith("text is not valid Unicode")
    assert isinstance(err.__cause__, UnicodeEncodeError)


def test_deep_nesting_is_an_unmarshal_error() -> None:
    err = unmarshal_error(json(), b"[" * 100_000 + b"]" * 100_000)
    assert err.reason == "document is nested too deeply"
    assert isinstance(err.__cause__, RecursionError)


@pytest.mark.parametrize(("data", "kind"), [(42, "int"), (None, "NoneType"), ({"a": 1}, "dict")])
def test_wrong_body_type(data: object, kind: str) -> None:
    err = unmarshal_error(json(), data)
    assert err.reason == f"expected bytes or str, got {kind}"
    assert err.location is None


def test_marshal_encodes_builtins_and_structs() -> None:
    fmt = json()
    assert fmt.marshal({"a": [1, None, True]}) == b'{"a":[1,null,true]}'
    assert fmt.marshal(Address("s", "z")) == b'{"street":"s","zip":"z","country":"FR"}'
    assert fmt.marshal("text") == b'"text"'
    assert fmt.marshal(datetime.date(2024, 1, 2)) == b'"2024-01-02"'


def test_marshal_passes_bytes_through_unchanged() -> None:
    payload = b'{"already": "json"}'
    assert json().marshal(payload) is payload


def test_marshal_error_names_type_and_path() -> None:
    class Widget:
        pass

    with pytest.raises(MarshalError) as info:
        json().marshal({"order": {"lines": [1, {"widget": Widget()}]}})
    err = info.value
    assert err.format == "json"
    assert err.reason == "cannot encode value of type 'Widget' at $.order.lines[1].widget"
    assert str(err) == f"cannot marshal to json: {err.reason}"
    assert isinstance(err.__cause__, TypeError)


def test_marshal_error_for_unsupported_keys_and_cycles() -> None:
    with pytest.raises(MarshalError, match=r"only dicts with str-like .* at \$\.a$"):
        json().marshal({"a": {(1, 2): "tuple key"}})
    cycle: list[object] = []
    cycle.append(cycle)
    with pytest.raises(MarshalError, match="nested too deeply or contains a reference cycle"):
        json().marshal(cycle)


def test_formats_are_reusable_after_errors() -> None:
    fmt = json(Customer)
    with pytest.raises(UnmarshalError):
        fmt.unmarshal(b"{")
    assert fmt.unmarshal(GOOD).id == 7
