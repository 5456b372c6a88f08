"""eip's SOAP producer against eip's SOAP consumer, on a real server on 127.0.0.1: both SOAP
versions, typed faults both ways, schema-invalid requests, one-way calls, one trace."""

from __future__ import annotations

import datetime
import decimal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from pytest_asyncio import fixture as async_fixture

from eip import Context, Exchange, RouteBuilder, otherwise, when
from eip import headers as H
from eip.components.soap import soap_client, soap_server
from eip.errors import SoapFault

WSDL = str(Path(__file__).parent / "wsdl" / "crm_erp.wsdl")
PORTS = {"1.1": "CustomerSoap11Port", "1.2": "CustomerSoap12Port"}


class Address(msgspec.Struct):
    street: str
    city: str
    country: str


class Addresses(msgspec.Struct):
    address: list[Address]


class Customer(msgspec.Struct):
    id: str
    name: str
    status: str
    customerSince: datetime.date
    addresses: Addresses


class Upsert(msgspec.Struct):
    customer: Customer
    correlationId: str | None = None


class Upserted(msgspec.Struct):
    customerId: str
    created: bool
    version: int


class ErpService(RouteBuilder):
    def __init__(self, seen: list[tuple[str, Any]]) -> None:
        super().__init__()
        self.seen = seen
        self.blocks: list[Any] = []

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
                raise KeyError("internal table missing")
            exchange.body = {"customerId": customer["id"], "created": True, "version": 7}

        (
            self.from_(soap_server("/services/customer", wsdl=WSDL))
            .route_id("erp")
            .process(lambda ex: self.seen.append((ex.headers[H.SOAP_VERSION], ex.body)))
            .process(lambda ex: self.blocks.append(ex.properties.get(H.SOAP_HEADERS)))
            .choice(
                when(lambda ex: ex.headers[H.SOAP_OPERATION] == "UpsertCustomer").process(upsert),
                when(lambda ex: ex.headers[H.SOAP_OPERATION] == "CheckCredit").set_body(
                    lambda ex: {"approved": True, "limit": decimal.Decimal("99.00")}
                ),
                otherwise().set_body(None),
            )
        )


class Client(RouteBuilder):
    def __init__(self, address: str) -> None:
        super().__init__()
        self.address = address

    def configure(self) -> None:
        for version, port in PORTS.items():
            tag = version.replace(".", "")
            self.from_(f"direct:upsert{tag}").route_id(f"upsert{tag}").to(
                soap_client(
                    "erp",
                    wsdl=WSDL,
                    wsdl_port=port,
                    operation="UpsertCustomer",
                    address=self.address,
                    reply_type=Upserted,
                    timeout=5.0,
                )
            )
            self.from_(f"direct:call{tag}").route_id(f"call{tag}").to(
                soap_client("erp", wsdl=WSDL, wsdl_port=port, address=self.address)
            )


CUSTOMER = Customer(
    id="C000042",
    name="Ada",
    status="ACTIVE",
    customerSince=datetime.date(2020, 1, 31),
    addresses=Addresses([Address("1 Main", "London", "GB")]),
)


class Pair:
    def __init__(
        self, server: Context, client: Context, seen: list[Any], service: ErpService
    ) -> None:
        self.server, self.client, self.seen, self.service = server, client, seen, service

    def server_blocks(self) -> list[Any]:
        return [b for b in self.service.blocks if b is not None]

    async def request(
        self, endpoint: str, body: Any, headers: dict[str, Any] | None = None
    ) -> Exchange:
        return await self.client.template().request_exchange(endpoint, body, headers)


@async_fixture
async def pair() -> AsyncIterator[Any]:
    started: list[Context] = []

    async def start(provider: TracerProvider | None = None) -> Pair:
        seen: list[Any] = []
        service = ErpService(seen)
        server = Context(shutdown_timeout=5, tracer_provider=provider)
        server.component("http").configure(host="127.0.0.1", port=0)  # type: ignore[attr-defined]
        server.add_routes(service)
        await server.start()
        started.append(server)
        url = f"{server.component('http').server.base_url}/services/customer"  # type: ignore[attr-defined]
        client = Context(shutdown_timeout=5, tracer_provider=provider)
        client.add_routes(Client(url))
        await client.start()
        started.append(client)
        return Pair(server, client, seen, service)

    try:
        yield start
    finally:
        for context in reversed(started):
            await context.stop()


@pytest.mark.parametrize("version", ["1.1", "1.2"])
async def test_a_struct_goes_in_and_a_struct_comes_back(pair: Any, version: str) -> None:
    running: Pair = await pair()
    tag = version.replace(".", "")
    exchange = await running.request(f"direct:upsert{tag}", Upsert(CUSTOMER, "corr-9"))
    assert exchange.exception is None, exchange.exception
    assert exchange.body == Upserted("C000042", True, 7)
    served_version, data = running.seen[0]
    assert served_version == version
    assert data["customer"]["customerSince"] == datetime.date(2020, 1, 31)
    assert data["correlationId"] == "corr-9"


