"""The SOAP consumer on a real server on 127.0.0.1: zeep as the client, and raw envelopes."""

from __future__ import annotations

import asyncio
import datetime
import decimal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import zeep
import zeep.exceptions
import zeep.helpers
from lxml import etree
from pytest_asyncio import fixture as async_fixture

from eip import Context, RouteBuilder, otherwise, when
from eip import headers as H
from eip.components.soap import soap_server
from eip.errors import LifecycleError, RouteDefinitionError, SoapFault

WSDL = str(Path(__file__).parent / "wsdl" / "crm_erp.wsdl")
CUST = "http://erp.example.com/schemas/customer"
S11 = "http://schemas.xmlsoap.org/soap/envelope/"
S12 = "http://www.w3.org/2003/05/soap-envelope"
PORTS = ["CustomerSoap11Port", "CustomerSoap12Port"]

CUSTOMER = {
    "id": "C000042",
    "name": "Ada Lovelace",
    "status": "ACTIVE",
    "customerSince": datetime.date(2020, 1, 31),
    "employees": 12,
    "addresses": {
        "address": [
            {"street": "1 Main", "city": "London", "country": "GB"},
            {"street": "2 Dock", "city": "Leeds", "country": "GB", "kind": "SHIPPING"},
        ]
    },
}


class Service(RouteBuilder):
    """The ERP side of the CRM integration, served from the WSDL."""

    def __init__(self, seen: list[Any], **options: Any) -> None:
        super().__init__()
        self.seen = seen
        self.options = options

    def configure(self) -> None:
        def upsert(exchange: Any) -> None:
            customer = exchange.body["customer"]
            if customer["status"] == "SUSPENDED":
                raise SoapFault(
                    "customer is locked",
                    kind="client",
                    fault="CustomerFault",
                    detail={"code": "LOCKED", "message": "locked by finance", "field": "status"},
                    subcodes=("{urn:erp:faults}Locked",),
                )
            if customer["status"] == "CLOSED":
                raise RuntimeError("database password=hunter2 rejected")
            exchange.body = {"customerId": customer["id"], "created": True, "version": 3}

        (
            self.from_(soap_server("/services/customer", wsdl=WSDL, **self.options))
            .route_id("erp-customer-service")
            .process(
                lambda ex: self.seen.append(
                    ({**ex.headers, "_soap_headers": ex.properties.get(H.SOAP_HEADERS)}, ex.body)
                )
            )
            .choice(
                when(lambda ex: ex.headers[H.SOAP_OPERATION] == "CheckCredit").transform(
                    lambda ex: {
                        "approved": ex.body["amount"] <= decimal.Decimal("1000"),
                        "limit": decimal.Decimal("1000.00"),
                        "reason": "within limit",
                    }
                ),
                when(lambda ex: ex.headers[H.SOAP_OPERATION] == "UpsertCustomer").process(upsert),
                otherwise().set_body(None),
            )
        )


class Served:
    def __init__(self, context: Context, seen: list[Any]) -> None:
        self.context = context
        self.seen = seen
        self.url = f"{context.component('http').server.base_url}/services/customer"  # type: ignore[attr-defined]

    async def post(self, envelope: bytes, version: str = "1.1") -> httpx.Response:
        kind = "text/xml; charset=utf-8" if version == "1.1" else "application/soap+xml"
        async with httpx.AsyncClient() as client:
            return await client.post(self.url, content=envelope, headers={"content-type": kind})


@async_fixture
async def serve() -> AsyncIterator[Any]:
    contexts: list[Context] = []

    async def start(**options: Any) -> Served:
        seen: list[Any] = []
        context = Context(shutdown_timeout=5)
        context.component("http").configure(host="127.0.0.1", port=0)  # type: ignore[attr-defined]
        context.add_routes(Service(seen, **options))
        contexts.append(context)
        await context.start()
        return Served(context, seen)

    try:
        yield start
    finally:
        for context in contexts:
            await context.stop()


def envelope(body: str, version: str = "1.1") -> bytes:
    ns = S11 if version == "1.1" else S12
    return (
        f'<e:Envelope xmlns:e="{ns}" xmlns:c="{CUST}"><e:Body>{body}</e:Body></e:Envelope>'
    ).encode()


async def in_thread(fn: Any, *args: Any) -> Any:
    """zeep's client is synchronous: run it off the loop that serves it."""
    return await asyncio.to_thread(fn, *args)


