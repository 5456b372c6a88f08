"""Code lists for the field mapper: a CSV reference table that reloads when its file changes,
and :func:`lookup`, the converter that translates a value through a table.

::

    regions = CsvTable("reference/regions.csv", key="crm_region", normalise=str.upper)
    to_employee = FieldMapper(
        field("region_code", source="region", convert=lookup(regions, "hr_region")),
        field("cost_center", source="region", convert=lookup(regions, "cost_center")),
        ...
    )

**Reloading.** A lookup checks the file at most every ``check_every`` seconds (a ``stat``:
modification time, size and inode); when it changed, the table is read again, so the next
record maps with the new codes without a restart. A new version that cannot be used (the
key column gone, a key twice, unreadable) is refused: the table keeps its last good version,
logs a warning naming the file and the problem once, and keeps checking. Replace the file
atomically (write a temporary file, rename it over the table) so a reader never sees half a
file.

Both are re-exported by :mod:`eip.mapping`, where they belong for users; they live here so
the mapper module stays about mapping.
"""

from __future__ import annotations

import csv
import logging
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

from eip.errors import RouteDefinitionError

__all__ = ["CsvTable", "lookup"]

log = logging.getLogger("eip.mapping")

_MISSING: Final[Any] = object()
Signature = tuple[int, int, int]


class TableError(ValueError):
    """A version of a table's file cannot be used."""


class CsvTable:
    """Rows of a CSV file (a header line, then one row a line) by the ``key`` column.

    ``normalise`` is applied to the keys of the table and to every key looked up
    (``str.upper`` makes the lookup case-insensitive). ``columns`` are required to be in
    the header. The file must exist and be valid when the table is made (a route file's
    mistake shows at load); later versions are checked as described in the module docstring.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        key: str,
        columns: tuple[str, ...] = (),
        normalise: Callable[[str], str] | None = None,
        delimiter: str = ",",
        encoding: str = "utf-8-sig",
        check_every: float = 1.0,
    ) -> None:
        self.path = Path(path)
        self.key = key
        self.required = (key, *columns)
        self.normalise = normalise
        self.delimiter = delimiter
        self.encoding = encoding
        self.check_every = check_every
        #: How many versions were loaded (1 after construction); a test can wait on it.
        self.version = 0
        #: Why the newest version of the file was refused (None when it was used).
        self.last_error: str | None = None
        self._checked = 0.0
        self._refused: Signature | None = None
        try:
            signature = self._signature()
            self.columns, self._rows = self._read()
        except (OSError, TableError) as exc:
            raise RouteDefinitionError(f"lookup table {self.path}: {_reason(exc)}") from exc
        self._signature_loaded = signature
        self.version = 1
        self._checked = time.monotonic()

    def __repr__(self) -> str:
        return f"CsvTable({str(self.path)!r}, key={self.key!r}, rows={len(self._rows)})"

    @property
    def name(self) -> str:
        return self.path.name

    def _signature(self) -> Signature:
        stat = os.stat(self.path)
        return stat.st_mtime_ns, stat.st_size, stat.st_ino

    def _read(self) -> tuple[tuple[str, ...], dict[str, dict[str, str]]]:
        with open(self.path, encoding=self.encoding, newline="") as handle:
            reader = csv.DictReader(handle, delimiter=self.delimiter)
            header = tuple(reader.fieldnames or ())
            missing = [c for c in self.required if c not in header]
            if missing:
                shown = ", ".join(header) or "no header"
                raise TableError(f"no column {', '.join(missing)} (columns: {shown})")
            rows: dict[str, dict[str, str]] = {}
            try:
                for row in reader:
                    value = (row.get(self.key) or "").strip()
                    if not value:
                        continue  # a blank line, a row without a key: not a code
                    key = self.normalise(value) if self.normalise else value
                    if key in rows:
                        raise TableError(f"key {key!r} twice (line {reader.line_num})")
                    rows[key] = {k: (v or "").strip() for k, v in row.items() if k is not None}
            except (csv.Error, UnicodeDecodeError) as exc:
                raise TableError(f"line {reader.line_num}: {exc}") from exc
        return header, rows

    def refresh(self) -> bool:
        """Read the file again if it changed since the last version; True if it was."""
        self._checked = time.monotonic()
        try:
            signature = self._signature()
        except OSError as exc:
            self._refuse(None, f"cannot read it: {_reason(exc)}")
            return False
        if signature == self._signature_loaded or signature == self._refused:
            return False
        try:
            columns, rows = self._read()
        except (OSError, TableError) as exc:
            self._refuse(signature, _reason(exc))
            return False
        self.columns, self._rows = columns, rows
        self._signature_loaded = signature
        self._refused = None
        self.last_error = None
        self.version += 1
        log.info("lookup table %s reloaded: %d rows (v%d)", self.path, len(rows), self.version)
        return True

    def _refuse(self, signature: Signature | None, reason: str) -> None:
        if reason != self.last_error:
            log.warning(
                "lookup table %s: new version refused, keeping the previous one: %s",
                self.path,
                reason,
            )
        self.last_error = reason
        self._refused = signature

    def _fresh(self) -> dict[str, dict[str, str]]:
        if time.monotonic() - self._checked >= self.check_every:
            self.refresh()
        return self._rows

    def row(self, key: Any) -> dict[str, str] | None:
        """The row of ``key`` (normalised), or None."""
        rows = self._fresh()
        if self.normalise is not None and isinstance(key, str):
            key = self.normalise(key)
        return rows.get(key)

    def __contains__(self, key: Any) -> bool:
        return self.row(key) is not None

    def __len__(self) -> int:
        return len(self._fresh())

    @property
    def rows(self) -> Mapping[str, dict[str, str]]:
        """Every row by key (the current version)."""
        return self._fresh()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc)


def lookup(
    table: CsvTable | Mapping[Any, Any],
    column: str | None = None,
    *,
    default: Any = _MISSING,
) -> Callable[[Any], Any]:
    """A converter: the value's row in ``table``, or its ``column``.

    ``table`` is a :class:`CsvTable` or any mapping (a dict of codes: then ``column`` picks
    from a dict value, or leave it out to take the value itself). A value the table does not
    have gives ``default`` when one is set; otherwise it fails, and in a
    :class:`~eip.mapping.FieldMapper` that is a ``MappingError`` naming the field, the value
    and the table."""
    if isinstance(table, CsvTable):
        if column is not None and column not in table.columns:
            raise RouteDefinitionError(
                f"lookup: table {table.name} has no column {column!r}",
                option="column",
                valid=list(table.columns),
            )
        name = table.name
        get: Callable[[Any], Any] = table.row
    elif isinstance(table, Mapping):
        name = f"a table of {len(table)} codes"
        get = table.get
    else:
        raise RouteDefinitionError(f"lookup: not a table: {type(table).__name__}")

    def translate(value: Any) -> Any:
        row = get(value)
        if row is None:
            if default is not _MISSING:
                return default
            raise LookupError(f"{value!r} is not in {name}")
        if column is None:
            return row
        try:
            return row[column]
        except (KeyError, TypeError):
            raise LookupError(f"the row of {value!r} in {name} has no {column!r}") from None

    translate.description = f"lookup({name}, {column!r})"  # type: ignore[attr-defined]
    return translate
