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
from dataclasses import dataclass
from typing import Final

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


@dataclass(frozen=True, slots=True)
class Envelope:
    """A parsed SOAP request.

    ``payload`` is the Body's one child element and ``qname`` its ``(namespace, local)``,
    the key a document/literal server dispatches on. ``must_understand`` lists the header
    blocks addressed to this node that carry ``mustUnderstand``; a server that does not
    process one of them must answer with a MustUnderstand fault.
    """

    version: SoapVersion
    header: etree._Element | None
    payload: etree._Element
    qname: QName
    must_understand: tuple[QName, ...] = ()


def _elements(parent: etree._Element) -> list[etree._Element]:
    """Element children only: comments are allowed anywhere and carry no meaning."""
    return list(parent.iterchildren(etree.Element))


def _reject_text(parent: etree._Element, where: str, version: SoapVersion) -> None:
    """Envelope and Body have element-only content; stray text means a broken message."""
    texts = [parent.text or ""] + [child.tail or "" for child in parent]
    if any(t.strip() for t in texts):
        raise SoapEnvelopeError("text is not allowed here", location=where, version=version)


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
    version = envelope_version(root)
    ns = version.namespace
    _reject_text(root, "Envelope", version)
    children = _elements(root)
    header = None
    if children and children[0].tag == f"{{{ns}}}Header":
        header = children.pop(0)
    if not children or children[0].tag != f"{{{ns}}}Body":
        raise SoapEnvelopeError(
            "the Envelope has no Body (expected an optional Header, then Body)",
            location="Envelope",
            version=version,
        )
    body, trailers = children[0], children[1:]
    if version is SoapVersion.SOAP11:  # 1.1 allows foreign elements after the Body; 1.2 none
        trailers = [t for t in trailers if str(t.tag).startswith(f"{{{ns}}}")]
    if trailers:
        raise SoapEnvelopeError(
            f"unexpected element {trailers[0].tag!r} after the Body",
            location="Envelope",
            version=version,
        )
    _reject_text(body, "Envelope/Body", version)
    payload = _elements(body)
    if len(payload) != 1:
        found = "is empty" if not payload else f"has {len(payload)} child elements"
        raise SoapEnvelopeError(
            f"the Body {found}; a document/literal message has exactly one",
            location="Envelope/Body",
            version=version,
        )
    return Envelope(
        version=version,
        header=header,
        payload=payload[0],
        qname=split_qname(payload[0].tag),
        must_understand=_must_understand(header, version),
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
