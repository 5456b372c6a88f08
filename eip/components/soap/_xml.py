"""Hardened lxml parsing shared by the WSDL loader and the envelope parser.

SOAP forbids DTDs outright, and a WSDL has no use for one, so any document type declaration
is refused rather than merely neutralised: that closes XXE, external DTD fetches and entity
expansion ("billion laughs") before libxml2 does any work on them. The prolog is scanned
first (cheap, and it stops an entity bomb before parsing); the parsed tree's docinfo is
checked as well, for encodings the byte scan cannot read.
"""

from __future__ import annotations

import re
import threading
from typing import Final, TypeAlias

from lxml import etree

__all__ = [
    "QName",
    "UnsafeXmlError",
    "clark",
    "line_of",
    "parse_untrusted",
    "split_qname",
    "xml_text",
]

QName: TypeAlias = tuple[str, str]
"""An XML qualified name as ``(namespace, local)``; the namespace is ``""`` when absent."""

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
_NOT_XML_CHAR: Final = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_local = threading.local()


class UnsafeXmlError(ValueError):
    """Internal: the document is refused or malformed; callers map it to an eip error."""

    def __init__(self, reason: str, line: int | None = None) -> None:
        self.reason = reason
        self.line = line
        super().__init__(f"line {line}: {reason}" if line else reason)


def _parser() -> etree.XMLParser:
    """One parser per thread: lxml parsers keep per-parse state and must not be shared."""
    parser: etree.XMLParser | None = getattr(_local, "parser", None)
    if parser is None:
        parser = etree.XMLParser(
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            dtd_validation=False,
            huge_tree=False,
            collect_ids=False,
        )
        _local.parser = parser
    return parser


def _ascii_prolog(data: bytes) -> bytes:
    """The bytes to scan for ``<!DOCTYPE``: UTF-16/32 input is transcoded first."""
    for bom, codec in _WIDE_BOMS:
        if data.startswith(bom):
            text = data.decode(codec, errors="replace").lstrip("\ufeff")
            return text.encode("utf-8", errors="replace")
    return data[3:] if data.startswith(_UTF8_BOM) else data


def _has_doctype(data: bytes) -> bool:
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


def parse_untrusted(data: bytes, *, base_url: str | None = None) -> etree._Element:
    """Parse ``data`` with entities, network and DTDs off; refuse any DOCTYPE.

    The caller enforces its size limit *before* calling, so no oversized input is parsed.
    """
    if _has_doctype(data):
        raise UnsafeXmlError("a DOCTYPE (DTD or entity declaration) is not allowed")
    try:
        if base_url is None:
            root = etree.fromstring(data, _parser())
        else:
            root = etree.fromstring(data, _parser(), base_url=base_url)
    except etree.XMLSyntaxError as exc:
        raise UnsafeXmlError(f"not well-formed XML: {exc.msg}", exc.lineno) from exc
    docinfo = root.getroottree().docinfo
    if docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise UnsafeXmlError("a DOCTYPE (DTD or entity declaration) is not allowed")
    return root


def line_of(node: etree._Element) -> int | None:
    """The node's source line (lxml-stubs leave ``sourceline`` untyped)."""
    line: object = node.sourceline
    return line if isinstance(line, int) and line > 0 else None


def clark(name: QName) -> str:
    """``(ns, local)`` -> ``{ns}local`` (lxml's tag form)."""
    return f"{{{name[0]}}}{name[1]}" if name[0] else name[1]


def split_qname(tag: str) -> QName:
    """lxml's ``{ns}local`` tag -> ``(ns, local)``."""
    if tag[:1] == "{":
        ns, _, local = tag[1:].partition("}")
        return ns, local
    return "", tag


def xml_text(text: str) -> str:
    """Replace characters XML 1.0 cannot carry (NUL, most C0 controls, lone surrogates) with
    U+FFFD, so a fault built from an arbitrary exception message never fails to serialise."""
    return _NOT_XML_CHAR.sub("\ufffd", text)
