"""File sources of a reconcile: JSON lines (streamed), CSV and JSON arrays.

Reads go off the event loop (a thread hop per 1 MB chunk or per batch of CSV rows), and a
bad line fails the run naming the file and the line.
"""

from __future__ import annotations

import asyncio
import csv
import functools
from collections.abc import AsyncIterator, Callable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any, BinaryIO, Literal

import msgspec

from eip.reconcile.base import ReconcileError
from eip.reconcile.sources import BATCH, Source, at_path

__all__ = ["FileFormat", "FileSource", "file_source"]

FileFormat = Literal["jsonl", "csv", "json"]

_CHUNK = 1 << 20  # bytes read per thread hop
_SUFFIXES: dict[str, FileFormat] = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".json": "json",
}
_decode = msgspec.json.Decoder().decode
_decode_lines = msgspec.json.Decoder().decode_lines
_raw_items = msgspec.json.Decoder(list[msgspec.Raw]).decode


class FileSource(Source):
    """Records of a file: see :func:`file_source`."""

    def __init__(
        self,
        path: Path,
        format: FileFormat,
        *,
        name: str,
        items: str | None = None,
        delimiter: str = ",",
        encoding: str = "utf-8",
    ) -> None:
        self.path = path
        self.format: FileFormat = format
        self.name = name
        self.items = items
        self.delimiter = delimiter
        self.encoding = encoding

    def describe(self) -> str:
        return f"{self.name} ({self.format} file {self.path})"

    def _where(self, line: int | None = None) -> str:
        at = f", line {line}" if line is not None else ""
        return f"source '{self.name}' ({self.path}{at})"

    def _record(self, index: int) -> str:
        return f"source '{self.name}' ({self.path}, record {index})"

    async def batches(self) -> AsyncIterator[list[Any]]:
        if self.format == "jsonl":
            reader = self._jsonl()
        elif self.format == "csv":
            reader = self._csv()
        else:
            reader = self._json()
        async for batch in reader:
            yield batch

    def _open(self, mode: Literal["rb", "r"]) -> Any:
        try:
            if mode == "rb":
                return open(self.path, "rb")  # closed by the reader
            return open(self.path, encoding=self.encoding, newline="")
        except OSError as exc:
            raise ReconcileError(f"{self._where()}: cannot open: {exc.strerror}") from exc

    async def _chunks(self) -> AsyncIterator[tuple[bytes, int]]:
        """Whole lines, about a megabyte at a time, with the number of the first one."""
        handle: BinaryIO = await asyncio.to_thread(self._open, "rb")
        try:
            rest = b""
            line = 1  # the line the next chunk starts at
            while True:
                chunk = await asyncio.to_thread(handle.read, _CHUNK)
                if not chunk:
                    if rest.strip():
                        yield rest, line
                    return
                data = rest + chunk
                cut = data.rfind(b"\n") + 1
                if cut == 0:
                    rest = data
                    continue
                whole, rest = data[:cut], data[cut:]
                yield whole, line
                line += whole.count(b"\n")
        finally:
            handle.close()

    async def _jsonl(self) -> AsyncIterator[list[Any]]:
        async for data, first in self._chunks():
            yield self._lines(data, first)

    def _lines(self, data: bytes, first: int) -> list[Any]:
        try:
            return _decode_lines(data)
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
            pass
        for number, text in enumerate(data.split(b"\n"), first):
            if text.strip():
                try:
                    _decode(text)
                except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
                    raise ReconcileError(f"{self._where(number)}: invalid JSON: {exc}") from exc
        raise ReconcileError(f"{self._where()}: invalid JSON lines")  # pragma: no cover

    async def _csv(self) -> AsyncIterator[list[Any]]:
        handle = await asyncio.to_thread(self._open, "r")
        try:
            rows: Iterator[dict[str, Any]] = csv.DictReader(handle, delimiter=self.delimiter)
            while True:
                try:
                    batch = await asyncio.to_thread(lambda: list(islice(rows, BATCH)))
                except (csv.Error, UnicodeDecodeError) as exc:
                    raise ReconcileError(f"{self._where()}: invalid CSV: {exc}") from exc
                if not batch:
                    return
                yield batch
        finally:
            handle.close()

    async def _json(self) -> AsyncIterator[list[Any]]:
        def read() -> bytes:
            with self._open("rb") as handle:
                data: bytes = handle.read()
                return data

        data = await asyncio.to_thread(read)
        try:
            if self.items is None:
                raws = _raw_items(data)
            else:
                raws = at_path(_decode(data), self.items, self._where())
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
            raise ReconcileError(f"{self._where()}: not a JSON array of records: {exc}") from exc
        for start in range(0, len(raws), BATCH):
            part = raws[start : start + BATCH]
            yield [_decode(r) for r in part] if self.items is None else part

    # -- keyed: the key decoded alone, the record kept as its JSON text -------------------
    def keyed_batches(self, key: str) -> AsyncIterator[tuple[list[Any], list[bytes]]] | None:
        """JSON lines and JSON arrays hand the engine each record's own bytes with its key
        (decoded alone, the rest skipped): a record is decoded in full only when it differs
        from the other side's. CSV has no such form (None)."""
        if self.format == "jsonl":
            return self._jsonl_keyed(_key_decoder(key), key)
        if self.format == "json" and self.items is None:
            return self._json_keyed(_key_decoder(key), key)
        return None

    async def _jsonl_keyed(
        self, decoder: msgspec.json.Decoder[Any], key: str
    ) -> AsyncIterator[tuple[list[Any], list[bytes]]]:
        async for data, first in self._chunks():
            lines = data.split(b"\n")
            if not lines[-1]:
                lines.pop()  # the chunk ends with a newline
            try:
                keys = [found.k for found in decoder.decode_lines(data)]
            except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
                keys = []
            if len(keys) != len(lines):  # blank lines (which decode_lines skips), or an error
                lines = [text for text in lines if text and not text.isspace()]
                if len(keys) != len(lines):
                    keys = self._keys_line_by_line(data, first, decoder, key)
            yield keys, lines

    def _keys_line_by_line(
        self, data: bytes, first: int, decoder: msgspec.json.Decoder[Any], key: str
    ) -> list[Any]:
        keys = []
        for number, text in enumerate(data.split(b"\n"), first):
            if text and not text.isspace():
                keys.append(_key_of(decoder, text, key, functools.partial(self._where, number)))
        return keys

    async def _json_keyed(
        self, decoder: msgspec.json.Decoder[Any], key: str
    ) -> AsyncIterator[tuple[list[Any], list[bytes]]]:
        def read() -> bytes:
            with self._open("rb") as handle:
                data: bytes = handle.read()
                return data

        data = await asyncio.to_thread(read)
        try:
            raws = _raw_items(data)
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
            raise ReconcileError(f"{self._where()}: not a JSON array of records: {exc}") from exc
        for start in range(0, len(raws), BATCH):
            part = raws[start : start + BATCH]
            keys = [
                _key_of(decoder, raw, key, functools.partial(self._record, start + i + 1))
                for i, raw in enumerate(part)
            ]
            yield keys, [bytes(raw) for raw in part]


