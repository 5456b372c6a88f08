"""CSV data format: rows, typed rows, streaming, and errors that name line, row and column."""

from __future__ import annotations

import datetime
import io
import pathlib
import tracemalloc
from collections.abc import Iterator

import msgspec
import pytest

from eip.dataformats import CsvFormat, DataFormat, csv
from eip.errors import MarshalError, RouteDefinitionError, UnmarshalError


class Person(msgspec.Struct):
    name: str
    age: int
    email: str | None = None


PEOPLE = b"name,age,email\nAnn,34,ann@example.com\nBob,41,\n"


def unmarshal_error(fmt: CsvFormat, data: object) -> UnmarshalError:
    with pytest.raises(UnmarshalError) as info:
        fmt.unmarshal(data)
    return info.value


# -- reading -----------------------------------------------------------------------------


def test_unmarshal_to_dicts_of_str() -> None:
    fmt = csv()
    assert isinstance(fmt, DataFormat)
    assert fmt.name == "csv"
    assert fmt.unmarshal(PEOPLE) == [
        {"name": "Ann", "age": "34", "email": "ann@example.com"},
        {"name": "Bob", "age": "41", "email": ""},
    ]


def test_unmarshal_accepts_str_buffers_and_lines() -> None:
    expected = csv().unmarshal(PEOPLE)
    assert csv().unmarshal(PEOPLE.decode()) == expected
    assert csv().unmarshal(bytearray(PEOPLE)) == expected
    assert csv().unmarshal(memoryview(PEOPLE)) == expected
    assert csv().unmarshal(PEOPLE.decode().splitlines()) == expected
    assert csv().unmarshal(io.BytesIO(PEOPLE)) == expected
    assert csv().unmarshal(io.StringIO(PEOPLE.decode(), newline="")) == expected


def test_typed_rows_convert_strings_and_empty_optional_cells() -> None:
    assert csv(Person).unmarshal(PEOPLE) == [
        Person("Ann", 34, "ann@example.com"),
        Person("Bob", 41, None),
    ]


def test_quoted_fields_with_delimiters_quotes_and_newlines() -> None:
    data = 'name,note\n"Smith, J","said ""hi""\nthen left"\n'
    assert csv().unmarshal(data) == [{"name": "Smith, J", "note": 'said "hi"\nthen left'}]


def test_custom_delimiter_and_quotechar() -> None:
    data = "a;b\n'x;y';2\n"
    assert csv(delimiter=";", quotechar="'").unmarshal(data) == [{"a": "x;y", "b": "2"}]


def test_utf8_bom_is_dropped_from_first_header() -> None:
    data = b"\xef\xbb\xbfname,age\nAnn,1\n"
    assert csv(Person).unmarshal(data) == [Person("Ann", 1)]
    assert csv(Person).unmarshal([b"\xef\xbb\xbfname,age\n", b"Ann,1\n"]) == [Person("Ann", 1)]


def test_other_encodings() -> None:
    data = "name,city\nZoë,Köln\n".encode("latin-1")
    assert csv(encoding="latin-1").unmarshal(data) == [{"name": "Zoë", "city": "Köln"}]


def test_no_header_uses_columns_or_struct_fields() -> None:
    assert csv(header=False, columns=["a", "b"]).unmarshal("1,2\n3,4\n") == [
        {"a": "1", "b": "2"},
        {"a": "3", "b": "4"},
    ]
    assert csv(Person, header=False).unmarshal("Ann,3,\n") == [Person("Ann", 3)]


def test_columns_with_header_renames_the_header() -> None:
    data = "Full Name,Age (years)\nAnn,3\n"
    assert csv(Person, columns=["name", "age"]).unmarshal(data) == [Person("Ann", 3)]


def test_blank_lines_are_skipped_by_default() -> None:
    data = "\nname,age\n\nAnn,1\n\n\nBob,2\n"
    assert [p.name for p in csv(Person).unmarshal(data)] == ["Ann", "Bob"]


def test_blank_line_kept_is_a_row_with_one_empty_field() -> None:
    assert csv(skip_blank_lines=False).unmarshal("a\n1\n\n2\n") == [
        {"a": "1"},
        {"a": ""},
        {"a": "2"},
    ]
    err = unmarshal_error(csv(skip_blank_lines=False), "a,b\n1,2\n\n")
    assert (err.location, err.reason) == ("line 3 (row 2)", "expected 2 fields, got 1")


def test_empty_input_gives_no_rows() -> None:
    assert csv().unmarshal(b"") == []
    assert csv().unmarshal("name,age\n") == []


