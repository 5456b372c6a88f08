"""SOAP producer and consumer: eip against zeep's AsyncClient over plain httpx, and against a
hand-written lxml service, same run.

**Producer** (``soap-producer-vs-zeep``): 10 concurrent callers in this process call
``CheckCredit`` (``tests/soap/wsdl/crm_erp.wsdl``, SOAP 1.1 port) on a hand-written raw ASGI
SOAP endpoint under uvicorn (httptools, uvloop) in its own process
(``benchmarks._soap_apps:credit_app``: hardened lxml parse of each request, canned reply):

- **eip**: a route ``from_("direct:call").to(soap_client("erp", wsdl=..., wsdl_port=
  "CustomerSoap11Port", operation="CheckCredit", address=...))``, each call
  ``route.dispatch(Exchange({"customerId": ..., "amount": ...}, pattern=IN_OUT))``, checking
  the reply's ``approved``;
- **baseline**: ``zeep.AsyncClient`` on ``zeep.transports.AsyncTransport`` with a plain
  ``httpx.AsyncClient`` (built in a worker thread: its constructor loads the WSDL and blocks),
  bound to the same address (an ``AsyncServiceProxy`` on the binding); each call
  ``await service.CheckCredit(customerId=..., amount=...)``, checking ``approved``.

**Consumer** (``soap-consumer-vs-lxml-validating``, target >= 0.8): wrk (50 connections)
POSTs a ``CheckCredit`` envelope to ``soap:/services/customer`` served by eip (``benchmarks/
_soap_eip_server.py``: request and reply validated against the WSDL's XSD, read and written
through its types) and to two hand-written lxml services making the same decision, each under
uvicorn in its own process:

- ``benchmarks._soap_apps:credit_validating_app`` (the comparison): hardened parse, the
  request validated against the same XSD with lxml, two fields read, the reply written with
  lxml;
- ``benchmarks._soap_apps:credit_service_app`` (``soap-consumer-vs-lxml``, the earlier
  comparison, still printed): the same without the validation.

Rounds alternate the variants (after an unrecorded warm-up); figures are medians of the rounds.
:func:`producer` returns the measurements, so other comparisons (the SOAP consumer) can share
this module and its server.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from benchmarks._http_support import (
    drive_client,
    drive_wrk,
    load_driver,
    start_module_process,
    start_server_process,
)
from benchmarks._report import Measurement, result_line, table
from eip import Context, Exchange, ExchangePattern, RouteBuilder
from eip.components.soap import soap_client

__all__ = ["EIP", "WSDL", "ZEEP", "eip_caller", "producer", "run", "zeep_caller"]

WSDL = str(Path(__file__).resolve().parent.parent / "tests" / "soap" / "wsdl" / "crm_erp.wsdl")
BINDING = "{http://erp.example.com/services/customer}CustomerSoap11Binding"
REQUEST = {"customerId": "C000001", "amount": "10.50"}
CONCURRENCY = 10
EIP = "eip soap producer"
ZEEP = "zeep AsyncClient + httpx"

Call = Callable[[], Awaitable[Any]]
Close = Callable[[], Awaitable[None]]


class _Call(RouteBuilder):
    def __init__(self, address: str) -> None:
        super().__init__()
        self.address = address

    def configure(self) -> None:
        target = soap_client(
            "erp",
            wsdl=WSDL,
            wsdl_port="CustomerSoap11Port",
            operation="CheckCredit",
            address=self.address,
        )
        self.from_("direct:call").route_id("call").to(target)


async def eip_caller(address: str) -> tuple[Call, Close]:
    """eip's side: ``call()`` returns the reply (plain data) after checking it."""
    context = Context(shutdown_timeout=5)
    context.add_routes(_Call(address))
    await context.start()
    dispatch = context.routes["call"].dispatch

    async def call() -> Any:
        exchange = Exchange(dict(REQUEST), pattern=ExchangePattern.IN_OUT)
        pending = dispatch(exchange)
        if pending is not None:
            await pending
        if exchange.exception is not None:
            raise exchange.exception
        if exchange.body["approved"] is not True:
            raise RuntimeError(f"eip call: unexpected reply {exchange.body!r}")
        return exchange.body

    return call, context.stop


def _zeep(module: str) -> Any:
    """A zeep module, reached untyped (zeep has no type hints)."""
    return importlib.import_module(module)


def _zeep_client(transport: Any) -> Any:
    return _zeep("zeep").AsyncClient(WSDL, transport=transport)


async def zeep_caller(address: str) -> tuple[Call, Close]:
    """The baseline: ``call()`` returns zeep's result object after checking it."""
    http = httpx.AsyncClient(timeout=30)
    transport = _zeep("zeep.transports").AsyncTransport(client=http)
    client = await asyncio.to_thread(_zeep_client, transport)
    # AsyncClient.create_service returns a sync proxy (a zeep bug: its calls hand the
    # reply parser an unawaited coroutine); bind the async proxy to the address instead.
    service = _zeep("zeep.proxy").AsyncServiceProxy(
        client, client.wsdl.bindings[BINDING], address=address
    )
    check_credit = service.CheckCredit

    async def call() -> Any:
        result = await check_credit(**REQUEST)
        if result.approved is not True:
            raise RuntimeError(f"zeep call: unexpected reply {result!r}")
        return result

    async def close() -> None:
        await http.aclose()
        transport.wsdl_client.close()

    return call, close