@functools.lru_cache(maxsize=64)
def _key_decoder(key: str) -> msgspec.json.Decoder[Any]:
    """Decodes only ``key`` of a JSON object (a scalar), skipping the other fields."""
    shape = msgspec.defstruct("Key", [("k", str | int | float | bool | None)], rename={"k": key})
    return msgspec.json.Decoder(shape)


def _key_of(
    decoder: msgspec.json.Decoder[Any], text: Any, key: str, where: Callable[[], str]
) -> Any:
    try:
        return decoder.decode(text).k
    except msgspec.ValidationError as exc:
        raise ReconcileError(f"{where()}: no usable key field {key!r}: {exc}") from exc
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise ReconcileError(f"{where()}: invalid JSON: {exc}") from exc


def file_source(
    path: str | Path,
    format: FileFormat | None = None,
    *,
    name: str | None = None,
    items: str | None = None,
    delimiter: str = ",",
    encoding: str = "utf-8",
) -> Source:
    """Records of a file. ``format`` defaults from the suffix: ``.jsonl``/``.ndjson`` (one
    JSON object a line: streamed, the large-file choice), ``.csv`` (a header row, then one
    record a row, values as str: normalise numbers and dates), ``.json`` (an array of objects,
    or with ``items="data.rows"`` the array at that path; read whole, so memory grows with
    the file)."""
    file = Path(path)
    chosen = format or _SUFFIXES.get(file.suffix.lower())
    if chosen not in ("jsonl", "csv", "json"):
        raise ValueError(
            f"file_source({str(path)!r}): say format='jsonl', 'csv' or 'json' "
            f"(the suffix {file.suffix!r} does not tell)"
        )
    return FileSource(
        file,
        chosen,
        name=name or file.stem,
        items=items,
        delimiter=delimiter,
        encoding=encoding,
    )
