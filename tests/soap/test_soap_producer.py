"""The SOAP producer against a real SOAP stub server on 127.0.0.1 (aiohttp, random port).

The stub parses every request with a hardened lxml parser, records it, and answers canned
envelopes per operation (by the Body child's local name), in the SOAP version the request
used; tests program other answers (faults, errors, slow replies) per operation.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import decimal
import hashlib
import shutil
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import msgspec
import pytest
from aiohttp import web
from lxml import etree
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from eip import Context, RedeliveryPolicy, RouteBuilder, dead_letter_channel
from eip import headers as H
from eip.components.soap import SoapClientSpec, soap_client
from eip.errors import (
    EndpointError,
    ExchangeTimeoutError,
    HttpOperationFailed,
    MarshalError,
    RouteDefinitionError,
    SoapFault,
    UnmarshalError,
)
from eip.message import Exchange
from tests.inline import inline_routes

WSDL_DIR = Path(__file__).parent / "wsdl"
WSDL = str(WSDL_DIR / "crm_erp.wsdl")
S11 = "http://schemas.xmlsoap.org/soap/envelope/"
S12 = "http://www.w3.org/2003/05/soap-envelope"
CUST = "http://erp.example.com/schemas/customer"
ACTION = "http://erp.example.com/services/customer/"
FAULTS_NS = "urn:erp:faults"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
WSA = "http://www.w3.org/2005/08/addressing"
CMN = "http://erp.example.com/schemas/common"
NS = {"c": CUST, "m": CMN, "s11": S11, "s12": S12, "wsse": WSSE, "wsu": WSU, "wsa": WSA}
CREDIT = {"approved": True, "limit": decimal.Decimal("5000.00"), "reason": None}

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)


# --- the stub server ------------------------------------------------------------------------


def envelope(version_ns: str, payload: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="utf-8"?><e:Envelope xmlns:e="{version_ns}">'
        f"<e:Body>{payload}</e:Body></e:Envelope>"
    ).encode()


CHECK_CREDIT_REPLY = (
    f'<c:CheckCreditResponse xmlns:c="{CUST}"><c:approved>true</c:approved>'
    "<c:limit>5000.00</c:limit></c:CheckCreditResponse>"
)
UPSERT_REPLY = (
    f'<c:UpsertCustomerResponse xmlns:c="{CUST}"><c:customerId>C000042</c:customerId>'
    "<c:created>true</c:created><c:version>3</c:version></c:UpsertCustomerResponse>"
)
CUSTOMER_FAULT = (
    f'<c:CustomerFault xmlns:c="{CUST}"><c:code>LOCKED</c:code>'
    "<c:message>locked by finance</c:message><c:field>status</c:field></c:CustomerFault>"
)
# 1.1: the code's prefix is declared on the Fault element only (a reader must resolve it there).
FAULT_11 = (
    f'<?xml version="1.0"?><soapenv:Envelope xmlns:soapenv="{S11}"><soapenv:Body>'
    f'<soapenv:Fault xmlns:x="{S11}"><faultcode>x:Client</faultcode>'
    f"<faultstring>customer is locked</faultstring><detail>{CUSTOMER_FAULT}</detail>"
    "</soapenv:Fault></soapenv:Body></soapenv:Envelope>"
).encode()
FAULT_12 = (
    f'<?xml version="1.0"?><env:Envelope xmlns:env="{S12}"><env:Body><env:Fault>'
    f'<env:Code><env:Value>env:Sender</env:Value><env:Subcode><env:Value xmlns:f="{FAULTS_NS}">'
    "f:CustomerLocked</env:Value></env:Subcode></env:Code>"
    '<env:Reason><env:Text xml:lang="en">customer is locked</env:Text></env:Reason>'
    f"<env:Detail>{CUSTOMER_FAULT}</env:Detail></env:Fault></env:Body></env:Envelope>"
).encode()
SERVER_FAULT_11 = (
    f'<?xml version="1.0"?><s:Envelope xmlns:s="{S11}"><s:Body><s:Fault>'
    "<faultcode>s:Server</faultcode><faultstring>database unavailable</faultstring>"
    '<detail><t:Trace xmlns:t="urn:erp:trace">db-7 timed out</t:Trace></detail>'
    "</s:Fault></s:Body></s:Envelope>"
).encode()


@dataclass(frozen=True)
class Answer:
    """One canned answer; ``body=None`` answers the operation's success envelope."""

    status: int = 200
    body: bytes | None = None
    content_type: str | None = None
    delay: float = 0.0