@pytest.mark.parametrize("port", PORTS)
async def test_zeep_calls_the_served_service_in_both_versions(serve: Any, port: str) -> None:
    served = await serve()

    def calls() -> tuple[Any, Any]:
        client = zeep.Client(f"{served.url}?wsdl")  # loads the WSDL and its XSD from eip
        service = client.bind("CustomerService", port)
        credit = service.CheckCredit(customerId="C000001", amount=decimal.Decimal("250.00"))
        upserted = service.UpsertCustomer(customer=CUSTOMER, correlationId="corr-1")
        return credit, upserted

    credit, upserted = await in_thread(calls)
    assert credit.approved is True
    assert credit.limit == decimal.Decimal("1000.00")
    assert (upserted.customerId, upserted.created, upserted.version) == ("C000042", True, 3)
    headers, data = served.seen[1]
    assert headers[H.SOAP_OPERATION] == "UpsertCustomer"
    assert headers[H.SOAP_VERSION] == ("1.1" if "11" in port else "1.2")
    assert headers[H.SOAP_ACTION] == "http://erp.example.com/services/customer/UpsertCustomer"
    customer = data["customer"]
    assert customer["customerSince"] == datetime.date(2020, 1, 31)  # typed plain data
    assert customer["employees"] == 12
    assert [a["city"] for a in customer["addresses"]["address"]] == ["London", "Leeds"]
    assert customer["addresses"]["address"][1]["kind"] == "SHIPPING"


@pytest.mark.parametrize("port", PORTS)
async def test_a_typed_fault_reaches_zeep_with_its_detail(serve: Any, port: str) -> None:
    served = await serve()
    locked = {**CUSTOMER, "status": "SUSPENDED"}

    def call() -> zeep.exceptions.Fault:
        service = zeep.Client(f"{served.url}?wsdl").bind("CustomerService", port)
        with pytest.raises(zeep.exceptions.Fault) as caught:
            service.UpsertCustomer(customer=locked)
        return caught.value

    fault = await in_thread(call)
    assert fault.message == "customer is locked"
    assert fault.code.endswith(":Client" if "11" in port else ":Sender")
    detail = fault.detail.find(f"{{{CUST}}}CustomerFault")
    assert detail is not None
    assert detail.findtext(f"{{{CUST}}}code") == "LOCKED"
    assert detail.findtext(f"{{{CUST}}}field") == "status"


async def test_soap12_faults_carry_namespaced_subcodes_and_http_400(serve: Any) -> None:
    served = await serve()
    body = etree.tostring(
        etree.fromstring(
            envelope(
                "<c:UpsertCustomer><c:customer><c:id>C000042</c:id><c:name>A</c:name>"
                "<c:status>SUSPENDED</c:status><c:customerSince>2020-01-31</c:customerSince>"
                "<c:addresses><c:address><cmn:street xmlns:cmn='http://erp.example.com/schemas/common'>s</cmn:street>"
                "</c:address></c:addresses></c:customer></c:UpsertCustomer>",
                "1.2",
            )
        )
    )
    response = await served.post(body, "1.2")
    assert response.status_code == 400  # schema-invalid: Sender fault, naming the element
    assert response.headers["content-type"].startswith("application/soap+xml")
    root = etree.fromstring(response.content)
    assert root.findtext(f".//{{{S12}}}Value") == "env:Sender"
    assert "UpsertCustomer/customer/addresses/address" in (root.findtext(f".//{{{S12}}}Text") or "")

    def locked_call() -> bytes:
        import requests  # zeep's own HTTP library, to send zeep's own envelope

        client = zeep.Client(f"{served.url}?wsdl")
        service = client.bind("CustomerService", "CustomerSoap12Port")
        message = client.create_message(
            service, "UpsertCustomer", customer={**CUSTOMER, "status": "SUSPENDED"}
        )
        answer = requests.post(
            served.url,
            data=etree.tostring(message),
            headers={"content-type": "application/soap+xml; charset=utf-8"},
            timeout=10,
        )
        assert answer.status_code == 400
        return answer.content

    fault = etree.fromstring(await in_thread(locked_call))
    subcode = fault.find(f".//{{{S12}}}Subcode/{{{S12}}}Value")
    assert subcode is not None
    prefix, _, local = (subcode.text or "").partition(":")
    assert local == "Locked"
    assert subcode.nsmap[prefix] == "urn:erp:faults"  # the subcode's namespace is declared


