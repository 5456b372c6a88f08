"""SOAP versions and envelope errors, shared by the envelope and fault modules."""

from __future__ import annotations

import enum
from typing import Final

from lxml import etree

from eip.components.soap._xml import split_qname
from eip.errors import UnmarshalError

__all__ = [
    "SOAP11_NS",
    "SOAP12_NS",
    "EnvelopeTooLargeError",
    "SoapEnvelopeError",
    "SoapVersion",
    "VersionMismatchError",
    "content_type",
    "envelope_version",
]

SOAP11_NS: Final = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12_NS: Final = "http://www.w3.org/2003/05/soap-envelope"


class SoapVersion(enum.Enum):
    """The SOAP version of an envelope or a WSDL binding."""

    SOAP11 = "1.1"
    SOAP12 = "1.2"

    @property
    def namespace(self) -> str:
        """The Envelope namespace, which is how a message says its version."""
        return SOAP11_NS if self is SoapVersion.SOAP11 else SOAP12_NS

    @property
    def prefix(self) -> str:
        """The prefix eip writes: ``soapenv`` (1.1) or ``env`` (1.2), as in the specs."""
        return "soapenv" if self is SoapVersion.SOAP11 else "env"

    @property
    def content_type(self) -> str:
        """The HTTP Content-Type of a message in this version."""
        return content_type(self)


def content_type(version: SoapVersion) -> str:
    """``text/xml`` for 1.1, ``application/soap+xml`` for 1.2 (UTF-8, which eip writes)."""
    if version is SoapVersion.SOAP11:
        return "text/xml; charset=utf-8"
    return "application/soap+xml; charset=utf-8"


_BY_NAMESPACE: Final = {v.namespace: v for v in SoapVersion}


class SoapEnvelopeError(UnmarshalError):
    """The input is not a valid SOAP envelope; a server answers with a Client/Sender fault.

    ``version`` is the SOAP version when the Envelope told it (so the fault can be written in
    the same version), else None; ``line`` is the XML line of a syntax error.
    """

    def __init__(
        self,
        reason: str,
        *,
        location: str | None = None,
        version: SoapVersion | None = None,
        line: int | None = None,
    ) -> None:
        self.version = version
        self.line = line
        super().__init__("soap", reason, location=location)


class EnvelopeTooLargeError(SoapEnvelopeError):
    """The message is over the size limit; it was refused without being parsed (HTTP 413)."""


class VersionMismatchError(SoapEnvelopeError):
    """The root is an ``Envelope`` in a namespace that is neither SOAP 1.1 nor 1.2; SOAP
    answers this with a VersionMismatch fault rather than a Client/Sender one."""


def envelope_version(root: etree._Element) -> SoapVersion:
    """The SOAP version of an Envelope element, from its namespace."""
    namespace, local = split_qname(root.tag) if isinstance(root.tag, str) else ("", "")
    if local != "Envelope":
        raise SoapEnvelopeError(f"the root element is {root.tag!r}, not a SOAP Envelope")
    version = _BY_NAMESPACE.get(namespace)
    if version is None:
        raise VersionMismatchError(
            f"Envelope namespace {namespace!r} is neither SOAP 1.1 ({SOAP11_NS}) "
            f"nor SOAP 1.2 ({SOAP12_NS})",
            location="Envelope",
        )
    return version
