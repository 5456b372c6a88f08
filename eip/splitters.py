"""Built-in split expressions for ``.split(...)``: JSON array items, XML elements, CSV rows,
lines, and groups of N.

Each function returns an expression of the exchange that yields the parts lazily. The body may
be bytes or str (already in memory), a file path (``pathlib.Path``; the file is opened and
streamed, so a file larger than memory splits in bounded memory), or an open file object::

    .split(csv_rows(Customer), pipeline().to("seda:customers"))
    .split(groups(500, csv_rows()), pipeline().marshal(json()).to("file:out"))

``json_items`` decodes the whole array (msgspec cannot stream one): use ``json_lines`` for
huge inputs. ``xml_elements`` uses lxml's ``iterparse`` with the same hardened settings as the
XML data format (no entities, no DTD, no network) and frees each element after yielding it.
"""

from __future__ import annotations

import io
import itertools
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import msgspec
from lxml import etree

from eip.dataformats import csv as csv_format
from eip.dataformats import json as json_format
from eip.errors import UnmarshalError
from eip.message import Exchange

__all__ = ["csv_rows", "groups", "json_items", "json_lines", "lines", "xml_elements"]

Source = Callable[[Exchange], Iterable[Any]]


def _is_path(body: Any) -> bool:
    return isinstance(body, os.PathLike)


def json_items(type: Any = None) -> Source:
    """The items of a JSON array body, decoded (to ``type`` items when given)."""
    items = json_format(list[type] if type is not None else list[Any])

    def split(exchange: Exchange) -> Iterable[Any]:
        body = exchange.body
        if _is_path(body):
            body = Path(body).read_bytes()
        elif hasattr(body, "read"):
            body = body.read()
        result: list[Any] = items.unmarshal(body)
        return result

    return _named(split, f"json_items({_type_name(type)})")


def json_lines(type: Any = None) -> Source:
    """One decoded JSON document per line (NDJSON), streamed; blank lines are skipped."""
    decode = msgspec.json.Decoder(type if type is not None else Any).decode

    def split(exchange: Exchange) -> Iterator[Any]:
        for number, line in enumerate(_binary_lines(exchange.body), 1):
            if line.strip():
                try:
                    yield decode(line)
                except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                    raise UnmarshalError("json", str(exc), location=f"line {number}") from exc

    return _named(split, f"json_lines({_type_name(type)})")


def lines(*, keep_blank: bool = False, encoding: str = "utf-8") -> Source:
    """Text lines without their line ending, streamed."""

    def split(exchange: Exchange) -> Iterator[str]:
        for raw in _binary_lines(exchange.body):
            line = raw.decode(encoding).rstrip("\r\n")
            if line or keep_blank:
                yield line

    return _named(split, "lines()")


def csv_rows(type: Any = None, **options: Any) -> Source:
    """CSV rows as dicts (or ``type`` instances), streamed; options as for ``csv()``."""
    fmt = csv_format(type, **options)

    def split(exchange: Exchange) -> Iterator[Any]:
        body = exchange.body
        if _is_path(body):
            with open(body, encoding=fmt.encoding, newline="") as handle:
                yield from fmt.iter_rows(handle)
        else:
            yield from fmt.iter_rows(body)

    return _named(split, f"csv_rows({_type_name(type)})")


def xml_elements(tag: str, *, as_bytes: bool = True) -> Source:
    """Each element named ``tag`` (local name, any namespace), as serialized bytes (or the lxml
    element with ``as_bytes=False``, valid only until the next part)."""

    def split(exchange: Exchange) -> Iterator[Any]:
        body = exchange.body
        if isinstance(body, str):
            body = body.encode()
        source = io.BytesIO(body) if isinstance(body, bytes | bytearray) else body
        context = etree.iterparse(
            source,
            events=("start", "end"),
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            huge_tree=False,
        )
        checked = False
        try:
            for event, element in context:
                if not checked:
                    checked = True
                    if element.getroottree().docinfo.doctype:
                        raise UnmarshalError("xml", "DTDs are not allowed", location="prolog")
                if event != "end" or etree.QName(element).localname != tag:
                    continue
                yield etree.tostring(element) if as_bytes else element
                element.clear(keep_tail=False)
                parent = element.getparent()
                while parent is not None and element.getprevious() is not None:
                    del parent[0]
        except etree.XMLSyntaxError as exc:
            line, column = exc.position
            raise UnmarshalError("xml", exc.msg, location=f"line {line}, column {column}") from exc

    return _named(split, f"xml_elements({tag!r})")


def groups(size: int, source: Source) -> Source:
    """Lists of up to ``size`` consecutive parts of ``source`` (re-batching)."""
    if size < 1:
        raise ValueError(f"group size must be >= 1, got {size}")

    def split(exchange: Exchange) -> Iterator[list[Any]]:
        iterator = iter(source(exchange))
        while batch := list(itertools.islice(iterator, size)):
            yield batch

    return _named(split, f"groups({size}, {getattr(source, 'description', '...')})")


def _type_name(kind: Any) -> str:
    return "" if kind is None else getattr(kind, "__name__", str(kind))


def _named(split: Any, description: str) -> Source:
    """Give a split source a readable name for ``eip routes`` and error messages."""
    split.description = description
    return split  # type: ignore[no-any-return]


def _binary_lines(body: Any) -> Iterator[bytes]:
    if isinstance(body, str):
        body = body.encode()
    if isinstance(body, bytes | bytearray):
        yield from io.BytesIO(body)
    elif _is_path(body):
        with open(body, "rb") as handle:
            yield from handle
    elif hasattr(body, "read"):
        for line in body:
            yield line.encode() if isinstance(line, str) else line
    else:
        raise UnmarshalError("lines", f"cannot split a {type(body).__name__} body into lines")