async def producer(rounds: int, seconds: float) -> dict[str, Measurement]:
    """eip's producer and zeep's client, ``rounds`` interleaved rounds of ``seconds`` each at
    :data:`CONCURRENCY` calls in flight, against one server process."""
    with start_server_process("benchmarks._soap_apps:credit_app") as server:
        address = f"{server.url}/services/customer"
        callers = {EIP: await eip_caller(address), ZEEP: await zeep_caller(address)}
        results = {name: Measurement(name) for name in callers}
        try:
            for call, _ in callers.values():  # warm-up: connections open, caches filled
                await drive_client(call, concurrency=CONCURRENCY, seconds=0.5)
            for _ in range(rounds):
                for name, (call, _) in callers.items():
                    rate = await drive_client(call, concurrency=CONCURRENCY, seconds=seconds)
                    results[name].rates.append(rate)
        finally:
            for _, close in callers.values():
                await close()
    return results


CONSUMER_EIP = "eip soap consumer"
CONSUMER_LXML = "hand-written lxml service"
CONSUMER_VALIDATING = "hand-written lxml service, validating"
CHECK_CREDIT = (
    b'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
    b'xmlns:c="http://erp.example.com/schemas/customer"><soapenv:Body><c:CheckCredit>'
    b"<c:customerId>C000001</c:customerId><c:amount>10.50</c:amount><c:currency>EUR</c:currency>"
    b"</c:CheckCredit></soapenv:Body></soapenv:Envelope>"
)
SOAP11 = "text/xml; charset=utf-8"


async def consumer(rounds: int, seconds: float) -> dict[str, Measurement]:
    """eip's SOAP consumer against the two hand-written lxml services (validating and not),
    each in its own uvicorn process, driven by wrk (50 connections) in interleaved rounds."""
    results = {
        name: Measurement(name) for name in (CONSUMER_VALIDATING, CONSUMER_LXML, CONSUMER_EIP)
    }
    with (
        start_server_process("benchmarks._soap_apps:credit_validating_app") as validating,
        start_server_process("benchmarks._soap_apps:credit_service_app") as raw,
        start_module_process(
            "benchmarks._soap_eip_server", "/services/customer", CHECK_CREDIT, SOAP11
        ) as eip,
    ):
        urls = {
            CONSUMER_VALIDATING: f"{validating.url}/services/customer",
            CONSUMER_LXML: f"{raw.url}/services/customer",
            CONSUMER_EIP: f"{eip.url}/services/customer",
        }
        for url in urls.values():  # warm-up, not recorded
            await drive_wrk(url, CHECK_CREDIT, connections=50, seconds=1, content_type=SOAP11)
        for _ in range(rounds):
            for name, url in urls.items():
                load = await drive_wrk(
                    url, CHECK_CREDIT, connections=50, seconds=seconds, content_type=SOAP11
                )
                results[name].rates.append(load.requests_per_s)
    return results


def _rows(results: dict[str, Measurement], baseline: str) -> list[list[str]]:
    base = results[baseline].median
    return [
        [
            name,
            f"{m.median:,.0f}",
            f"{m.low:,.0f}-{m.high:,.0f}",
            f"{m.us_per_unit:,.0f}",
            f"{m.median / base:.2f}",
        ]
        for name, m in results.items()
    ]


async def main(quick: bool) -> None:
    rounds, seconds = (2, 2.0) if quick else (5, 5.0)
    called = await producer(rounds, seconds)
    print(f"SOAP producer: CheckCredit, {CONCURRENCY} concurrent calls, {rounds} rounds")
    headers = ["variant", "calls/s (median)", "range", "µs/call", "vs baseline"]
    print(table(headers, _rows(called, ZEEP)))
    print()
    driver = load_driver()
    print(driver.note)
    served = await consumer(rounds, seconds)
    print(f"SOAP consumer: CheckCredit, {driver.tool} -c50, {rounds} rounds")
    headers = ["variant", "req/s (median)", "range", "µs/request", "vs baseline"]
    print(table(headers, _rows(served, CONSUMER_VALIDATING)))
    print()
    print(result_line("soap-producer-vs-zeep", called[EIP].median, called[ZEEP].median))
    eip_served = served[CONSUMER_EIP].median
    print(
        result_line(
            "soap-consumer-vs-lxml-validating", eip_served, served[CONSUMER_VALIDATING].median
        )
    )
    print(result_line("soap-consumer-vs-lxml", eip_served, served[CONSUMER_LXML].median))


def run(quick: bool) -> None:
    import uvloop

    uvloop.run(main(quick))