@dataclass(frozen=True)
class Received:
    """One request as the stub parsed it."""

    headers: dict[str, str]
    body: bytes
    root: etree._Element
    version: str
    operation: str

    def find(self, path: str) -> etree._Element:
        found = self.root.find(path, NS)
        assert found is not None, f"{path} not in {self.body!r}"
        return found

    def text(self, path: str) -> str:
        return self.find(path).text or ""


SUCCESS = {"CheckCredit": CHECK_CREDIT_REPLY, "UpsertCustomer": UPSERT_REPLY}


class SoapStub:
    """``async with SoapStub() as stub``: ``stub.url``, ``stub.received``, ``stub.answer()``."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self._answers: dict[str, list[Answer]] = {}
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/services/customer"

    def answer(self, operation: str, *answers: Answer) -> None:
        """Answer ``operation`` with ``answers`` in order, the last one repeating."""
        self._answers[operation] = list(answers)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        root = etree.fromstring(body, _PARSER)
        version_ns = etree.QName(root).namespace or ""
        payload = root.find(f"{{{version_ns}}}Body")
        assert payload is not None
        assert len(payload) == 1
        operation = etree.QName(payload[0]).localname
        headers = {name.lower(): value for name, value in request.headers.items()}
        version = "1.1" if version_ns == S11 else "1.2"
        self.received.append(Received(headers, body, root, version, operation))
        queue = self._answers.get(operation, [Answer()])
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        if answer.delay:
            with suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), answer.delay)
        content_type = answer.content_type or (
            "text/xml; charset=utf-8" if version == "1.1" else "application/soap+xml"
        )
        if answer.body is not None:
            data = answer.body
        elif operation in SUCCESS:
            data = envelope(version_ns, SUCCESS[operation])
        else:  # one-way
            return web.Response(status=202)
        return web.Response(body=data, status=answer.status, headers={"content-type": content_type})

    async def __aenter__(self) -> SoapStub:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=1.0)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()


# --- helpers --------------------------------------------------------------------------------


@pytest.fixture
async def stub() -> AsyncIterator[SoapStub]:
    async with SoapStub() as server:
        yield server


@asynccontextmanager
async def running(target: Any, **context_options: Any) -> AsyncIterator[Context]:
    context = Context(shutdown_timeout=5, **context_options)
    context.add_routes(inline_routes(lambda b: b.from_("direct:x").route_id("call").to(target)))
    async with context:
        yield context


async def call(target: Any, body: Any = None, headers: dict[str, Any] | None = None) -> Exchange:
    async with running(target) as context:
        return await context.template().request_exchange("direct:x", body, headers)


def client(stub: SoapStub, port: str = "CustomerSoap11Port", **options: Any) -> SoapClientSpec:
    options.setdefault("operation", "CheckCredit")
    return soap_client("erp", wsdl=WSDL, wsdl_port=port, address=stub.url, **options)


async def start_fails(target: Any) -> RouteDefinitionError:
    context = Context(shutdown_timeout=5)
    context.add_routes(inline_routes(lambda b: b.from_("direct:x").to(target)))
    with pytest.raises(RouteDefinitionError) as caught:
        await context.start()
    assert not context.started
    return caught.value


def copy_wsdl(directory: Path, edit: Callable[[str], str]) -> Path:
    """An edited copy of the test WSDL, next to a copy of the schema it imports."""
    path = directory / "erp.wsdl"
    path.write_text(edit(Path(WSDL).read_text()))
    shutil.copy(WSDL_DIR / "payment.xsd", directory)
    return path


def unused_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class Address(msgspec.Struct):
    street: str
    city: str
    country: str
    kind: str | None = None


class Addresses(msgspec.Struct):
    address: list[Address]


class Customer(msgspec.Struct):
    id: str
    name: str
    status: str
    customerSince: datetime.date
    addresses: Addresses
    creditLimit: decimal.Decimal | None = None


class Upsert(msgspec.Struct):
    customer: Customer
    correlationId: str | None = None


class Credit(msgspec.Struct):
    approved: bool
    limit: decimal.Decimal
    reason: str | None = None


class UpsertResult(msgspec.Struct):
    customerId: str
    created: bool
    version: int


ADA = Upsert(
    Customer(
        "C000042",
        "Ada Lovelace",
        "ACTIVE",
        datetime.date(2020, 1, 31),
        Addresses(
            [Address("1 Main", "London", "GB"), Address("2 Dock", "Leeds", "GB", "SHIPPING")]
        ),
        decimal.Decimal("2500.50"),
    ),
    "corr-1",
)


# --- requests and replies -------------------------------------------------------------------


async def test_a_dict_body_is_sent_as_a_soap11_envelope_and_the_reply_is_plain_data(
    stub: SoapStub,
) -> None:
    exchange = await call(client(stub), {"customerId": "C000001", "amount": "10.50"})

    assert exchange.exception is None
    assert exchange.body == CREDIT
    [sent] = stub.received
    assert (sent.version, sent.operation) == ("1.1", "CheckCredit")
    assert sent.headers["content-type"] == "text/xml; charset=utf-8"
    assert sent.headers["soapaction"] == f'"{ACTION}CheckCredit"'
    assert sent.text("s11:Body/c:CheckCredit/c:customerId") == "C000001"
    assert sent.text("s11:Body/c:CheckCredit/c:amount") == "10.50"
    assert sent.root.find("s11:Header", NS) is None
    assert sent.body.startswith(b"<?xml version='1.0' encoding='utf-8'?>")


async def test_a_struct_body_is_sent_as_a_soap12_envelope_and_the_reply_fills_reply_type(
    stub: SoapStub,
) -> None:
    target = client(stub, "CustomerSoap12Port", operation="UpsertCustomer", reply_type=UpsertResult)
    exchange = await call(target, ADA)

    assert exchange.exception is None
    assert exchange.body == UpsertResult("C000042", True, 3)
    [sent] = stub.received
    assert sent.version == "1.2"
    content_type = f'application/soap+xml; charset=utf-8; action="{ACTION}UpsertCustomer"'
    assert sent.headers["content-type"] == content_type
    assert "soapaction" not in sent.headers
    customer = "s12:Body/c:UpsertCustomer/c:customer"
    assert sent.text(f"{customer}/c:id") == "C000042"
    assert sent.text(f"{customer}/c:customerSince") == "2020-01-31"
    assert sent.text(f"{customer}/c:creditLimit") == "2500.50"
    addresses = sent.root.findall(f"{customer}/c:addresses/c:address", NS)
    assert [a.findtext("m:city", namespaces=NS) for a in addresses] == ["London", "Leeds"]
    assert [a.get("kind") for a in addresses] == [None, "SHIPPING"]
    assert sent.text("s12:Body/c:UpsertCustomer/c:correlationId") == "corr-1"


async def test_reply_type_turns_the_reply_into_a_struct(stub: SoapStub) -> None:
    exchange = await call(client(stub, reply_type=Credit), {"customerId": "C1", "amount": 1})

    assert exchange.body == Credit(True, decimal.Decimal("5000.00"))


async def test_a_reply_that_does_not_fit_reply_type_is_an_unmarshal_error(stub: SoapStub) -> None:
    with pytest.raises(UnmarshalError) as caught:
        async with running(client(stub, reply_type=UpsertResult)) as context:
            await context.template().request("direct:x", {"customerId": "C1", "amount": 1})

    assert "CheckCredit reply as UpsertResult" in str(caught.value)
    assert "customerId" in str(caught.value)


async def test_the_operation_header_wins_and_a_one_way_operation_gives_no_body(
    stub: SoapStub,
) -> None:
    payment = {
        "customerId": "C000042",
        "payment": {
            "paymentId": "P-1",
            "paidOn": datetime.date(2026, 11, 30),
            "amount": decimal.Decimal("99.90"),
            "currency": "EUR",
            "method": "CARD",
            "invoiceNumber": ["I-1", "I-2"],
        },
    }
    exchange = await call(client(stub), payment, {H.SOAP_REQUEST_OPERATION: "NotifyPayment"})

    assert exchange.exception is None
    assert exchange.body is None
    [sent] = stub.received
    assert sent.operation == "NotifyPayment"
    assert sent.headers["soapaction"] == f'"{ACTION}NotifyPayment"'
    pay = "{http://erp.example.com/schemas/payment}"
    numbers = sent.find("s11:Body/c:NotifyPayment/c:payment").findall(f"{pay}invoiceNumber")
    assert [n.text for n in numbers] == ["I-1", "I-2"]


async def test_an_unknown_operation_names_the_ones_the_wsdl_has(stub: SoapStub) -> None:
    async with running(client(stub)) as context:
        with pytest.raises(EndpointError) as caught:
            await context.template().request(
                "direct:x", {}, {H.SOAP_REQUEST_OPERATION: "DeleteCustomer"}
            )

    message = str(caught.value)
    assert "no operation 'DeleteCustomer'" in message
    assert "UpsertCustomer, CheckCredit, NotifyPayment" in message
    assert stub.received == []


async def test_without_an_operation_option_or_header_the_error_says_how_to_name_one(
    stub: SoapStub,
) -> None:
    async with running(client(stub, operation="")) as context:
        with pytest.raises(EndpointError) as caught:
            await context.template().request("direct:x", {"customerId": "C1", "amount": 1})

    assert f"no operation= and no {H.SOAP_REQUEST_OPERATION}" in str(caught.value)
    assert "(operations: UpsertCustomer, CheckCredit, NotifyPayment)" in str(caught.value)
    assert stub.received == []


async def test_an_unknown_static_operation_fails_the_route_start(stub: SoapStub) -> None:
    error = await start_fails(client(stub, operation="DeleteCustomer"))

    assert "no operation 'DeleteCustomer'" in str(error)
    assert "CheckCredit" in str(error)


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"<CheckCredit/>", "must be a dict, a msgspec Struct or None, not bytes"),
        ({"customerId": "C1", "amount": 1, "colour": "red"}, "colour"),
    ],
    ids=["bytes", "unknown-field"],
)
async def test_a_body_that_does_not_fit_the_operation_is_a_marshal_error(
    stub: SoapStub, body: Any, why: str
) -> None:
    async with running(client(stub)) as context:
        with pytest.raises(MarshalError) as caught:
            await context.template().request("direct:x", body)

    assert why in str(caught.value)
    assert "CheckCredit" in str(caught.value)
    assert stub.received == []


# --- faults and failures --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("port", "answer", "code", "subcodes", "status"),
    [
        ("CustomerSoap11Port", Answer(500, FAULT_11), f"{{{S11}}}Client", (), 500),
        (
            "CustomerSoap12Port",
            Answer(400, FAULT_12),
            f"{{{S12}}}Sender",
            (f"{{{FAULTS_NS}}}CustomerLocked",),
            400,
        ),
    ],
    ids=["soap11", "soap12"],
)
async def test_a_typed_fault_is_a_soap_fault_with_resolved_code_and_typed_detail(
    stub: SoapStub,
    port: str,
    answer: Answer,
    code: str,
    subcodes: tuple[str, ...],
    status: int,
) -> None:
    stub.answer("UpsertCustomer", answer)
    async with running(client(stub, port, operation="UpsertCustomer")) as context:
        with pytest.raises(SoapFault) as caught:
            await context.template().request("direct:x", ADA)

    fault = caught.value
    assert fault.code == code
    assert fault.kind == "client"
    assert fault.subcodes == subcodes
    assert fault.reason == "customer is locked"
    assert fault.fault == "CustomerFault"
    assert fault.detail == {"code": "LOCKED", "message": "locked by finance", "field": "status"}
    assert fault.http_status == status
    assert fault.endpoint == stub.url
    assert "SOAP fault CustomerFault: customer is locked" in str(fault)


async def test_a_fault_the_wsdl_does_not_declare_keeps_its_detail_as_xml(stub: SoapStub) -> None:
    stub.answer("CheckCredit", Answer(500, SERVER_FAULT_11))
    async with running(client(stub)) as context:
        with pytest.raises(SoapFault) as caught:
            await context.template().request("direct:x", {"customerId": "C1", "amount": 1})

    fault = caught.value
    assert (fault.kind, fault.code, fault.fault) == ("server", f"{{{S11}}}Server", None)
    assert fault.reason == "database unavailable"
    assert isinstance(fault.detail, str)
    detail = etree.fromstring(fault.detail.encode(), _PARSER)
    assert detail.tag == "{urn:erp:trace}Trace"
    assert detail.text == "db-7 timed out"


async def test_a_fault_in_a_200_reply_is_still_a_fault(stub: SoapStub) -> None:
    stub.answer("CheckCredit", Answer(200, SERVER_FAULT_11))
    async with running(client(stub)) as context:
        with pytest.raises(SoapFault) as caught:
            await context.template().request("direct:x", {"customerId": "C1", "amount": 1})

    assert caught.value.http_status == 200
    assert caught.value.reason == "database unavailable"


async def test_faults_are_redelivered_then_dead_lettered(stub: SoapStub) -> None:
    stub.answer("CheckCredit", Answer(500, SERVER_FAULT_11))
    policy = RedeliveryPolicy(max_redeliveries=2, delay=0)

    def configure(b: RouteBuilder) -> None:
        b.error_handler(dead_letter_channel("mock:dlq", redelivery=policy))
        b.from_("direct:x").route_id("credit-check").to(client(stub))

    context = Context(shutdown_timeout=5)
    context.add_routes(inline_routes(configure))
    async with context:
        exchange = await context.template().send("direct:x", {"customerId": "C1", "amount": 1})
        dlq = context.mock("dlq")
        await dlq.wait_for(1, timeout=5)

    assert exchange.exception is None  # dead-lettered counts as handled
    assert len(stub.received) == 3
    assert dlq.count == 1
    dead = dlq.received[0]
    assert dead.headers[H.EXCEPTION_TYPE] == "eip.errors.SoapFault"
    assert dead.headers[H.REDELIVERY_COUNT] == 2
    assert dead.headers[H.FAILURE_ROUTE] == "credit-check"
    assert dead.body == {"customerId": "C1", "amount": 1}
    error = dead.properties[H.EXCEPTION_PROPERTY]
    assert isinstance(error, SoapFault)
    assert error.reason == "database unavailable"


async def test_a_non_soap_error_answer_is_http_operation_failed(stub: SoapStub) -> None:
    html = b"<html><body><h1>503 Service Unavailable</h1></body></html>"
    stub.answer("CheckCredit", Answer(503, html, "text/html"))
    async with running(client(stub)) as context:
        with pytest.raises(HttpOperationFailed) as caught:
            await context.template().request("direct:x", {"customerId": "C1", "amount": 1})

    error = caught.value
    assert error.status_code == 503
    assert error.url == stub.url
    assert "503 Service Unavailable" in error.body
    assert error.headers["Content-Type"].startswith("text/html")


@pytest.mark.parametrize(
    ("body", "error", "why"),
    [
        (b"OK", EndpointError, "not a SOAP envelope"),
        (envelope(S11, UPSERT_REPLY), UnmarshalError, "got '{" + CUST + "}UpsertCustomerResponse'"),
    ],
    ids=["not-xml", "wrong-element"],
)
async def test_a_2xx_reply_that_is_not_the_operations_output_is_an_error(
    stub: SoapStub, body: bytes, error: type[Exception], why: str
) -> None:
    stub.answer("CheckCredit", Answer(200, body))
    async with running(client(stub)) as context:
        with pytest.raises(error) as caught:
            await context.template().request("direct:x", {"customerId": "C1", "amount": 1})

    assert why in str(caught.value)


async def test_a_slow_server_is_cut_at_the_timeout(stub: SoapStub) -> None:
    stub.answer("CheckCredit", Answer(delay=5.0))
    async with running(client(stub, timeout=0.3)) as context:
        began = time.monotonic()
        with pytest.raises(ExchangeTimeoutError) as caught:
            await context.template().request("direct:x", {"customerId": "C1", "amount": 1})
        elapsed = time.monotonic() - began

    assert elapsed < 2.0
    assert "0.3s" in str(caught.value)
    assert stub.url in str(caught.value)
    assert len(stub.received) == 1


# An rpc/literal service, as older toolkits published them: zeep's message model does the work.
QUOTES_WSDL = """<?xml version="1.0" encoding="UTF-8"?>
<wsdl:definitions xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/"
    xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/" xmlns:xs="http://www.w3.org/2001/XMLSchema"
    xmlns:tns="urn:quotes" targetNamespace="urn:quotes" name="Quotes">
  <wsdl:message name="GetQuoteRequest"><wsdl:part name="symbol" type="xs:string"/></wsdl:message>
  <wsdl:message name="GetQuoteResponse">
    <wsdl:part name="price" type="xs:decimal"/><wsdl:part name="currency" type="xs:string"/>
  </wsdl:message>
  <wsdl:portType name="QuotesPortType">
    <wsdl:operation name="GetQuote">
      <wsdl:input message="tns:GetQuoteRequest"/><wsdl:output message="tns:GetQuoteResponse"/>
    </wsdl:operation>
  </wsdl:portType>
  <wsdl:binding name="QuotesBinding" type="tns:QuotesPortType">
    <soap:binding style="rpc" transport="http://schemas.xmlsoap.org/soap/http"/>
    <wsdl:operation name="GetQuote">
      <soap:operation soapAction="urn:quotes#GetQuote"/>
      <wsdl:input><soap:body use="literal" namespace="urn:quotes"/></wsdl:input>
      <wsdl:output><soap:body use="literal" namespace="urn:quotes"/></wsdl:output>
    </wsdl:operation>
  </wsdl:binding>
  <wsdl:service name="Quotes">
    <wsdl:port name="QuotesPort" binding="tns:QuotesBinding">
      <soap:address location="{address}"/>
    </wsdl:port>
  </wsdl:service>
