"""CSV data format on the stdlib ``csv`` module, with streaming reads for the splitter.

Errors name the physical line (1-based, counting the header and blank lines, and the first
line of a record that spans lines) and the data row (1-based, header excluded), plus the
column when a value fails to convert: ``line 4 (row 3), column 'age': expected int, got str``.
"""

from __future__ import annotations

import codecs
import csv as _csv
import io
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import msgspec
import msgspec.inspect as mi

from eip.dataformats._json import encode_failure, msgspec_reason
from eip.errors import MarshalError, RouteDefinitionError, UnmarshalError

__all__ = ["CsvFormat"]

_FIELDED_TYPES = (mi.StructType, mi.DataclassType, mi.TypedDictType, mi.NamedTupleType)
_SCALARS = (str, int, float)


def _fields(type: Any) -> tuple[list[str], frozenset[str], frozenset[str]]:
    """(column names, required columns, columns where an empty cell means None)."""
    info = mi.type_info(type) if type is not None else None
    if not isinstance(info, _FIELDED_TYPES):
        return [], frozenset(), frozenset()
    names = [f.encode_name for f in info.fields]
    required = frozenset(f.encode_name for f in info.fields if f.required)
    nullable = frozenset(
        f.encode_name
        for f in info.fields
        if isinstance(f.type, mi.UnionType)
        and any(isinstance(t, mi.NoneType) for t in f.type.types)
    )
    return names, required, nullable


def _cell(value: Any, row: int, column: str) -> Any:
    if value is None or value.__class__ in _SCALARS:
        return value
    if value.__class__ is bool:
        return "true" if value else "false"
    kind = type(value).__name__
    raise MarshalError("csv", f"row {row}, column '{column}': a CSV cell cannot hold a {kind}")


def _unconvertible_row(body: list[Any]) -> MarshalError:
    """Find the row (and column) that ``msgspec.to_builtins`` refused (error path only)."""
    for number, item in enumerate(body, 1):
        try:
            msgspec.to_builtins(item)
        except (TypeError, ValueError) as exc:
            reason = encode_failure(exc, item, msgspec.to_builtins)
            text, _, path = reason.rpartition(" at $")
            column = path.removeprefix(".").split(".", 1)[0].split("[", 1)[0]
            where = f"row {number}, column '{column}'" if column else f"row {number}"
            return MarshalError("csv", f"{where}: {text}")
    return MarshalError("csv", "body cannot be converted to rows")


