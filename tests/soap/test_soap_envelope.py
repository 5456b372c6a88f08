"""SOAP 1.1/1.2 envelopes and faults with real lxml: parsing (hardened), responses, faults
for both versions, reading faults back (also as zeep hands them over), HTTP status."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import zeep
from lxml import etree
from zeep.exceptions import Fault

from eip.components.soap.envelope import (
    SOAP11_NS,
    SOAP12_NS,
    EnvelopeTooLargeError,
    FaultInfo,
    SoapEnvelopeError,
    SoapVersion,
    VersionMismatchError,
    build_fault,
    build_response,
    content_type,
    fault_http_status,
    parse_envelope,
    parse_fault,
    resolve_qname,
)
from eip.errors import UnmarshalError

CUST = "http://erp.example.com/schemas/customer"
WSDL = Path(__file__).parent / "wsdl" / "crm_erp.wsdl"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
LIMIT = 100_000

PAYLOAD = (
    f'<cust:CheckCredit xmlns:cust="{CUST}"><cust:customerId>C000123</cust:customerId>'
    "<cust:amount>10.00</cust:amount></cust:CheckCredit>"
)


def envelope(ns: str, body: str = PAYLOAD, header: str = "", prolog: str = "") -> bytes:
    return (
        f'{prolog}<e:Envelope xmlns:e="{ns}">{header}\n  <e:Body>\n    <!-- the request -->\n'
        f"    {body}\n  </e:Body>\n</e:Envelope>"
    ).encode()


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
  <!ENTITY lol "lol">
  <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
  <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
  <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
  <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
  <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
  <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
  <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">
<soapenv:Body><x>&lol9;</x></soapenv:Body></soapenv:Envelope>"""

DETAIL = etree.fromstring(
    f'<cust:CustomerFault xmlns:cust="{CUST}"><cust:code>VALIDATION</cust:code>'
    "<cust:message>status is not allowed</cust:message><cust:field>status</cust:field>"
    "</cust:CustomerFault>"
)


def find(element: etree._Element, path: str) -> etree._Element:
    found = element.find(path)
    assert found is not None, path
    return found


# --- parsing -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ns", "version"), [(SOAP11_NS, SoapVersion.SOAP11), (SOAP12_NS, SoapVersion.SOAP12)]
)
def test_a_request_of_either_version_is_parsed(ns: str, version: SoapVersion) -> None:
    parsed = parse_envelope(envelope(ns, prolog='<?xml version="1.0"?>\n'), max_size=LIMIT)
    assert parsed.version is version
    assert parsed.header is None
    assert parsed.qname == (CUST, "CheckCredit")
    assert parsed.payload.findtext(f"{{{CUST}}}customerId") == "C000123"
    assert parsed.must_understand == ()


def test_header_blocks_that_must_be_understood_are_listed() -> None:
    header = (
        '<e:Header><s:Security xmlns:s="urn:sec" e:mustUnderstand="1"/>'
        '<s:Trace xmlns:s="urn:sec"/>'
        '<s:ForHop xmlns:s="urn:sec" e:mustUnderstand="true" '
        'e:role="http://www.w3.org/2003/05/soap-envelope/role/next"/>'
        '<s:ForOthers xmlns:s="urn:sec" e:mustUnderstand="true" e:role="urn:someone-else"/>'
        "</e:Header>"
    )
    parsed = parse_envelope(envelope(SOAP12_NS, header=header), max_size=LIMIT)
    assert parsed.header is not None
    assert len(parsed.header) == 4
    assert parsed.must_understand == (("urn:sec", "Security"), ("urn:sec", "ForHop"))


def test_soap11_must_understand_uses_actor() -> None:
    header = (
        '<e:Header><s:A xmlns:s="urn:s" e:mustUnderstand="1"/>'
        '<s:B xmlns:s="urn:s" e:mustUnderstand="1" e:actor="urn:other"/>'
        '<s:C xmlns:s="urn:s" e:mustUnderstand="0"/></e:Header>'
    )
    parsed = parse_envelope(envelope(SOAP11_NS, header=header), max_size=LIMIT)
    assert parsed.must_understand == (("urn:s", "A"),)


