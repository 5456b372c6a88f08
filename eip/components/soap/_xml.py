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

from eip.dataformats._prolog import has_doctype

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


def parse_untrusted(data: bytes, *, base_url: str | None = None) -> etree._Element:
    """Parse ``data`` with entities, network and DTDs off; refuse any DOCTYPE.

    The caller enforces its size limit *before* calling, so no oversized input is parsed.
    """
    if has_doctype(data):
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