@pytest.mark.parametrize("version", ["1.1", "1.2"])
async def test_a_typed_fault_comes_back_as_a_typed_soap_fault(pair: Any, version: str) -> None:
    running: Pair = await pair()
    tag = version.replace(".", "")
    locked = msgspec.structs.replace(CUSTOMER, status="SUSPENDED")
    exchange = await running.request(f"direct:upsert{tag}", Upsert(locked))
    fault = exchange.exception
    assert isinstance(fault, SoapFault)
    assert fault.kind == "client"
    assert fault.reason == "customer is locked"
    assert fault.fault == "CustomerFault"
    assert fault.detail == {"code": "LOCKED", "message": "locked by finance", "field": "status"}
    if version == "1.1":
        assert fault.code == "{http://schemas.xmlsoap.org/soap/envelope/}Client"
        assert fault.http_status == 500
    else:
        assert fault.code == "{http://www.w3.org/2003/05/soap-envelope}Sender"
        assert fault.subcodes == ("{urn:erp:faults}Locked",)
        assert fault.http_status == 400


async def test_a_server_failure_comes_back_as_a_server_fault_without_internals(
    pair: Any,
) -> None:
    running: Pair = await pair()
    closed = msgspec.structs.replace(CUSTOMER, status="CLOSED")
    exchange = await running.request("direct:upsert12", Upsert(closed))
    fault = exchange.exception
    assert isinstance(fault, SoapFault)
    assert fault.kind == "server"
    assert fault.code == "{http://www.w3.org/2003/05/soap-envelope}Receiver"
    assert "internal table" not in fault.reason


async def test_schema_invalid_requests_are_refused_naming_the_element(pair: Any) -> None:
    running: Pair = await pair()
    exchange = await running.request(
        "direct:call11",
        {"customerId": "not-an-id", "amount": decimal.Decimal("1.00")},
        {H.SOAP_REQUEST_OPERATION: "CheckCredit"},
    )
    fault = exchange.exception
    assert isinstance(fault, SoapFault)
    assert fault.kind == "client"
    assert "CheckCredit/customerId" in fault.reason
    assert running.seen == []  # the service's route never ran


async def test_operations_per_message_and_one_way_calls(pair: Any) -> None:
    running: Pair = await pair()
    credit = await running.request(
        "direct:call12",
        {"customerId": "C000001", "amount": decimal.Decimal("5.00")},
        {H.SOAP_REQUEST_OPERATION: "CheckCredit"},
    )
    assert credit.body == {"approved": True, "limit": decimal.Decimal("99.00"), "reason": None}
    payment = {
        "customerId": "C000001",
        "payment": {
            "paymentId": "P-7",
            "paidOn": datetime.date(2024, 5, 2),
            "amount": decimal.Decimal("5.00"),
            "currency": "EUR",
            "method": "CARD",
        },
    }
    notified = await running.request(
        "direct:call11", payment, {H.SOAP_REQUEST_OPERATION: "NotifyPayment"}
    )
    assert notified.exception is None
    assert notified.body is None
    assert running.seen[-1][1]["payment"]["paymentId"] == "P-7"


async def test_one_trace_spans_the_producer_and_the_consumer(pair: Any) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    running: Pair = await pair(provider)
    exchange = await running.request("direct:upsert11", Upsert(CUSTOMER))
    assert exchange.exception is None
    spans = exporter.get_finished_spans()
    client = next(s for s in spans if s.kind is SpanKind.CLIENT)
    server = next(s for s in spans if s.kind is SpanKind.SERVER)
    assert len({s.context.trace_id for s in spans}) == 1  # one trace, both contexts
    assert server.parent is not None
    assert server.parent.span_id == client.context.span_id  # propagated in traceparent
    assert client.attributes is not None
    assert client.attributes["rpc.system"] == "soap"
    assert client.attributes["rpc.method"] == "UpsertCustomer"
    assert server.attributes is not None
    assert server.attributes["http.response.status_code"] == 200
    routes = {s.name for s in spans if s.kind in (SpanKind.INTERNAL, SpanKind.CONSUMER)}
    assert {"upsert11", "erp"} <= routes


async def test_the_producer_loads_the_wsdl_from_the_served_service(pair: Any) -> None:
    """A WSDL URL, not a file: the producer reads the service's own ``?wsdl`` (and its
    ``?xsd=`` import) in a worker thread at start, and takes its rewritten address."""
    running: Pair = await pair()
    url = f"{running.server.component('http').server.base_url}/services/customer"  # type: ignore[attr-defined]

    class ByUrl(RouteBuilder):
        def configure(self) -> None:
            self.from_("direct:by-url").route_id("by-url").to(
                soap_client(
                    "erp",
                    wsdl=f"{url}?wsdl",
                    wsdl_port="CustomerSoap12Port",
                    operation="CheckCredit",
                )
            )

    client = Context(shutdown_timeout=5)
    client.add_routes(ByUrl())
    async with client:
        exchange = await client.template().request_exchange(
            "direct:by-url", {"customerId": "C000001", "amount": decimal.Decimal("1.00")}
        )
    assert exchange.exception is None, exchange.exception
    assert exchange.body["approved"] is True
    assert running.seen[-1][0] == "1.2"


async def test_soap_header_blocks_travel_with_the_message(pair: Any) -> None:
    from lxml import etree

    running: Pair = await pair()
    tenant = etree.Element("{urn:crm:context}Tenant")
    tenant.text = "acme"
    exchange = Exchange(
        {"customerId": "C000001", "amount": decimal.Decimal("1.00")},
        {H.SOAP_REQUEST_OPERATION: "CheckCredit"},
    )
    exchange.properties[H.SOAP_REQUEST_HEADERS] = [tenant]
    done = await running.client.template().send_exchange("direct:call12", exchange)
    assert done.exception is None, done.exception
    blocks = running.server_blocks()
    [[received]] = blocks
    assert (received.tag, received.text) == ("{urn:crm:context}Tenant", "acme")