@pytest.mark.parametrize(
    ("data", "location", "reason"),
    [
        (b"not xml at all", None, "not well-formed XML"),
        (b"<e:Envelope xmlns:e='" + SOAP11_NS.encode() + b"'><e:Body>", None, "not well-formed"),
        (f"<Order xmlns='{CUST}'/>".encode(), None, "not a SOAP Envelope"),
        (
            f"<e:Envelope xmlns:e='{SOAP11_NS}'><e:Header/></e:Envelope>".encode(),
            "Envelope",
            "no Body",
        ),
        (
            f"<e:Envelope xmlns:e='{SOAP12_NS}'><e:Body/><e:Header/></e:Envelope>".encode(),
            "Envelope",
            "after the Body",
        ),
        (envelope(SOAP11_NS, body=PAYLOAD + PAYLOAD), "Envelope/Body", "has 2 child elements"),
        (envelope(SOAP12_NS, body=""), "Envelope/Body", "the Body is empty"),
        (envelope(SOAP11_NS, body="loose text"), "Envelope/Body", "text is not allowed"),
        (
            f"<e:Envelope xmlns:e='{SOAP11_NS}'>junk<e:Body/></e:Envelope>".encode(),
            "Envelope",
            "text is not allowed",
        ),
    ],
    ids=[
        "not-xml",
        "truncated",
        "wrong-root",
        "no-body",
        "header-after-body",
        "two-children",
        "empty-body",
        "text-in-body",
        "text-in-envelope",
    ],
)
def test_invalid_envelopes_raise_a_specific_error(
    data: bytes, location: str | None, reason: str
) -> None:
    with pytest.raises(SoapEnvelopeError) as caught:
        parse_envelope(data, max_size=LIMIT)
    error = caught.value
    assert isinstance(error, UnmarshalError)
    assert error.format == "soap"
    assert error.location == location
    assert reason in error.reason


def test_soap11_allows_foreign_elements_after_the_body() -> None:
    data = envelope(SOAP11_NS).replace(
        b"</e:Envelope>", b'<x:Trailer xmlns:x="urn:x"/></e:Envelope>'
    )
    assert parse_envelope(data, max_size=LIMIT).qname == (CUST, "CheckCredit")
    data12 = envelope(SOAP12_NS).replace(
        b"</e:Envelope>", b'<x:Trailer xmlns:x="urn:x"/></e:Envelope>'
    )
    with pytest.raises(SoapEnvelopeError, match="after the Body"):
        parse_envelope(data12, max_size=LIMIT)


def test_the_version_is_known_when_the_envelope_told_it() -> None:
    with pytest.raises(SoapEnvelopeError) as caught:
        parse_envelope(envelope(SOAP12_NS, body=PAYLOAD * 2), max_size=LIMIT)
    assert caught.value.version is SoapVersion.SOAP12


def test_a_syntax_error_carries_its_line() -> None:
    with pytest.raises(SoapEnvelopeError) as caught:
        parse_envelope(envelope(SOAP11_NS, body="<a><b></a>"), max_size=LIMIT)
    assert caught.value.line == 4  # the Body's child, as envelope() lays it out


def test_an_unknown_envelope_namespace_is_a_version_mismatch() -> None:
    with pytest.raises(VersionMismatchError, match=r"neither SOAP 1\.1"):
        parse_envelope(envelope("urn:soap-2.0"), max_size=LIMIT)


# --- hostile input -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
        + envelope(SOAP11_NS, body="<x>&e;</x>"),
        b'<?xml version="1.0"?>\n<!-- a comment first -->\n'
        b'<!DOCTYPE e:Envelope SYSTEM "http://evil.example/soap.dtd">' + envelope(SOAP11_NS),
        b'<!DOCTYPE x [<!ENTITY % p SYSTEM "http://evil.example/p.dtd"> %p;]>'
        + envelope(SOAP12_NS),
        (
            '<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
            + envelope(SOAP12_NS, body="<x>&e;</x>").decode()
        ).encode("utf-16"),
    ],
    ids=["xxe", "external-dtd-after-comment", "parameter-entity", "xxe-utf16"],
)
def test_dtds_and_entities_are_refused(data: bytes) -> None:
    with pytest.raises(SoapEnvelopeError, match="DOCTYPE") as caught:
        parse_envelope(data, max_size=LIMIT)
    assert "root:" not in str(caught.value)  # nothing of /etc/passwd leaks into the error