@pytest.mark.parametrize(
    ("request_body", "where"),
    [
        (
            "<c:CheckCredit><c:customerId>C000001</c:customerId><c:amount>abc</c:amount></c:CheckCredit>",
            "CheckCredit/amount",
        ),
        (
            "<c:CheckCredit><c:customerId>X1</c:customerId><c:amount>1.00</c:amount></c:CheckCredit>",
            "CheckCredit/customerId",
        ),
        ("<c:CheckCredit><c:amount>1.00</c:amount></c:CheckCredit>", "CheckCredit"),
    ],
)
async def test_schema_invalid_input_is_a_client_fault_naming_the_element(
    serve: Any, request_body: str, where: str
) -> None:
    served = await serve()
    response = await served.post(envelope(request_body))
    assert response.status_code == 500  # SOAP 1.1 answers every fault with 500
    root = etree.fromstring(response.content)
    assert root.findtext(".//faultcode") == "soapenv:Client"
    assert where in (root.findtext(".//faultstring") or "")
    assert served.seen == []  # the route never saw it


async def test_unknown_operation_and_non_soap_bodies_are_client_faults(serve: Any) -> None:
    served = await serve()
    unknown = await served.post(envelope("<c:DeleteEverything/>"))
    assert unknown.status_code == 500
    assert "no operation takes" in unknown.text
    not_soap = await served.post(b'{"customerId": "C000001"}')
    assert not_soap.status_code == 500
    assert "soapenv:Client" in not_soap.text


@pytest.mark.parametrize(
    "payload",
    [
        b'<?xml version="1.0"?>'
        b'<!DOCTYPE e [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b'<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"><e:Body>&x;</e:Body></e:Envelope>',
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;">'
        b'<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;">]><e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/">'
        b"<e:Body>&lol3;</e:Body></e:Envelope>",
    ],
    ids=["xxe", "billion-laughs"],
)
async def test_xxe_and_billion_laughs_are_rejected_with_a_fault(serve: Any, payload: bytes) -> None:
    served = await serve()
    response = await served.post(payload)
    assert response.status_code == 500
    assert "soapenv:Client" in response.text
    assert "root:" not in response.text  # nothing of /etc/passwd
    assert served.seen == []


async def test_oversized_requests_get_413(serve: Any) -> None:
    served = await serve(max_body_size=2000)
    big = envelope("<c:CheckCredit>" + "<!-- padding -->" * 500 + "</c:CheckCredit>")
    response = await served.post(big)
    assert response.status_code == 413


async def test_a_route_failure_is_a_server_fault_without_internals(serve: Any) -> None:
    served = await serve()

    def call() -> zeep.exceptions.Fault:
        service = zeep.Client(f"{served.url}?wsdl").bind("CustomerService", PORTS[0])
        with pytest.raises(zeep.exceptions.Fault) as caught:
            service.UpsertCustomer(customer={**CUSTOMER, "status": "CLOSED"})
        return caught.value

    fault = await in_thread(call)
    assert fault.code.endswith(":Server")
    assert "service failed (exchange" in fault.message
    assert "hunter2" not in fault.message
    loud = await serve(expose_errors=True)

    def loud_call() -> str:
        service = zeep.Client(f"{loud.url}?wsdl").bind("CustomerService", PORTS[0])
        try:
            service.UpsertCustomer(customer={**CUSTOMER, "status": "CLOSED"})
        except zeep.exceptions.Fault as exc:
            return str(exc.message)
        return ""

    assert "RuntimeError" in await in_thread(loud_call)


async def test_one_way_operations_answer_202_after_the_route(serve: Any) -> None:
    served = await serve()
    payment = (
        "<c:NotifyPayment xmlns:pay='http://erp.example.com/schemas/payment'>"
        "<c:customerId>C000001</c:customerId><c:payment>"
        "<pay:paymentId>P-1</pay:paymentId><pay:paidOn>2024-05-02</pay:paidOn>"
        "<pay:amount>10.00</pay:amount><pay:currency>EUR</pay:currency>"
        "<pay:method>CARD</pay:method><pay:invoiceNumber>I-1</pay:invoiceNumber>"
        "<pay:invoiceNumber>I-2</pay:invoiceNumber></c:payment></c:NotifyPayment>"
    )
    response = await served.post(envelope(payment))
    assert response.status_code == 202, response.text
    assert response.content == b""
    headers, data = served.seen[0]
    assert headers[H.SOAP_OPERATION] == "NotifyPayment"
    assert data["payment"]["paymentId"] == "P-1"
    assert data["payment"]["paidOn"] == datetime.date(2024, 5, 2)
    assert data["payment"]["invoiceNumber"] == ["I-1", "I-2"]


