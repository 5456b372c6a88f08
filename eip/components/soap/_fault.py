"""SOAP faults of both versions: write one for the server, read one for the producer.

The two versions differ in more than names. 1.1 has unqualified ``faultcode``/``faultstring``
/``detail`` children and a single code; 1.2 has ``Code/Value`` with nested, namespaced
``Subcode`` values, language-tagged ``Reason/Text`` and ``Detail``. A code or subcode is a
QName written as *text*, so its prefix must be declared where it is written, and a reader
must resolve it against the namespaces in scope there: zeep hands back ``'soapenv:Client'``
unresolved, which :func:`parse_fault` fixes.

SOAP 1.1 has no subcodes. :func:`build_fault` keeps the generic ``Client``/``Server`` code
there (what 1.1 clients test for) and leaves subcodes out; put machine-readable detail in a
typed fault element, which is what a WSDL fault declares anyway.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

from lxml import etree

from eip.components.soap._version import (
    EnvelopeTooLargeError,
    SoapEnvelopeError,
    SoapVersion,
    envelope_version,
)
from eip.components.soap._xml import QName, UnsafeXmlError, parse_untrusted, split_qname, xml_text

__all__ = [
    "FaultCode",
    "FaultInfo",
    "build_fault",
    "fault_http_status",
    "parse_fault",
    "resolve_qname",
]

FaultCode = Literal[
    "client", "server", "version_mismatch", "must_understand", "data_encoding_unknown"
]
"""eip's version-neutral fault codes; ``client`` is 1.1 Client / 1.2 Sender, ``server`` is
1.1 Server / 1.2 Receiver; ``data_encoding_unknown`` is 1.2's DataEncodingUnknown (1.1 has
no such code: Client)."""

_XML_LANG: Final = "{http://www.w3.org/XML/1998/namespace}lang"
_COMMON: Final = {"version_mismatch": "VersionMismatch", "must_understand": "MustUnderstand"}
_LOCAL_CODES: Final[dict[SoapVersion, dict[str, str]]] = {
    SoapVersion.SOAP11: {
        "client": "Client",
        "server": "Server",
        "data_encoding_unknown": "Client",
        **_COMMON,
    },
    SoapVersion.SOAP12: {
        "client": "Sender",
        "server": "Receiver",
        "data_encoding_unknown": "DataEncodingUnknown",
        **_COMMON,
    },
}
_FAULT_TAGS: Final = frozenset(f"{{{v.namespace}}}Fault" for v in SoapVersion)
_KINDS: Final[dict[str, FaultCode]] = {
    "Client": "client",
    "Sender": "client",
    "Server": "server",
    "Receiver": "server",
    "VersionMismatch": "version_mismatch",
    "MustUnderstand": "must_understand",
    "DataEncodingUnknown": "data_encoding_unknown",
}


@dataclass(frozen=True, slots=True)
class FaultInfo:
    """A SOAP fault, read into version-neutral data.

    ``code`` and ``subcodes`` are resolved ``(namespace, local)`` names (1.1 has no
    subcodes). ``detail`` is the first element inside ``detail``/``Detail``: the typed fault
    element a WSDL declares, e.g. ``CustomerFault``. ``actor`` is 1.1's faultactor or 1.2's
    Role; ``lang`` the xml:lang of the 1.2 reason.
    """

    version: SoapVersion
    code: QName
    reason: str
    subcodes: tuple[QName, ...] = ()
    detail: etree._Element | None = None
    actor: str | None = None
    lang: str | None = None

    @property
    def kind(self) -> FaultCode | None:
        """The generic class of the code (1.1's ``Client.Auth`` dot form counts as client),
        or None for a code outside the SOAP envelope namespace."""
        namespace, local = self.code
        if namespace not in (self.version.namespace, ""):
            return None
        return _KINDS.get(local.split(".", 1)[0])


def fault_http_status(version: SoapVersion, code: FaultCode) -> int:
    """The HTTP status of a fault response: 1.1 always 500; 1.2 400 for Sender, else 500."""
    return 400 if version is SoapVersion.SOAP12 and code == "client" else 500


def _local_code(version: SoapVersion, code: str) -> str:
    try:
        return _LOCAL_CODES[version][code]
    except KeyError:
        valid = ", ".join(sorted(_LOCAL_CODES[version]))
        raise ValueError(f"unknown SOAP fault code {code!r} (valid: {valid})") from None


def _copy(element: etree._Element) -> etree._Element:
    """A copy that keeps every namespace in scope (deepcopy keeps only those used by names,
    losing prefixes used in QName-valued text)."""
    return parse_untrusted(etree.tostring(element, with_tail=False))


def _add_subcodes(code: etree._Element, version: SoapVersion, subcodes: Sequence[QName]) -> None:
    """Nest one Subcode per entry; each Value declares the prefix its text uses."""
    ns, parent, prefix = version.namespace, code, {version.namespace: version.prefix}
    for depth, (sub_ns, local) in enumerate(subcodes, start=1):
        subcode = etree.SubElement(parent, f"{{{ns}}}Subcode")
        if not sub_ns:
            etree.SubElement(subcode, f"{{{ns}}}Value").text = local
        elif sub_ns in prefix:
            etree.SubElement(subcode, f"{{{ns}}}Value").text = f"{prefix[sub_ns]}:{local}"
        else:
            nsmap = {f"sc{depth}": sub_ns}
            etree.SubElement(subcode, f"{{{ns}}}Value", nsmap=nsmap).text = f"sc{depth}:{local}"
        parent = subcode


def build_fault(
    version: SoapVersion,
    *,
    code: FaultCode,
    reason: str,
    subcodes: Sequence[QName] = (),
    detail: etree._Element | None = None,
    lang: str = "en",
    code_11: QName | None = None,
    header_blocks: Sequence[etree._Element] = (),
) -> bytes:
    """A complete fault Envelope (UTF-8, with declaration); ``detail`` is copied in.

    Characters XML cannot carry are replaced in ``reason``, so a fault built from any
    exception message serialises. ``code_11`` replaces the 1.1 faultcode with a code of
    another namespace (WS-Security's ``wsse:FailedAuthentication``, which 1.2 carries as a
    subcode); ``header_blocks`` go into a Header (1.2's ``NotUnderstood``, ``Upgrade``).
    """
    ns, prefix = version.namespace, version.prefix
    local = _local_code(version, code)
    root = etree.Element(f"{{{ns}}}Envelope", nsmap={prefix: ns})
    if header_blocks:
        header = etree.SubElement(root, f"{{{ns}}}Header")
        for block in header_blocks:
            header.append(_copy(block))
    fault = etree.SubElement(etree.SubElement(root, f"{{{ns}}}Body"), f"{{{ns}}}Fault")
    if version is SoapVersion.SOAP11:
        if code_11 is not None and code_11[0]:
            etree.SubElement(fault, "faultcode", nsmap={"fc": code_11[0]}).text = f"fc:{code_11[1]}"
        else:
            etree.SubElement(fault, "faultcode").text = f"{prefix}:{local}"
        etree.SubElement(fault, "faultstring").text = xml_text(reason)
        if detail is not None:
            etree.SubElement(fault, "detail").append(_copy(detail))
    else:
        code_element = etree.SubElement(fault, f"{{{ns}}}Code")
        etree.SubElement(code_element, f"{{{ns}}}Value").text = f"{prefix}:{local}"
        _add_subcodes(code_element, version, subcodes)
        text = etree.SubElement(etree.SubElement(fault, f"{{{ns}}}Reason"), f"{{{ns}}}Text")
        text.set(_XML_LANG, lang)
        text.text = xml_text(reason)
        if detail is not None:
            etree.SubElement(fault, f"{{{ns}}}Detail").append(_copy(detail))
    return etree.tostring(root, xml_declaration=True, encoding="utf-8")


def resolve_qname(value: str, context: etree._Element) -> QName:
    """Resolve QName text such as ``'soapenv:Client'`` against the namespaces in scope at
    ``context``; an unprefixed name takes the default namespace, if any."""
    value = value.strip()
    prefix, sep, local = value.rpartition(":")
    nsmap = context.nsmap
    if not sep:
        return nsmap.get(None, ""), value
    namespace = nsmap.get(prefix)
    if namespace is None:
        raise SoapEnvelopeError(f"undeclared namespace prefix {prefix!r} in {value!r}")
    return namespace, local


def _fault_element(source: bytes | etree._Element, max_size: int) -> etree._Element:
    """Find the Fault in an envelope (bytes or element), a Fault, or a fault's detail."""
    if isinstance(source, bytes):
        if len(source) > max_size:
            raise EnvelopeTooLargeError(f"the fault is {len(source)} bytes; limit {max_size}")
        try:
            source = parse_untrusted(source)
        except UnsafeXmlError as exc:
            raise SoapEnvelopeError(exc.reason, line=exc.line) from exc
    tag = source.tag if isinstance(source.tag, str) else ""
    local = split_qname(tag)[1]
    parent = source.getparent()
    if local in ("detail", "Detail") and parent is not None and _is_fault(parent):
        return parent
    if local == "Envelope":
        ns = envelope_version(source).namespace
        fault = source.find(f"{{{ns}}}Body/{{{ns}}}Fault")
        if fault is None:
            raise SoapEnvelopeError("the Envelope's Body holds no Fault", location="Body")
        return fault
    if not _is_fault(source):
        raise SoapEnvelopeError(f"{tag!r} is not a SOAP Fault")
    return source


def _is_fault(element: etree._Element) -> bool:
    tag = element.tag
    return isinstance(tag, str) and tag in _FAULT_TAGS


def _code(element: etree._Element | None, version: SoapVersion) -> QName:
    """Resolve a code leniently: a remote fault must still be readable when its prefix is
    undeclared; the standard codes then fall back to the envelope namespace."""
    text = (element.text or "").strip() if element is not None else ""
    if not text:
        raise SoapEnvelopeError("the Fault has no code", location="Fault")
    assert element is not None
    try:
        return resolve_qname(text, element)
    except SoapEnvelopeError:
        local = text.rpartition(":")[2]
        return (version.namespace, local) if local.split(".")[0] in _KINDS else ("", text)


def _first_element(container: etree._Element | None) -> etree._Element | None:
    if container is None:
        return None
    return next(container.iterchildren(etree.Element), None)


def parse_fault(source: bytes | etree._Element, *, max_size: int = 1_000_000) -> FaultInfo:
    """Read a fault from envelope bytes, an Envelope or Fault element, or a fault's
    ``detail`` element (what zeep's ``Fault.detail`` holds)."""
    fault = _fault_element(source, max_size)
    ns = split_qname(fault.tag)[0]
    version = SoapVersion.SOAP11 if ns == SoapVersion.SOAP11.namespace else SoapVersion.SOAP12
    if version is SoapVersion.SOAP11:
        return FaultInfo(
            version=version,
            code=_code(fault.find("faultcode"), version),
            reason=fault.findtext("faultstring") or "",
            detail=_first_element(fault.find("detail")),
            actor=fault.findtext("faultactor"),
        )
    subcodes = []
    subcode = fault.find(f"{{{ns}}}Code/{{{ns}}}Subcode")
    while subcode is not None:
        subcodes.append(_code(subcode.find(f"{{{ns}}}Value"), version))
        subcode = subcode.find(f"{{{ns}}}Subcode")
    text = fault.find(f"{{{ns}}}Reason/{{{ns}}}Text")
    return FaultInfo(
        version=version,
        code=_code(fault.find(f"{{{ns}}}Code/{{{ns}}}Value"), version),
        reason=(text.text or "") if text is not None else "",
        subcodes=tuple(subcodes),
        detail=_first_element(fault.find(f"{{{ns}}}Detail")),
        actor=fault.findtext(f"{{{ns}}}Role"),
        lang=text.get(_XML_LANG) if text is not None else None,
    )
