"""SOAP 1.1 and 1.2 envelopes: parse a request, build a response, build and read faults.

The SOAP server needs three things from a request before it can dispatch: which SOAP version
it speaks (so the reply and any fault use the same one), the Body's single child (whose QName
names the operation in document/literal wrapped style) and the header blocks it is obliged to
understand. Anything that is not a well-formed, DTD-free SOAP envelope raises a
:class:`SoapEnvelopeError`, which the server answers with a Client (1.1) / Sender (1.2) fault.

Faults live in :mod:`._fault` and are re-exported here, so callers import one module.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import msgspec
from lxml import etree

from eip.components.soap._fault import (
    FaultCode,
    FaultInfo,
    build_fault,
    fault_http_status,
    parse_fault,
    resolve_qname,
)
from eip.components.soap._version import (
    SOAP11_NS,
    SOAP12_NS,
    EnvelopeTooLargeError,
    SoapEnvelopeError,
    SoapVersion,
    VersionMismatchError,
    content_type,
    envelope_version,
)
from eip.components.soap._xml import QName, UnsafeXmlError, parse_untrusted, split_qname
from eip.errors import MarshalError

__all__ = [
    "SOAP11_NS",
    "SOAP12_NS",
    "Envelope",
    "EnvelopeTooLargeError",
    "FaultCode",
    "FaultInfo",
    "QName",
    "SoapEnvelopeError",
    "SoapVersion",
    "VersionMismatchError",
    "build_fault",
    "build_response",
    "content_type",
    "fault_http_status",
    "parse_envelope",
    "parse_fault",
    "resolve_qname",
]

_SOAP11_NEXT: Final = "http://schemas.xmlsoap.org/soap/actor/next"
_SOAP12_ROLES: Final = (
    "http://www.w3.org/2003/05/soap-envelope/role/next",
    "http://www.w3.org/2003/05/soap-envelope/role/ultimateReceiver",
)


class Envelope(msgspec.Struct, frozen=True):
    """A parsed SOAP request.

    ``payload`` is the Body's one child element and ``qname`` its ``(namespace, local)``,
    the key a document/literal server dispatches on. ``must_understand`` lists the header
    blocks addressed to this node that carry ``mustUnderstand``; a server that does not
    process one of them must answer with a MustUnderstand fault. (A frozen msgspec Struct
    rather than a frozen dataclass: one is made per request, and it is 4x cheaper to make.)
    """

    version: SoapVersion
    header: etree._Element | None
    payload: etree._Element
    qname: QName
    must_understand: tuple[QName, ...] = ()


_SOAP11: Final = SoapVersion.SOAP11
_SOAP12: Final = SoapVersion.SOAP12
#: The root tag of each version's Envelope, for the common case (envelope_version for others).
_ENVELOPE_11: Final = f"{{{SOAP11_NS}}}Envelope"
_ENVELOPE_12: Final = f"{{{SOAP12_NS}}}Envelope"
_HEADER_11, _BODY_11 = f"{{{SOAP11_NS}}}Header", f"{{{SOAP11_NS}}}Body"
_HEADER_12, _BODY_12 = f"{{{SOAP12_NS}}}Header", f"{{{SOAP12_NS}}}Body"


def _response_frame(version: SoapVersion) -> tuple[bytes, bytes]:
    """What :func:`build_response` writes around the payload when there are no headers."""
    prefix, ns = version.prefix, version.namespace
    head = f'<?xml version="1.0" encoding="utf-8"?>\n<{prefix}:Envelope xmlns:{prefix}="{ns}">'
    return f"{head}<{prefix}:Body>".encode(), f"</{prefix}:Body></{prefix}:Envelope>".encode()


_FRAME_11: Final = _response_frame(_SOAP11)
_FRAME_12: Final = _response_frame(_SOAP12)


def _elements(parent: etree._Element) -> list[etree._Element]:
    """Element children only: comments are allowed anywhere and carry no meaning."""
    return list(parent.iterchildren(etree.Element))


def _content(parent: etree._Element, where: str, version: SoapVersion) -> list[etree._Element]:
    """The element children of an element-only parent (Envelope, Body), in one pass over its
    children; stray text (not whitespace) means a broken message. Comments and processing
    instructions are skipped (their tails are text like any other)."""
    text = parent.text
    if text and not text.isspace():
        raise SoapEnvelopeError("text is not allowed here", location=where, version=version)
    elements = []
    for child in parent:
        tail = child.tail
        if tail and not tail.isspace():
            raise SoapEnvelopeError("text is not allowed here", location=where, version=version)
        if type(child.tag) is str:  # an element (a comment's or PI's tag is a function)
            elements.append(child)
    return elements


def _must_understand(header: etree._Element | None, version: SoapVersion) -> tuple[QName, ...]:
    """Header blocks with mustUnderstand="1"/"true" that target us (no role, next, or
    ultimateReceiver): the ones SOAP forbids a receiver to ignore."""
    if header is None:
        return ()
    ns = version.namespace
    role_attr = f"{{{ns}}}actor" if version is SoapVersion.SOAP11 else f"{{{ns}}}role"
    ours = (_SOAP11_NEXT,) if version is SoapVersion.SOAP11 else _SOAP12_ROLES
    blocks = []
    for block in _elements(header):
        flag = (block.get(f"{{{ns}}}mustUnderstand") or "").strip()
        role = block.get(role_attr)
        if flag in ("1", "true") and (role is None or role in ours):
            blocks.append(split_qname(block.tag))
    return tuple(blocks)


def parse_envelope(data: bytes, *, max_size: int) -> Envelope:
    """Parse a SOAP request of either version; refuse DTDs, oversize and malformed envelopes.

    The size is checked before any parsing, so an oversized body costs nothing but its bytes.
    """
    if len(data) > max_size:
        raise EnvelopeTooLargeError(f"the message is {len(data)} bytes; the limit is {max_size}")
    try:
        root = parse_untrusted(data)
    except UnsafeXmlError as exc:
        raise SoapEnvelopeError(exc.reason, line=exc.line) from exc
    tag = root.tag
    if tag == _ENVELOPE_11:
        version, header_tag, body_tag = _SOAP11, _HEADER_11, _BODY_11
    elif tag == _ENVELOPE_12:
        version, header_tag, body_tag = _SOAP12, _HEADER_12, _BODY_12
    else:
        envelope_version(root)  # raises: not an Envelope, or an unknown version
        raise AssertionError(f"envelope_version accepted {tag!r}")
    children = _content(root, "Envelope", version)
    header = None
    if children and children[0].tag == header_tag:
        header = children.pop(0)
    if not children or children[0].tag != body_tag:
        raise SoapEnvelopeError(
            "the Envelope has no Body (expected an optional Header, then Body)",
            location="Envelope",
            version=version,
        )
    body = children[0]
    if len(children) > 1:
        trailers = children[1:]
        if version is _SOAP11:  # 1.1 allows foreign elements after the Body
            own = body_tag[: -len("Body")]
            trailers = [t for t in trailers if str(t.tag).startswith(own)]
        if trailers:
            raise SoapEnvelopeError(
                f"unexpected element {trailers[0].tag!r} after the Body",
                location="Envelope",
                version=version,
            )
    payload = _content(body, "Envelope/Body", version)
    if len(payload) != 1:
        found = "is empty" if not payload else f"has {len(payload)} child elements"
        raise SoapEnvelopeError(
            f"the Body {found}; a document/literal message has exactly one",
            location="Envelope/Body",
            version=version,
        )
    element = payload[0]
    return Envelope(
        version,
        header,
        element,
        split_qname(element.tag),
        _must_understand(header, version) if header is not None else (),
    )


def build_response(
    version: SoapVersion,
    payload: etree._Element,
    *,
    headers: Sequence[etree._Element] = (),
) -> bytes:
    """Wrap ``payload`` (and optional header blocks) in an Envelope; UTF-8 with declaration.

    The payload is serialised in place rather than moved or copied into a new tree, so the
    caller's tree is untouched; lxml declares every namespace in scope on a serialised
    subtree, so QName-valued text (``xsi:type="tns:T"``) keeps its prefixes.
    """
    if not isinstance(payload.tag, str):
        raise MarshalError("soap", "the response payload must be an element")
    if not headers:  # the common case, in bytes: the payload serialised to UTF-8 directly
        head, tail = _FRAME_11 if version is _SOAP11 else _FRAME_12
        return b"".join((head, etree.tostring(payload, encoding="utf-8", with_tail=False), tail))
    prefix, ns = version.prefix, version.namespace
    parts = [f'<?xml version="1.0" encoding="utf-8"?>\n<{prefix}:Envelope xmlns:{prefix}="{ns}">']
    if headers:
        parts.append(f"<{prefix}:Header>")
        parts.extend(_serialise(block) for block in headers)
        parts.append(f"</{prefix}:Header>")
    parts.append(f"<{prefix}:Body>")
    parts.append(_serialise(payload))
    parts.append(f"</{prefix}:Body></{prefix}:Envelope>")
    return "".join(parts).encode("utf-8")


def _serialise(element: etree._Element) -> str:
    return etree.tostring(element, encoding="unicode", with_tail=False)