def test_billion_laughs_is_refused_quickly() -> None:
    started = time.perf_counter()
    with pytest.raises(SoapEnvelopeError, match="DOCTYPE"):
        parse_envelope(BILLION_LAUGHS, max_size=LIMIT)
    assert time.perf_counter() - started < 0.1


def test_an_oversized_message_is_refused_before_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    import eip.components.soap.envelope as module

    def explode(*_: object, **__: object) -> None:
        raise AssertionError("parsed an oversized message")

    monkeypatch.setattr(module, "parse_untrusted", explode)
    data = envelope(SOAP11_NS)
    with pytest.raises(EnvelopeTooLargeError, match=f"{len(data)} bytes; the limit is 100"):
        parse_envelope(data, max_size=100)
    with pytest.raises(AssertionError, match="parsed"):
        parse_envelope(data, max_size=len(data))  # at the limit it is parsed


def test_doctype_words_inside_cdata_are_just_text() -> None:
    body = f'<q xmlns="{CUST}"><![CDATA[<!DOCTYPE html>]]></q>'
    assert parse_envelope(envelope(SOAP11_NS, body=body), max_size=LIMIT).payload.text == (
        "<!DOCTYPE html>"
    )


# --- responses ---------------------------------------------------------------------------


@pytest.mark.parametrize("version", list(SoapVersion))
def test_a_response_round_trips_and_leaves_the_payload_in_place(version: SoapVersion) -> None:
    request = parse_envelope(envelope(SOAP11_NS), max_size=LIMIT)
    original = etree.tostring(request.payload.getroottree())
    typed = etree.fromstring(
        '<r:Reply xmlns:r="urn:r" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        'xmlns:t="urn:types"><r:v xsi:type="t:Money">1</r:v></r:Reply>'
    )[0]  # a child whose QName-valued attribute relies on its parent's declarations
    data = build_response(version, typed)
    assert data.startswith(b'<?xml version="1.0" encoding="utf-8"?>')
    parsed = parse_envelope(data, max_size=LIMIT)
    assert parsed.version is version
    assert parsed.qname == ("urn:r", "v")
    xsi_type = parsed.payload.get("{http://www.w3.org/2001/XMLSchema-instance}type", "")
    assert resolve_qname(xsi_type, parsed.payload) == ("urn:types", "Money")
    data = build_response(version, request.payload)
    assert parse_envelope(data, max_size=LIMIT).qname == (CUST, "CheckCredit")
    assert etree.tostring(request.payload.getroottree()) == original


def test_a_response_can_carry_header_blocks() -> None:
    block = etree.fromstring('<a:MessageID xmlns:a="urn:wsa">urn:uuid:1</a:MessageID>')
    data = build_response(SoapVersion.SOAP12, DETAIL, headers=[block])
    parsed = parse_envelope(data, max_size=LIMIT)
    assert parsed.header is not None
    assert parsed.header.findtext("{urn:wsa}MessageID") == "urn:uuid:1"
    assert parsed.qname == (CUST, "CustomerFault")


def test_content_types_per_version() -> None:
    assert content_type(SoapVersion.SOAP11) == "text/xml; charset=utf-8"
    assert content_type(SoapVersion.SOAP12) == "application/soap+xml; charset=utf-8"
    assert SoapVersion.SOAP12.content_type == content_type(SoapVersion.SOAP12)


# --- faults ------------------------------------------------------------------------------


def test_soap11_fault_is_well_formed_with_a_declared_code_prefix() -> None:
    data = build_fault(SoapVersion.SOAP11, code="client", reason="bad status", detail=DETAIL)
    root = etree.fromstring(data)
    fault = find(root, f"{{{SOAP11_NS}}}Body/{{{SOAP11_NS}}}Fault")
    assert [child.tag for child in fault] == ["faultcode", "faultstring", "detail"]
    code = find(fault, "faultcode")
    assert code.text == "soapenv:Client"
    assert code.nsmap["soapenv"] == SOAP11_NS
    assert fault.findtext("faultstring") == "bad status"
    assert find(fault, f"detail/{{{CUST}}}CustomerFault/{{{CUST}}}field").text == "status"


