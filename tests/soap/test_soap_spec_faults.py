"""The SOAP consumer's faults by the specs (SOAP 1.1 §4.4, 1.2 §5.4), the served WSDL's
address behind proxies, and declared faults logged as business outcomes."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest
import zeep
import zeep.exceptions
from lxml import etree

from .test_soap_consumer import CHECK, CUST, CUSTOMER, S11, S12, in_thread, serve

__all__ = ["serve"]


def envelope(body: str, ns: str, header: str = "") -> bytes:
    head = f"<e:Header>{header}</e:Header>" if header else ""
    opening = f'<e:Envelope xmlns:e="{ns}" xmlns:c="{CUST}">'
    return f"{opening}{head}<e:Body>{body}</e:Body></e:Envelope>".encode()


def parsed(response: httpx.Response) -> etree._Element:
    return etree.fromstring(response.content)


async def test_an_unknown_envelope_gets_version_mismatch_with_an_upgrade_header(
    serve: Any,
) -> None:
    served = await serve()
    response = await served.post(envelope(CHECK, "urn:soap:0.9"))
    assert response.status_code == 500
    root = parsed(response)
    assert root.tag == f"{{{S11}}}Envelope"  # answered in 1.1, which an old client reads
    assert str(root.findtext(f"{{{S11}}}Body/{{{S11}}}Fault/faultcode")).endswith(
        ":VersionMismatch"
    )
    supported = root.findall(f"{{{S11}}}Header/{{{S12}}}Upgrade/{{{S12}}}SupportedEnvelope")
    names = [etree.QName(s.nsmap[str(s.get("qname")).split(":")[0]], "Envelope") for s in supported]
    assert [n.namespace for n in names] == [S12, S11]
    assert served.seen == []


async def test_soap12_must_understand_names_each_header_in_not_understood(serve: Any) -> None:
    served = await serve()
    header = (
        '<t:Tenant xmlns:t="urn:crm:context" e:mustUnderstand="true">acme</t:Tenant>'
        '<u:Trace xmlns:u="urn:trace" e:mustUnderstand="1">x</u:Trace>'
    )
    response = await served.post(envelope(CHECK, S12, header), "1.2")
    assert response.status_code == 500
    root = parsed(response)
    code = root.findtext(f"{{{S12}}}Body/{{{S12}}}Fault/{{{S12}}}Code/{{{S12}}}Value")
    assert str(code).endswith(":MustUnderstand")
    blocks = root.findall(f"{{{S12}}}Header/{{{S12}}}NotUnderstood")
    named = []
    for block in blocks:
        prefix, _, local = str(block.get("qname")).partition(":")
        named.append(f"{{{block.nsmap[prefix]}}}{local}")
    assert named == ["{urn:crm:context}Tenant", "{urn:trace}Trace"]


@pytest.mark.parametrize(
    ("ns", "version", "status", "code"),
    [(S12, "1.2", 500, "DataEncodingUnknown"), (S11, "1.1", 500, "Client")],
)
async def test_soap_encoding_is_data_encoding_unknown(
    serve: Any, ns: str, version: str, status: int, code: str
) -> None:
    served = await serve()
    encoded = CHECK.replace(
        "<c:CheckCredit>",
        f'<c:CheckCredit e:encodingStyle="{ns.rstrip("/")}/encoding/">',
    )
    response = await served.post(envelope(encoded, ns), version)
    assert response.status_code == status
    assert code in response.text
    assert "encodingStyle" in response.text
    assert served.seen == []


async def test_sender_faults_are_400_in_soap12_and_500_in_soap11(serve: Any) -> None:
    served = await serve()
    bad = "<c:CheckCredit><c:customerId>x</c:customerId><c:amount>abc</c:amount></c:CheckCredit>"
    r12 = await served.post(envelope(bad, S12), "1.2")
    r11 = await served.post(envelope(bad, S11))
    assert (r12.status_code, r11.status_code) == (400, 500)
    assert "Sender" in r12.text
    assert ":Client" in r11.text


async def test_the_wsdl_address_comes_from_public_url(serve: Any) -> None:
    served = await serve(public_url="https://erp-gw.example.com/")
    async with httpx.AsyncClient() as client:
        wsdl = await client.get(f"{served.url}?wsdl")
    assert 'location="https://erp-gw.example.com/services/customer"' in wsdl.text


async def test_the_wsdl_address_comes_from_host_and_trusted_forwarded_headers(
    serve: Any,
) -> None:
    plain = await serve()
    proxied = await serve(trust_forwarded=True)
    forwarded = {"x-forwarded-proto": "https", "x-forwarded-host": "soap.example.com"}
    async with httpx.AsyncClient() as client:
        by_host = await client.get(f"{plain.url}?wsdl", headers={"host": "erp.internal:8443"})
        ignored = await client.get(f"{plain.url}?wsdl", headers=forwarded)
        behind = await client.get(f"{proxied.url}?wsdl", headers=forwarded)
        hostile = await client.get(f"{plain.url}?wsdl", headers={"host": 'a"b<c>'})
    assert 'location="http://erp.internal:8443/services/customer"' in by_host.text
    assert "soap.example.com" not in ignored.text  # not trusted unless the option says so
    assert 'location="https://soap.example.com/services/customer"' in behind.text
    assert plain.url in hostile.text  # an invalid Host falls back to the bind address


async def test_a_declared_fault_is_logged_as_a_business_outcome(
    serve: Any, caplog: pytest.LogCaptureFixture
) -> None:
    served = await serve()
    caplog.set_level(logging.INFO, logger="eip.route.failures")

    def upsert(status: str) -> None:
        service = zeep.Client(f"{served.url}?wsdl").bind("CustomerService", "CustomerSoap11Port")
        with pytest.raises(zeep.exceptions.Fault):
            service.UpsertCustomer(customer={**CUSTOMER, "status": status})

    await in_thread(upsert, "SUSPENDED")  # the route raises the WSDL's CustomerFault
    records = [r for r in caplog.records if r.name == "eip.route.failures"]
    assert [r.levelname for r in records] == ["INFO"]
    assert "CustomerFault" in records[0].getMessage()
    caplog.clear()
    await in_thread(upsert, "CLOSED")  # a RuntimeError: an undeclared failure stays one
    records = [r for r in caplog.records if r.name == "eip.route.failures"]
    assert [r.levelname for r in records] == ["ERROR"]