async def test_the_served_wsdl_points_at_the_service_and_serves_its_imports(serve: Any) -> None:
    served = await serve()
    async with httpx.AsyncClient() as client:
        document = await client.get(f"{served.url}?wsdl")
        root = etree.fromstring(document.content)
        locations = {
            node.get("location")
            for node in root.iter(
                "{http://schemas.xmlsoap.org/wsdl/soap/}address",
                "{http://schemas.xmlsoap.org/wsdl/soap12/}address",
            )
        }
        assert locations == {served.url}
        imports = [
            node.get("schemaLocation")
            for node in root.iter("{http://www.w3.org/2001/XMLSchema}import")
            if node.get("schemaLocation")
        ]
        assert imports == [f"{served.url}?xsd=payment.xsd"]
        xsd = await client.get(str(imports[0]))
        assert xsd.status_code == 200
        assert b"schema" in xsd.content
        assert (await client.get(f"{served.url}?xsd=../../../etc/passwd")).status_code == 404


async def test_soap_services_authenticate_like_http_routes(
    serve: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FIN_KEYS", "fin-key")
    served = await serve(auth="api_key", credentials_env="FIN_KEYS")
    check = envelope(
        "<c:CheckCredit><c:customerId>C000001</c:customerId><c:amount>1.00</c:amount></c:CheckCredit>"
    )
    async with httpx.AsyncClient() as client:
        denied = await client.post(served.url, content=check, headers={"content-type": "text/xml"})
        allowed = await client.post(
            served.url, content=check, headers={"content-type": "text/xml", "x-api-key": "fin-key"}
        )
    assert denied.status_code == 401
    assert allowed.status_code == 200
    assert b"approved" in allowed.content
    assert "x-api-key" not in served.seen[0][0]


async def test_a_reply_that_does_not_fit_the_wsdl_is_a_server_fault(tmp_path: Path) -> None:
    class Wrong(RouteBuilder):
        def configure(self) -> None:
            (
                self.from_(soap_server("/svc", wsdl=WSDL))
                .route_id("wrong")
                .set_body({"approved": "maybe", "limit": "lots"})
            )

    context = Context(shutdown_timeout=5)
    context.component("http").configure(host="127.0.0.1", port=0)  # type: ignore[attr-defined]
    context.add_routes(Wrong())
    async with context:
        url = f"{context.component('http').server.base_url}/svc"  # type: ignore[attr-defined]
        async with httpx.AsyncClient() as client:
            response = await client.post(
                url,
                content=envelope(
                    "<c:CheckCredit><c:customerId>C000001</c:customerId><c:amount>1.00</c:amount></c:CheckCredit>"
                ),
                headers={"content-type": "text/xml"},
            )
    assert response.status_code == 500
    assert "soapenv:Server" in response.text
    assert "invalid reply" in response.text


def test_a_broken_wsdl_fails_the_route_start(tmp_path: Path) -> None:
    broken = tmp_path / "broken.wsdl"
    broken.write_text(Path(WSDL).read_text()[:3000])
    asyncio.run(_start_broken(broken))


async def _start_broken(broken: Path) -> None:

    class Broken(RouteBuilder):
        def configure(self) -> None:
            self.from_(soap_server("/svc", wsdl=str(broken))).route_id("broken")

    context = Context(shutdown_timeout=5)
    context.component("http").configure(host="127.0.0.1", port=0)  # type: ignore[attr-defined]
    context.add_routes(Broken())
    with pytest.raises((LifecycleError, RouteDefinitionError), match=r"broken\.wsdl"):
        await context.start()


MUST = (
    '<e:Header><x:Tenant xmlns:x="urn:crm:context" e:mustUnderstand="1">acme</x:Tenant></e:Header>'
)
CHECK = (
    "<c:CheckCredit><c:customerId>C000001</c:customerId><c:amount>1.00</c:amount></c:CheckCredit>"
)


def _with_header(header: str, version: str) -> bytes:
    ns = S11 if version == "1.1" else S12
    return (
        f'<e:Envelope xmlns:e="{ns}" xmlns:c="{CUST}">{header}<e:Body>{CHECK}</e:Body></e:Envelope>'
    ).encode()


@pytest.mark.parametrize("version", ["1.1", "1.2"])
async def test_a_must_understand_header_nobody_handles_is_a_must_understand_fault(
    serve: Any, version: str
) -> None:
    served = await serve()
    response = await served.post(_with_header(MUST, version), version)
    assert response.status_code == 500
    assert "MustUnderstand" in response.text
    assert "{urn:crm:context}Tenant" in response.text
    assert served.seen == []


async def test_declared_headers_are_understood_and_reach_the_route(serve: Any) -> None:
    served = await serve(understood_headers=["{urn:crm:context}Tenant"])
    response = await served.post(_with_header(MUST, "1.1"))
    assert response.status_code == 200
    assert b"approved" in response.content
    headers, _ = served.seen[0]
    [tenant] = headers["_soap_headers"]
    assert (tenant.tag, tenant.text) == ("{urn:crm:context}Tenant", "acme")
