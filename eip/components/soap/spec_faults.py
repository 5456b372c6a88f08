"""What the SOAP specs ask of a fault beyond its code (SOAP 1.1 §4.4, SOAP 1.2 §5.4).

- **MustUnderstand** (1.2 §5.4.8): one ``env:NotUnderstood qname="..."`` header block per
  header the node did not understand, so the sender learns which (1.1 has no such block).
- **VersionMismatch** (1.2 Appendix A): answered in the 1.1 envelope, which an old client
  can read, with an ``env:Upgrade`` header block listing the envelopes this node supports, in
  order of preference.
- **DataEncodingUnknown** (1.2 §5.4.7): a header block or Body element that declares an
  ``encodingStyle`` this node does not support. eip serves document/literal only, so any
  encoding other than "none" is unknown (1.1 has no such code and gets Client).
"""

from __future__ import annotations

from collections.abc import Sequence

from lxml import etree

from eip.components.soap._version import SOAP11_NS, SOAP12_NS, SoapVersion
from eip.components.soap._xml import QName
from eip.components.soap.envelope import Envelope

__all__ = ["foreign_encoding", "not_understood_blocks", "upgrade_blocks"]

_NONE_ENCODING = f"{SOAP12_NS}/encoding/none"


def not_understood_blocks(version: SoapVersion, names: Sequence[QName]) -> list[etree._Element]:
    """1.2's NotUnderstood header blocks for ``names`` (none for 1.1)."""
    if version is not SoapVersion.SOAP12:
        return []
    blocks = []
    for number, (namespace, local) in enumerate(names, 1):
        prefix = f"nu{number}"
        nsmap = {"env": SOAP12_NS, **({prefix: namespace} if namespace else {})}
        block = etree.Element(f"{{{SOAP12_NS}}}NotUnderstood", nsmap=nsmap)
        block.set("qname", f"{prefix}:{local}" if namespace else local)
        blocks.append(block)
    return blocks


def upgrade_blocks() -> list[etree._Element]:
    """The Upgrade header block: SOAP 1.2 first, then 1.1."""
    # The qname attributes are text, so each prefix must stay declared where they stand: the
    # 1.1 one is the prefix the (1.1) fault envelope itself declares, which an append into
    # it keeps (a second prefix for the same namespace would be dropped as redundant).
    ns11 = SoapVersion.SOAP11.prefix
    nsmap = {"env": SOAP12_NS, ns11: SOAP11_NS}
    upgrade = etree.Element(f"{{{SOAP12_NS}}}Upgrade", nsmap=nsmap)
    for prefix in ("env", ns11):
        supported = etree.SubElement(upgrade, f"{{{SOAP12_NS}}}SupportedEnvelope")
        supported.set("qname", f"{prefix}:Envelope")
    return [upgrade]


def foreign_encoding(envelope: Envelope) -> str | None:
    """The first encodingStyle of the request that is not "none", or None."""
    attribute = f"{{{envelope.version.namespace}}}encodingStyle"
    roots = [envelope.payload]
    if envelope.header is not None:
        roots.extend(envelope.header.iterchildren(etree.Element))
    for root in roots:
        for element in root.iter(etree.Element):
            value = element.get(attribute)
            if value is not None and value.strip() not in ("", _NONE_ENCODING):
                return value
    return None