def test_soap12_fault_has_namespaced_subcodes_and_a_language() -> None:
    data = build_fault(
        SoapVersion.SOAP12,
        code="client",
        reason="le statut est invalide",
        subcodes=[("urn:eip:soap", "SchemaValidation"), (SOAP12_NS, "DataEncodingUnknown")],
        detail=DETAIL,
        lang="fr",
    )
    root = etree.fromstring(data)
    env = f"{{{SOAP12_NS}}}"
    fault = find(root, f"{env}Body/{env}Fault")
    assert [child.tag for child in fault] == [f"{env}Code", f"{env}Reason", f"{env}Detail"]
    assert fault.findtext(f"{env}Code/{env}Value") == "env:Sender"
    value = find(fault, f"{env}Code/{env}Subcode/{env}Value")
    prefix, local = (value.text or "").split(":")
    assert (value.nsmap[prefix], local) == ("urn:eip:soap", "SchemaValidation")
    inner = find(fault, f"{env}Code/{env}Subcode/{env}Subcode/{env}Value")
    assert inner.text == "env:DataEncodingUnknown"
    text = find(fault, f"{env}Reason/{env}Text")
    assert (text.get(XML_LANG), text.text) == ("fr", "le statut est invalide")
    assert fault.find(f"{env}Detail/{{{CUST}}}CustomerFault") is not None


@pytest.mark.parametrize("version", list(SoapVersion))
@pytest.mark.parametrize("code", ["client", "server"])
def test_faults_round_trip_through_parse_fault(version: SoapVersion, code: str) -> None:
    subcodes = [("urn:eip:soap", "Validation")] if version is SoapVersion.SOAP12 else []
    data = build_fault(version, code=code, reason="it broke", subcodes=subcodes, detail=DETAIL)  # type: ignore[arg-type]
    info = parse_fault(data)
    generic = {"client": ("Client", "Sender"), "server": ("Server", "Receiver")}[code]
    assert info.version is version
    assert info.code == (version.namespace, generic[version is SoapVersion.SOAP12])
    assert info.kind == code
    assert info.subcodes == tuple(subcodes)
    assert info.reason == "it broke"
    assert info.detail is not None
    assert info.detail.tag == f"{{{CUST}}}CustomerFault"
    assert info.detail.findtext(f"{{{CUST}}}field") == "status"
    assert info.lang == ("en" if version is SoapVersion.SOAP12 else None)


def test_soap11_drops_subcodes_but_keeps_the_generic_code() -> None:
    data = build_fault(SoapVersion.SOAP11, code="client", reason="x", subcodes=[("urn:e", "S")])
    assert b"urn:e" not in data
    assert parse_fault(data).code == (SOAP11_NS, "Client")


def test_fault_without_detail_and_other_codes() -> None:
    info = parse_fault(build_fault(SoapVersion.SOAP12, code="must_understand", reason="no"))
    assert info.code == (SOAP12_NS, "MustUnderstand")
    assert info.kind == "must_understand"
    assert info.detail is None
    assert parse_fault(
        build_fault(SoapVersion.SOAP11, code="version_mismatch", reason="v")
    ).code == (
        SOAP11_NS,
        "VersionMismatch",
    )
    with pytest.raises(ValueError, match="unknown SOAP fault code 'nope'"):
        build_fault(SoapVersion.SOAP11, code="nope", reason="x")  # type: ignore[arg-type]


def test_the_reason_is_made_safe_for_xml() -> None:
    data = build_fault(SoapVersion.SOAP12, code="server", reason="nul\x00 and \x1b escape")
    assert parse_fault(data).reason == "nul\ufffd and \ufffd escape"


@pytest.mark.parametrize(
    ("version", "code", "status"),
    [
        (SoapVersion.SOAP11, "client", 500),
        (SoapVersion.SOAP11, "server", 500),
        (SoapVersion.SOAP12, "client", 400),
        (SoapVersion.SOAP12, "server", 500),
        (SoapVersion.SOAP12, "version_mismatch", 500),
        (SoapVersion.SOAP12, "must_understand", 500),
    ],
)
def test_fault_http_status(version: SoapVersion, code: str, status: int) -> None:
    assert fault_http_status(version, code) == status  # type: ignore[arg-type]


