"""Data formats: turn message bodies into Python objects and back.

Each format is a small object with ``marshal(body) -> bytes`` and ``unmarshal(data)``. They
are pure and synchronous, so the route compiler fuses them into the sync fast path. Build a
format once per route (``json(Customer)``): its encoder, decoder and parser are built in the
constructor and reused for every message. Bad input raises
:class:`~eip.errors.UnmarshalError` naming the place (JSON path, XML line/column or element
path, CSV line/row/column); a body that cannot be written raises
:class:`~eip.errors.MarshalError`.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from eip.dataformats._csv import CsvFormat
from eip.dataformats._json import JsonFormat
from eip.dataformats._xml import XmlFormat

__all__ = ["CsvFormat", "DataFormat", "JsonFormat", "XmlFormat", "csv", "json", "xml"]


@runtime_checkable
class DataFormat(Protocol):
    """What ``.marshal(...)`` and ``.unmarshal(...)`` accept: anything with a ``name`` and
    these two sync methods, so users can plug in their own formats.

    Optionally, for the fused pipeline's fast path, a format may also have ``fast_unmarshal``
    and ``fast_marshal``: plain callables that return exactly what ``unmarshal`` returns, and
    what ``marshal`` returns for a body that is not ``bytes`` (which ``marshal`` passes
    through), whenever they do not raise. They are inlined into the route without their error
    mapping; when one raises, the step calls ``unmarshal``/``marshal`` on the same body, which
    raises the mapped error (:class:`~eip.errors.UnmarshalError`, ...). ``json()`` has them:
    the raw msgspec decoder and encoder.
    """

    name: str

    def marshal(self, body: Any) -> bytes:
        """Write ``body`` in this format."""
        ...

    def unmarshal(self, data: Any) -> Any:
        """Read ``data`` (usually bytes) into Python objects."""
        ...


def json(type: Any = None) -> JsonFormat:
    """JSON via msgspec; pass a Struct (or any msgspec-supported type) to get typed,
    validated bodies in one pass."""
    return JsonFormat(type)


def xml(
    type: Any = None,
    *,
    as_dict: bool = False,
    root: str | None = None,
    strip_namespaces: bool = True,
    max_bytes: int = 10 * 1024 * 1024,
) -> XmlFormat:
    """XML via a hardened lxml parser (no DTDs, no entities, no network, bounded size).

    Unmarshal gives the root element, a ``{root: content}`` dict (``as_dict=True``) or
    ``type`` built from the root's content; ``root`` names the root element for marshal (and
    is checked on unmarshal).
    """
    return XmlFormat(
        type, as_dict=as_dict, root=root, strip_namespaces=strip_namespaces, max_bytes=max_bytes
    )


def csv(
    type: Any = None,
    *,
    delimiter: str = ",",
    quotechar: str = '"',
    header: bool = True,
    columns: list[str] | None = None,
    encoding: str = "utf-8",
    skip_blank_lines: bool = True,
) -> CsvFormat:
    """CSV rows as dicts of str, or as ``type`` instances; ``iter_rows`` streams big files."""
    return CsvFormat(
        type,
        delimiter=delimiter,
        quotechar=quotechar,
        header=header,
        columns=columns,
        encoding=encoding,
        skip_blank_lines=skip_blank_lines,
    )
