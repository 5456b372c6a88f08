"""The ``file:`` producer: atomic writes (see :mod:`eip.components.file` for the decisions).

A file is written to ``.{name}.{random}.tmp`` in the target directory, flushed, fsynced and
renamed over the final name with :func:`os.replace` (atomic on one filesystem), so a reader
never sees half a file; ``file_exist=append`` is the exception. A name that would leave the
directory (a separator, ``..``) or holds a NUL is refused with an error naming where it came
from (the ``eip.file.name`` header or the ``file_name`` option), before anything is opened.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eip.components.base import Producer
from eip.components.file import FileSpec, _stamp, _template_fields
from eip.errors import EndpointError
from eip.headers import FILE_NAME, FILE_PATH
from eip.message import Exchange

if TYPE_CHECKING:
    from eip.components.file import FileComponent

__all__ = ["FileProducer"]


class FileProducer(Producer):
    """Writes the body to a file in ``directory`` (see the module docstring)."""

    def __init__(self, component: FileComponent, spec: FileSpec) -> None:
        self.component = component
        self.spec = spec
        self.directory = Path(spec.directory)
        self.uri = spec.uri  # the context replaces it with the redacted form
        self._fields = _template_fields(spec.file_name)

    async def process(self, exchange: Exchange) -> None:
        """Write the body; ``file_exist=append`` appends in place and is **not** atomic."""
        body = exchange.body
        if isinstance(body, str):
            data = body.encode("utf-8")
        elif isinstance(body, bytes | bytearray | memoryview):
            data = bytes(body)
        else:
            raise EndpointError(
                f"file producer needs a bytes or str body, got {type(body).__name__} "
                "(marshal it first)",
                endpoint=self.uri,
            )
        name = self._file_name(exchange)
        path = await asyncio.to_thread(self._write, name, data)
        exchange.headers[FILE_PATH] = str(path)

    def _file_name(self, exchange: Exchange) -> str:
        header = exchange.headers.get(FILE_NAME)
        template = self.spec.file_name
        if not template:
            name = str(header) if header else exchange.id
        else:
            if header is None and self._fields & {"name", "stem", "ext"}:
                raise EndpointError(
                    f"file_name {template!r} needs the {FILE_NAME} header, which is missing",
                    endpoint=self.uri,
                )
            original = str(header or "")
            stem, ext = os.path.splitext(original)
            name = template.format(
                id=exchange.id,
                name=original,
                stem=stem,
                ext=ext,
                timestamp=_stamp(self.component.context.clock.time()),
            )
        if name in ("", ".") or ".." in name or any(sep in name for sep in ("/", "\\", os.sep)):
            raise EndpointError(
                f"refusing file name {name!r} (from {self._name_source(template)}): it must be "
                "a plain name inside the directory",
                endpoint=self.uri,
            )
        if "\0" in name:
            raise EndpointError(
                f"refusing file name {name!r} (from {self._name_source(template)}): it holds a "
                "NUL character, which no file name can",
                endpoint=self.uri,
            )
        return name

    def _name_source(self, template: str) -> str:
        """Where a refused name came from, so the error says what to fix."""
        if not template:
            return f"the {FILE_NAME} header"
        if self._fields & {"name", "stem", "ext"}:
            return f"the file_name option {template!r} with the {FILE_NAME} header"
        return f"the file_name option {template!r}"

    def _write(self, name: str, data: bytes) -> Path:
        target = self.directory / name
        try:
            if self.spec.make_dirs:
                self.directory.mkdir(parents=True, exist_ok=True)
            if self.spec.file_exist == "append":
                with open(target, "ab") as handle:
                    self._flush(handle, data)
                return target
            # checked before writing: two writers racing for one new name can both pass
            if self.spec.file_exist == "fail" and target.exists():
                raise EndpointError(f"{target} already exists", endpoint=self.uri)
            temp = self.directory / f".{name}.{secrets.token_hex(6)}.tmp"
            try:
                with open(temp, "xb") as handle:
                    self._flush(handle, data)
                os.replace(temp, target)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temp)
                raise
            self._sync_directory()
        except OSError as exc:
            raise EndpointError(f"cannot write {target}: {exc}", endpoint=self.uri) from exc
        return target

    def _flush(self, handle: Any, data: bytes) -> None:
        handle.write(data)
        handle.flush()
        if self.spec.fsync:
            os.fsync(handle.fileno())

    def _sync_directory(self) -> None:
        """Make the rename durable; best effort (not every OS or filesystem allows it)."""
        with contextlib.suppress(OSError):
            fd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