class CsvFormat:
    """Read CSV into dicts of str (or ``type`` instances) and write rows back as CSV.

    The first row is the header unless ``header=False``; then ``columns`` (or the fields of a
    Struct ``type``) name the values. ``columns`` with ``header=True`` renames the file's
    header. With a Struct ``type``, an empty cell in an optional field reads as None, and the
    header is checked for missing required columns before any row is read. marshal writes a
    header row and ends every line with ``"\\n"`` (not RFC 4180's CRLF: Unix tools and most
    readers expect LF, and Python's csv reads either).
    """

    name = "csv"
    __slots__ = (
        "_convert",
        "_dialect",
        "_field_names",
        "_nullable",
        "_required",
        "columns",
        "encoding",
        "header",
        "skip_blank_lines",
        "type",
    )

    def __init__(
        self,
        type: Any = None,
        *,
        delimiter: str = ",",
        quotechar: str = '"',
        header: bool = True,
        columns: list[str] | None = None,
        encoding: str = "utf-8",
        skip_blank_lines: bool = True,
    ) -> None:
        try:
            codecs.lookup(encoding)
        except LookupError as exc:
            raise RouteDefinitionError(f"csv(encoding={encoding!r}): unknown encoding") from exc
        for option, value in (("delimiter", delimiter), ("quotechar", quotechar)):
            if len(value) != 1 or value in "\r\n":
                reason = f"csv({option}={value!r}) must be one character, not a line break"
                raise RouteDefinitionError(reason)
        if delimiter == quotechar:
            raise RouteDefinitionError("csv(): delimiter and quotechar must differ")
        self.type = type
        self.header = header
        self.columns = list(columns) if columns is not None else None
        self.encoding = encoding
        self.skip_blank_lines = skip_blank_lines
        self._field_names, self._required, self._nullable = _fields(type)
        if not header and self.columns is None and not self._field_names:
            reason = "csv(header=False) needs columns=[...] or a Struct type to name the fields"
            raise RouteDefinitionError(reason)
        if self.columns is not None and len(set(self.columns)) != len(self.columns):
            raise RouteDefinitionError(f"csv(columns=...) has duplicates: {self.columns}")
        self._dialect: dict[str, Any] = {
            "delimiter": delimiter,
            "quotechar": quotechar,
            "strict": True,
        }
        self._convert: Callable[[Any], Any] | None = None
        if type is not None:
            self._convert = lambda row: msgspec.convert(row, type, strict=False)

    def __repr__(self) -> str:
        args = [getattr(self.type, "__name__", repr(self.type))] if self.type is not None else []
        if self._dialect["delimiter"] != ",":
            args.append(f"delimiter={self._dialect['delimiter']!r}")
        if not self.header:
            args.append("header=False")
        return f"csv({', '.join(args)})"

    # -- reading -------------------------------------------------------------------------

    def unmarshal(self, data: Any) -> list[Any]:
        """Read all rows of ``data`` (bytes, str or an iterable of lines) into a list."""
        return list(self.iter_rows(data))

    def iter_rows(self, data: Any) -> Iterator[Any]:
        """Yield rows one at a time. Given a file object (opened with ``newline=""``) or any
        iterable of lines, only one record is held in memory, so huge files stream."""
        return self._rows(self._lines(data))

    def _lines(self, data: Any) -> Iterator[str]:
        if isinstance(data, str):
            return iter(io.StringIO(data.removeprefix("\ufeff"), newline=""))
        if isinstance(data, bytes | bytearray | memoryview):
            raw = bytes(data)
            try:
                text = raw.decode(self.encoding)
            except UnicodeDecodeError as exc:
                line = raw.count(b"\n", 0, exc.start) + 1
                reason = f"cannot decode as {self.encoding}: {exc.reason} (byte {exc.start})"
                raise UnmarshalError("csv", reason, location=f"line {line}") from exc
            return iter(io.StringIO(text.removeprefix("\ufeff"), newline=""))
        if isinstance(data, Iterable) and not isinstance(data, dict):
            return self._decode_lines(data)
        raise UnmarshalError("csv", f"expected bytes, str or lines, got {type(data).__name__}")

    def _decode_lines(self, lines: Iterable[Any]) -> Iterator[str]:
        decoder = codecs.getincrementaldecoder(self.encoding)()
        number = 0
        for number, item in enumerate(lines, 1):
            line = item if isinstance(item, str) else self._decode(decoder, item, number)
            yield line.removeprefix("\ufeff") if number == 1 else line
        rest = self._decode(decoder, b"", number, final=True)  # a cut-off multi-byte character
        if rest:
            yield rest

    def _decode(
        self, decoder: codecs.IncrementalDecoder, raw: Any, line: int, final: bool = False
    ) -> str:
        try:
            return decoder.decode(raw, final)
        except UnicodeDecodeError as exc:
            reason = f"cannot decode as {self.encoding}: {exc.reason}"
            raise UnmarshalError("csv", reason, location=f"line {line}") from exc

    def _rows(self, lines: Iterator[str]) -> Iterator[Any]:
        reader = _csv.reader(lines, **self._dialect)
        keys: list[str] | None = None if self.header else self.columns or self._field_names
        width = len(keys) if keys is not None else 0
        convert, nullable = self._convert, self._nullable
        last_line = row = 0
        while True:
            try:
                fields = next(reader)
            except StopIteration:
                return
            except _csv.Error as exc:
                raise self._malformed(exc, last_line + 1, reader.line_num, row, keys) from exc
            line, last_line = last_line + 1, reader.line_num
            if not fields:
                if self.skip_blank_lines:
                    continue
                fields = [""]
            if keys is None:
                keys = self._header(fields, line)
                width = len(keys)
                continue
            row += 1
            if len(fields) != width:
                reason = f"expected {width} fields, got {len(fields)}"
                raise UnmarshalError("csv", reason, location=f"line {line} (row {row})")
            record: dict[str, Any] = dict(zip(keys, fields, strict=True))
            if convert is None:
                yield record
                continue
            if nullable:
                for key in nullable:
                    if record.get(key) == "":
                        record[key] = None
            try:
                yield convert(record)
            except msgspec.ValidationError as exc:
                raise self._conversion_error(exc, line, row) from exc

    @staticmethod
    def _malformed(
        exc: _csv.Error, start: int, end: int, row: int, keys: list[str] | None
    ) -> UnmarshalError:
        # Report where the record began: an unterminated quote is only noticed at the end of
        # the file (or at the field size limit), far from the quote itself.
        location = f"line {start}" + (f" (row {row + 1})" if keys is not None else " (header)")
        reason = f"malformed CSV: {exc}"
        if end > start:
            reason += f" (record runs to line {end})"
        return UnmarshalError("csv", reason, location=location)

    def _header(self, fields: list[str], line: int) -> list[str]:
        location = f"line {line} (header)"
        if self.columns is not None:
            if len(fields) != len(self.columns):
                reason = f"header has {len(fields)} fields, columns=... names {len(self.columns)}"
                raise UnmarshalError("csv", reason, location=location)
            return self.columns
        seen: set[str] = set()
        for name in fields:
            if name in seen:
                raise UnmarshalError("csv", f"duplicate column '{name}'", location=location)
            seen.add(name)
        missing = sorted(self._required - seen)
        if missing:
            names = ", ".join(f"'{name}'" for name in missing)
            reason = f"missing required column{'s' if len(missing) > 1 else ''} {names}"
            raise UnmarshalError("csv", reason, location=location)
        return fields

    @staticmethod
    def _conversion_error(exc: msgspec.ValidationError, line: int, row: int) -> UnmarshalError:
        reason, path = msgspec_reason(str(exc))
        location = f"line {line} (row {row})"
        column = path.removeprefix("$.").split(".", 1)[0].split("[", 1)[0]
        if path != "$" and column:
            location += f", column '{column}'"
        return UnmarshalError("csv", reason, location=location)

    # -- writing -------------------------------------------------------------------------

    def marshal(self, body: Any) -> bytes:
        """Write a dict or Struct, or a list of them, as CSV with a header row. Columns come
        from ``columns=``, else the Struct's fields, else the first row's keys. Bytes pass
        through unchanged."""
        if isinstance(body, bytes):
            return body
        if isinstance(body, dict | msgspec.Struct):
            body = [body]
        elif isinstance(body, str) or not isinstance(body, Iterable):
            kind = type(body).__name__
            raise MarshalError("csv", f"expected a dict, a Struct or a list of them, got {kind}")
        body = list(body)
        try:
            rows = msgspec.to_builtins(body)
        except (TypeError, ValueError) as exc:
            raise _unconvertible_row(body) from exc
        columns = self._columns_for(body, rows)
        out = io.StringIO()
        writer = _csv.writer(out, lineterminator="\n", **self._dialect)
        if self.header:
            writer.writerow(columns)
        known = frozenset(columns)
        for number, record in enumerate(rows, 1):
            if not isinstance(record, dict):
                kind = type(record).__name__
                raise MarshalError("csv", f"row {number}: expected a dict or Struct, got {kind}")
            if not record.keys() <= known:
                extra = next(key for key in record if key not in known)
                reason = (
                    f"row {number}: key {extra!r} is not a column (columns: {', '.join(columns)})"
                )
                raise MarshalError("csv", reason)
            writer.writerow([_cell(record.get(c), number, c) for c in columns])
        try:
            return out.getvalue().encode(self.encoding)
        except UnicodeEncodeError as exc:
            reason = (
                f"text cannot be encoded as {self.encoding}: {exc.object[exc.start : exc.end]!r}"
            )
            raise MarshalError("csv", reason) from exc

    def _columns_for(self, body: Any, rows: list[Any]) -> list[str]:
        if self.columns is not None:
            return self.columns
        if self._field_names:
            return self._field_names
        if body and isinstance(body[0], msgspec.Struct):
            return list(_fields(type(body[0]))[0])
        if rows and isinstance(rows[0], dict):
            return [str(key) for key in rows[0]]
        return []
