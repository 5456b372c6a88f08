"""Finding a DOCTYPE before parsing: XML forbids one anywhere but the prolog, so scanning the
prolog (past the declaration, processing instructions and comments) refuses DTDs, entity
declarations and with them XXE and billion-laughs payloads before lxml reads a byte of them,
while text that merely mentions a DOCTYPE (in CDATA, say) passes. Shared by the XML data
format and the SOAP envelopes."""

from __future__ import annotations

import re
from typing import Final

__all__ = ["has_doctype"]

_WHITESPACE: Final = re.compile(rb"[ \t\r\n]*")
_UTF8_BOM: Final = b"\xef\xbb\xbf"
_WIDE_BOMS: Final = (
    (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xff\xfe\x00\x00", "utf-32-le"),
    (b"\xfe\xff", "utf-16-be"),
    (b"\xff\xfe", "utf-16-le"),
    (b"\x00<\x00", "utf-16-be"),
    (b"<\x00", "utf-16-le"),
)


def _ascii_prolog(data: bytes) -> bytes:
    """The bytes to scan for ``<!DOCTYPE``: UTF-16/32 input is transcoded first."""
    for bom, codec in _WIDE_BOMS:
        if data.startswith(bom):
            text = data.decode(codec, errors="replace").lstrip("\ufeff")
            return text.encode("utf-8", errors="replace")
    return data[3:] if data.startswith(_UTF8_BOM) else data


def has_doctype(data: bytes) -> bool:
    """Look for ``<!DOCTYPE`` in the prolog only, where it must be if anywhere, so text that
    merely mentions one (in CDATA, say) is not refused."""
    data = _ascii_prolog(data)
    size, i = len(data), 0
    while i < size:
        i = _WHITESPACE.match(data, i).end()  # type: ignore[union-attr]  # always matches
        if data.startswith(b"<?", i):
            end, close = data.find(b"?>", i + 2), 2
        elif data.startswith(b"<!--", i):
            end, close = data.find(b"-->", i + 4), 3
        else:
            return data.startswith(b"<!DOCTYPE", i)
        if end < 0:
            return False
        i = end + close
    return False