</wsdl:definitions>
"""


def write_quotes_wsdl(directory: Path, address: str) -> Path:
    path = directory / "quotes.wsdl"
    path.write_text(QUOTES_WSDL.format(address=address))
    return path


async def test_an_rpc_style_operation_goes_through_zeeps_message_model(
    stub: SoapStub, tmp_path: Path
) -> None:
    reply = (
        '<q:GetQuoteResponse xmlns:q="urn:quotes"><price>12.50</price>'
        "<currency>EUR</currency></q:GetQuoteResponse>"
    )
    stub.answer("GetQuote", Answer(200, envelope(S11, reply)))
    wsdl = write_quotes_wsdl(tmp_path, stub.url)  # no address=: the WSDL's soap:address
    exchange = await call(soap_client("quotes", wsdl=str(wsdl)), {"symbol": "ACME"})

    assert exchange.exception is None
    assert exchange.body == {"price": decimal.Decimal("12.50"), "currency": "EUR"}
    [sent] = stub.received
    assert sent.operation == "GetQuote"  # the only one: no operation=
    assert sent.headers["soapaction"] == '"urn:quotes#GetQuote"'
    assert sent.find("s11:Body/{urn:quotes}GetQuote/symbol").text == "ACME"


async def test_a_refused_connection_is_an_endpoint_error_naming_the_address() -> None:
    address = f"http://127.0.0.1:{unused_port()}/services/customer"
    target = soap_client(
        "erp", wsdl=WSDL, wsdl_port="CustomerSoap11Port", operation="CheckCredit", address=address
    )
    async with running(target) as context:
        with pytest.raises(EndpointError) as caught:
            await context.template().request("direct:x", {"customerId": "C1", "amount": 1})

    assert f"POST {address} failed" in str(caught.value)
    assert not isinstance(caught.value, SoapFault | HttpOperationFailed)


# --- route start ----------------------------------------------------------------------------


async def test_a_broken_wsdl_file_fails_the_start_naming_it(tmp_path: Path) -> None:
    broken = copy_wsdl(tmp_path, lambda text: text[: len(text) // 2])

    error = await start_fails(soap_client("erp", wsdl=str(broken), operation="CheckCredit"))

    assert f"WSDL {broken} cannot be loaded" in str(error)


async def test_a_missing_wsdl_file_fails_the_start_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.wsdl"
    error = await start_fails(soap_client("erp", wsdl=str(missing), operation="CheckCredit"))

    assert str(error) == f"WSDL {missing}: no such file"


async def test_an_unreachable_wsdl_url_fails_the_start_quickly() -> None:
    url = f"http://127.0.0.1:{unused_port()}/x?wsdl"
    began = time.monotonic()
    error = await start_fails(soap_client("erp", wsdl=url, operation="CheckCredit"))

    assert time.monotonic() - began < 5.0
    assert f"WSDL {url} cannot be loaded" in str(error)


async def test_two_ports_and_no_choice_fail_the_start_listing_them() -> None:
    error = await start_fails(soap_client("erp", wsdl=WSDL, operation="CheckCredit"))

    assert "2 ports (CustomerSoap11Port, CustomerSoap12Port)" in str(error)
    assert "set wsdl_port (or soap_version)=" in str(error)


async def test_soap_version_picks_the_port(stub: SoapStub) -> None:
    target = soap_client(
        "erp", wsdl=WSDL, soap_version="1.2", operation="CheckCredit", address=stub.url
    )
    exchange = await call(target, {"customerId": "C1", "amount": 1})

    assert exchange.body == CREDIT
    assert [r.version for r in stub.received] == ["1.2"]


async def test_a_port_of_another_soap_version_than_asked_fails_the_start(stub: SoapStub) -> None:
    error = await start_fails(client(stub, soap_version="1.2"))

    assert "port 'CustomerSoap11Port' is SOAP 1.1, not the soap_version=1.2" in str(error)


async def test_an_unknown_port_fails_the_start_listing_the_ports(stub: SoapStub) -> None:
    error = await start_fails(client(stub, port="CustomerSoap13Port"))

    assert "no port 'CustomerSoap13Port'" in str(error)
    assert "CustomerSoap11Port, CustomerSoap12Port" in str(error)


# --- WS-Security, WS-Addressing, tracing ----------------------------------------------------


async def test_ws_security_username_token_with_the_password_from_the_environment(
    stub: SoapStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ERP_WS_PASSWORD", "s3cret!")
    target = client(stub, ws_username="crm", ws_password_env="ERP_WS_PASSWORD")
    exchange = await call(target, {"customerId": "C1", "amount": 1})

    assert exchange.body == CREDIT
    [sent] = stub.received
    token = "s11:Header/wsse:Security/wsse:UsernameToken"
    assert sent.text(f"{token}/wsse:Username") == "crm"
    password = sent.find(f"{token}/wsse:Password")
    assert password.text == "s3cret!"
    assert str(password.get("Type")).endswith("#PasswordText")
    assert sent.text("s11:Body/c:CheckCredit/c:customerId") == "C1"


async def test_ws_security_password_digest_carries_nonce_and_created(
    stub: SoapStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ERP_WS_PASSWORD", "s3cret!")
    target = client(
        stub, ws_username="crm", ws_password_env="ERP_WS_PASSWORD", ws_password_digest=True
    )
    async with running(target) as context:
        for _ in range(2):
            await context.template().request("direct:x", {"customerId": "C1", "amount": 1})

    nonces = []
    for sent in stub.received:
        token = "s11:Header/wsse:Security/wsse:UsernameToken"
        password = sent.find(f"{token}/wsse:Password")
        assert str(password.get("Type")).endswith("#PasswordDigest")
        nonce, created = sent.text(f"{token}/wsse:Nonce"), sent.text(f"{token}/wsu:Created")
        expected = hashlib.sha1(base64.b64decode(nonce) + created.encode() + b"s3cret!").digest()
        assert password.text == base64.b64encode(expected).decode()
        assert b"s3cret!" not in sent.body
        nonces.append(nonce)
    assert len(set(nonces)) == 2  # a fresh nonce per message


async def test_a_missing_ws_password_variable_fails_the_start(
    stub: SoapStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ERP_NO_SUCH_PASSWORD", raising=False)
    error = await start_fails(
        client(stub, ws_username="crm", ws_password_env="ERP_NO_SUCH_PASSWORD")
    )

    assert "ERP_NO_SUCH_PASSWORD" in str(error)
    assert stub.received == []


async def test_ws_addressing_headers_when_the_wsdl_asks_for_them(
    stub: SoapStub, tmp_path: Path
) -> None:
    wsdl = copy_wsdl(
        tmp_path,
        lambda text: text.replace(
            '<wsdl:input message="tns:CheckCreditRequest"/>',
            '<wsdl:input message="tns:CheckCreditRequest" '
            'xmlns:wsam="http://www.w3.org/2007/05/addressing/metadata" '
            'wsam:Action="urn:erp:CheckCredit"/>',
        ),
    )
    target = soap_client(
        "erp",
        wsdl=str(wsdl),
        wsdl_port="CustomerSoap11Port",
        operation="CheckCredit",
        address=stub.url,
    )
    exchange = await call(target, {"customerId": "C1", "amount": 1})

    assert exchange.body == CREDIT
    [sent] = stub.received
    assert sent.text("s11:Header/wsa:Action") == "urn:erp:CheckCredit"
    assert sent.text("s11:Header/wsa:To") == stub.url
    assert sent.text("s11:Header/wsa:MessageID").startswith("urn:uuid:")


async def test_the_trace_context_goes_in_the_http_headers(stub: SoapStub) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    async with running(client(stub), tracer_provider=provider) as context:
        await context.template().request("direct:x", {"customerId": "C1", "amount": 1})

    spans = exporter.get_finished_spans()
    [route] = [s for s in spans if s.name == "call"]
    [sent] = stub.received
    _, trace_id, parent_id, flags = sent.headers["traceparent"].split("-")
    assert flags == "01"
    assert {span.context.trace_id for span in spans} == {int(trace_id, 16)}
    [outgoing] = [s for s in spans if s.kind is SpanKind.CLIENT]
    assert outgoing.context.span_id == int(parent_id, 16)
    assert outgoing.parent is not None
    assert outgoing.parent.span_id == route.context.span_id
    attributes = dict(outgoing.attributes or {})
    assert attributes["rpc.system"] == "soap"
    assert attributes["rpc.method"] == "CheckCredit"
    assert attributes["url.full"] == stub.url
    assert attributes["http.response.status_code"] == 200
    assert outgoing.status.status_code is not StatusCode.ERROR
    assert [s.name for s in spans if s.kind is SpanKind.PRODUCER] == []


async def test_a_fault_marks_the_client_span_as_error(stub: SoapStub) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    stub.answer("CheckCredit", Answer(500, SERVER_FAULT_11))
    async with running(client(stub), tracer_provider=provider) as context:
        with pytest.raises(SoapFault):
            await context.template().request("direct:x", {"customerId": "C1", "amount": 1})

    [outgoing] = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.CLIENT]
    assert outgoing.status.status_code is StatusCode.ERROR
    attributes = dict(outgoing.attributes or {})
    assert attributes["error.type"] == "SoapFault"
    assert attributes["http.response.status_code"] == 500


async def test_the_replys_soap_header_blocks_reach_the_route(stub: SoapStub) -> None:
    with_header = (
        f'<?xml version="1.0" encoding="utf-8"?><e:Envelope xmlns:e="{S11}">'
        '<e:Header><t:Trace xmlns:t="urn:erp:trace">erp-42</t:Trace></e:Header>'
        f"<e:Body>{CHECK_CREDIT_REPLY}</e:Body></e:Envelope>"
    ).encode()
    stub.answer("CheckCredit", Answer(200, with_header))
    exchange = await call(client(stub), {"customerId": "C000001", "amount": "10.50"})
    assert exchange.exception is None
    assert exchange.body == CREDIT
    [block] = exchange.properties[H.SOAP_HEADERS]
    assert (block.tag, block.text) == ("{urn:erp:trace}Trace", "erp-42")


async def test_request_header_blocks_must_be_elements(stub: SoapStub) -> None:
    from eip.errors import MarshalError

    exchange = Exchange({"customerId": "C000001", "amount": "10.50"})
    exchange.properties[H.SOAP_REQUEST_HEADERS] = ["<Tenant>acme</Tenant>"]
    async with running(client(stub)) as context:
        done = await context.template().send_exchange("direct:x", exchange)
    assert isinstance(done.exception, MarshalError)
    assert "lxml elements" in str(done.exception)
    assert stub.received == []