# -- reading errors ----------------------------------------------------------------------


def test_conversion_error_names_line_row_and_column() -> None:
    data = b"name,age\nAnn,34\n\nBob,forty\n"
    err = unmarshal_error(csv(Person), data)
    assert err.location == "line 4 (row 2), column 'age'"
    assert err.reason == "expected int, got str"
    assert str(err) == "invalid csv input: line 4 (row 2), column 'age': expected int, got str"
    assert isinstance(err.__cause__, msgspec.ValidationError)


def test_line_numbers_count_multiline_records() -> None:
    data = 'name,age\n"Ann\nSmith",1\nBob,x\n'
    err = unmarshal_error(csv(Person), data)
    assert err.location == "line 4 (row 2), column 'age'"


def test_too_few_and_too_many_fields() -> None:
    data = "a,b,c,d,e\n1,2,3,4,5\n1,2,3,4\n"
    err = unmarshal_error(csv(), data)
    assert (err.location, err.reason) == ("line 3 (row 2)", "expected 5 fields, got 4")
    err = unmarshal_error(csv(), "a,b\n1,2,3\n")
    assert (err.location, err.reason) == ("line 2 (row 1)", "expected 2 fields, got 3")


def test_unterminated_quote_points_at_the_record_start() -> None:
    data = 'name,age\nAnn,1\n"Bob,2\nCid,3\nDan,4\n'
    err = unmarshal_error(csv(), data)
    assert err.location == "line 3 (row 2)"
    assert err.reason == "malformed CSV: unexpected end of data (record runs to line 5)"


def test_stray_quote_is_malformed() -> None:
    err = unmarshal_error(csv(), 'a,b\n"x"y,2\n')
    assert (err.location, err.reason) == (
        "line 2 (row 1)",
        "malformed CSV: ',' expected after '\"'",
    )


def test_invalid_encoding_names_the_line() -> None:
    err = unmarshal_error(csv(), b"name,age\nAnn,1\nB\xffb,2\n")
    assert err.location == "line 3"
    assert err.reason == "cannot decode as utf-8: invalid start byte (byte 16)"
    assert isinstance(err.__cause__, UnicodeDecodeError)
    streamed = unmarshal_error(csv(), [b"name,age\n", b"Ann,1\n", b"B\xffb,2\n"])
    assert (streamed.location, streamed.reason) == (
        "line 3",
        "cannot decode as utf-8: invalid start byte",
    )


def test_truncated_multibyte_character_at_end_of_stream() -> None:
    err = unmarshal_error(csv(), [b"a\n", b"\xc3"])
    assert (err.location, err.reason) == (
        "line 2",
        "cannot decode as utf-8: unexpected end of data",
    )


def test_header_problems_are_found_before_rows() -> None:
    missing = unmarshal_error(csv(Person), "name,email\nAnn,a@b\n")
    assert (missing.location, missing.reason) == (
        "line 1 (header)",
        "missing required column 'age'",
    )
    duplicate = unmarshal_error(csv(), "a,b,a\n1,2,3\n")
    assert (duplicate.location, duplicate.reason) == ("line 1 (header)", "duplicate column 'a'")
    renamed = unmarshal_error(csv(columns=["x"]), "a,b\n1,2\n")
    assert renamed.reason == "header has 2 fields, columns=... names 1"


def test_wrong_input_type() -> None:
    assert unmarshal_error(csv(), 42).reason == "expected bytes, str or lines, got int"
    assert unmarshal_error(csv(), {"a": 1}).reason == "expected bytes, str or lines, got dict"


def test_bad_definitions_fail_early() -> None:
    with pytest.raises(RouteDefinitionError, match="unknown encoding"):
        csv(encoding="no-such-codec")
    with pytest.raises(RouteDefinitionError, match="must be one character"):
        csv(delimiter="::")
    with pytest.raises(RouteDefinitionError, match="needs columns"):
        csv(header=False)
    with pytest.raises(RouteDefinitionError, match="duplicates"):
        csv(columns=["a", "a"])


# -- streaming ---------------------------------------------------------------------------


def test_iter_rows_streams_without_materialising() -> None:
    produced = 0

    def lines() -> Iterator[str]:
        nonlocal produced
        yield "name,age,email\n"
        for i in range(100_000):
            produced += 1
            yield f"person{i},{i % 90},\n"

    rows = csv(Person).iter_rows(lines())
    assert next(rows) == Person("person0", 0)
    assert next(rows) == Person("person1", 1)
    assert produced <= 3  # only what the reader needed, not the 100k lines

    tracemalloc.start()
    try:
        count = sum(1 for _ in rows)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 99_998
    assert produced == 100_000
    assert peak < 256 * 1024  # bounded: far below 100k rows kept alive