def _zeep_fault(version: SoapVersion, data: bytes) -> Fault:
    client = zeep.Client(str(WSDL))
    port = "CustomerSoap11Port" if version is SoapVersion.SOAP11 else "CustomerSoap12Port"
    binding = client.bind("CustomerService", port)._binding
    operation = binding.get("UpsertCustomer")
    with pytest.raises(Fault) as caught:
        binding.process_error(etree.fromstring(data), operation)
    return caught.value


@pytest.mark.parametrize("version", list(SoapVersion))
def test_a_zeep_fault_detail_is_read_with_the_code_resolved(version: SoapVersion) -> None:
    data = build_fault(version, code="client", reason="rejected", detail=DETAIL)
    fault = _zeep_fault(version, data)
    assert fault.message == "rejected"
    if version is SoapVersion.SOAP11:
        assert fault.code == "soapenv:Client"  # zeep leaves the prefix unresolved
    info = parse_fault(fault.detail)
    assert info.code == (version.namespace, "Client" if version is SoapVersion.SOAP11 else "Sender")
    assert info.detail is not None
    assert info.detail.tag == f"{{{CUST}}}CustomerFault"


def test_a_foreign_fault_with_its_own_prefixes_is_resolved() -> None:
    data = (
        f'<S:Envelope xmlns:S="{SOAP11_NS}"><S:Body><S:Fault xmlns:ns2="urn:erp">'
        "<faultcode>ns2:Locked</faultcode><faultstring>record locked</faultstring>"
        "<faultactor>urn:erp:db</faultactor></S:Fault></S:Body></S:Envelope>"
    ).encode()
    info = parse_fault(data)
    assert info == FaultInfo(
        version=SoapVersion.SOAP11,
        code=("urn:erp", "Locked"),
        reason="record locked",
        actor="urn:erp:db",
    )
    assert info.kind is None


def test_sloppy_codes_are_read_leniently() -> None:
    fault = etree.fromstring(
        f'<S:Fault xmlns:S="{SOAP11_NS}"><faultcode>soap:Client.Auth</faultcode>'
        "<faultstring>who?</faultstring></S:Fault>"
    )
    info = parse_fault(fault)  # the prefix 'soap' is not declared
    assert info.code == (SOAP11_NS, "Client.Auth")
    assert info.kind == "client"
    bare = f'<S:Fault xmlns:S="{SOAP11_NS}"><faultcode>Server</faultcode><faultstring/></S:Fault>'
    assert parse_fault(bare.encode()).kind == "server"  # a bare Fault, as bytes


def test_resolve_qname() -> None:
    element = etree.fromstring('<a xmlns="urn:default" xmlns:p="urn:p"><b/></a>')[0]
    assert resolve_qname(" p:Thing ", element) == ("urn:p", "Thing")
    assert resolve_qname("Thing", element) == ("urn:default", "Thing")
    with pytest.raises(SoapEnvelopeError, match="undeclared namespace prefix 'q'"):
        resolve_qname("q:Thing", element)


@pytest.mark.parametrize(
    ("source", "match"),
    [
        (envelope(SOAP11_NS), "holds no Fault"),
        (etree.fromstring(PAYLOAD), "is not a SOAP Fault"),
        (b"<oops", "not well-formed"),
        (f"<Fault xmlns='{CUST}'/>".encode(), "is not a SOAP Fault"),
        (f"<S:Fault xmlns:S='{SOAP11_NS}'><faultstring>x</faultstring></S:Fault>", "no code"),
    ],
    ids=["no-fault", "not-a-fault", "not-xml", "foreign-fault-bytes", "no-code"],
)
def test_parse_fault_rejects_what_is_not_a_fault(
    source: bytes | etree._Element | str, match: str
) -> None:
    if isinstance(source, str):
        source = etree.fromstring(source)
    with pytest.raises(SoapEnvelopeError, match=match):
        parse_fault(source)


def test_parse_fault_enforces_its_size_limit() -> None:
    with pytest.raises(EnvelopeTooLargeError):
        parse_fault(build_fault(SoapVersion.SOAP11, code="server", reason="x" * 500), max_size=100)