def test_iter_rows_reports_errors_lazily_with_position() -> None:
    def lines() -> Iterator[str]:
        yield "name,age\n"
        yield "Ann,1\n"
        yield "Bob,oops\n"

    rows = csv(Person).iter_rows(lines())
    assert next(rows) == Person("Ann", 1)
    with pytest.raises(UnmarshalError) as info:
        next(rows)
    assert info.value.location == "line 3 (row 2), column 'age'"


def test_iter_rows_from_a_text_file(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "people.csv"
    path.write_bytes(PEOPLE)
    with path.open(newline="", encoding="utf-8") as handle:
        assert [p.name for p in csv(Person).iter_rows(handle)] == ["Ann", "Bob"]
    with path.open("rb") as handle:
        assert [p.name for p in csv(Person).iter_rows(handle)] == ["Ann", "Bob"]


# -- writing -----------------------------------------------------------------------------


def test_marshal_structs_uses_field_order_and_lf() -> None:
    people = [Person("Ann", 34, "ann@example.com"), Person("Smith, J", 41)]
    assert csv(Person).marshal(people) == (
        b'name,age,email\nAnn,34,ann@example.com\n"Smith, J",41,\n'
    )
    assert csv().marshal(people) == csv(Person).marshal(people)


def test_marshal_dicts_uses_first_keys_and_formats_values() -> None:
    rows = [
        {"id": 1, "ok": True, "when": datetime.date(2024, 5, 1), "note": None, "ratio": 0.5},
        {"id": 2, "ok": False, "ratio": 1.0},
    ]
    assert csv().marshal(rows) == b"id,ok,when,note,ratio\n1,true,2024-05-01,,0.5\n2,false,,,1.0\n"


def test_marshal_single_row_and_columns_option() -> None:
    assert csv().marshal({"a": 1, "b": 2}) == b"a,b\n1,2\n"
    assert csv(columns=["b", "a"]).marshal({"a": 1, "b": 2}) == b"b,a\n2,1\n"
    assert csv(header=False, columns=["a", "b"]).marshal([{"a": 1, "b": 2}]) == b"1,2\n"


def test_marshal_round_trip() -> None:
    fmt = csv(Person, delimiter=";")
    people = [Person('He said "hi"; left', 1, None), Person("multi\nline", 2, "x@y")]
    assert fmt.unmarshal(fmt.marshal(people)) == people


def test_marshal_passes_bytes_through() -> None:
    assert csv().marshal(b"a\n1\n") == b"a\n1\n"


def test_marshal_unknown_key_names_key_and_row() -> None:
    with pytest.raises(MarshalError) as info:
        csv().marshal([{"a": 1, "b": 2}, {"a": 3, "c": 4}])
    assert info.value.reason == "row 2: key 'c' is not a column (columns: a, b)"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ([{"a": {"x": 1}}], "row 1, column 'a': a CSV cell cannot hold a dict"),
        ([{"a": 1}, {"a": [1, 2]}], "row 2, column 'a': a CSV cell cannot hold a list"),
        ([{"a": 1}, 5], "row 2: expected a dict or Struct, got int"),
        ("a,b", "expected a dict, a Struct or a list of them, got str"),
        (3, "expected a dict, a Struct or a list of them, got int"),
    ],
)
def test_marshal_errors(body: object, reason: str) -> None:
    with pytest.raises(MarshalError) as info:
        csv().marshal(body)
    assert info.value.reason == reason


class Widget:
    pass


def test_marshal_unsupported_value_names_row_and_column() -> None:
    with pytest.raises(MarshalError) as info:
        csv().marshal([{"a": 1}, {"a": Widget()}])
    assert info.value.reason == "row 2, column 'a': cannot encode value of type 'Widget'"
    with pytest.raises(MarshalError) as info:
        csv().marshal([{"a": 1}, Widget()])
    assert info.value.reason == "row 2: cannot encode value of type 'Widget'"


def test_marshal_unencodable_text() -> None:
    with pytest.raises(MarshalError) as info:
        csv(encoding="ascii").marshal({"name": "Zoë"})
    assert info.value.reason == "text cannot be encoded as ascii: 'ë'"


def test_repr() -> None:
    assert repr(csv(Person, delimiter=";")) == "csv(Person, delimiter=';')"
