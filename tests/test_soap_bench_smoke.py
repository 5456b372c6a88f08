"""Smoke test of the SOAP benchmark: both clients call the benchmark server and get the same
reply data, and one short round of each comparison (producer, consumer) runs. Speed is never
asserted here. The consumer's load comes from wrk, or without it from the Python driver."""

from __future__ import annotations

import decimal

import httpx
import zeep.helpers

from benchmarks._http_support import start_server_process
from benchmarks.soap import (
    CHECK_CREDIT,
    CONSUMER_EIP,
    CONSUMER_LXML,
    CONSUMER_VALIDATING,
    EIP,
    ZEEP,
    consumer,
    eip_caller,
    producer,
    zeep_caller,
)

EXPECTED = {"approved": True, "limit": decimal.Decimal("5000.00"), "reason": "within limit"}


async def test_both_sides_get_the_same_reply_from_the_benchmark_server() -> None:
    with start_server_process("benchmarks._soap_apps:credit_app") as server:
        address = f"{server.url}/services/customer"
        by_eip, close_eip = await eip_caller(address)
        by_zeep, close_zeep = await zeep_caller(address)
        try:
            eip_reply = await by_eip()
            zeep_reply = zeep.helpers.serialize_object(await by_zeep(), dict)
        finally:
            await close_eip()
            await close_zeep()
        async with httpx.AsyncClient() as http:
            refused = await http.post(address, content=b"<not-soap/>")

    assert eip_reply == EXPECTED
    assert dict(zeep_reply) == EXPECTED
    assert refused.status_code == 500  # the server checks what it gets: a Client fault
    assert b"<faultcode>soapenv:Client</faultcode>" in refused.content


async def test_one_short_round_of_the_comparison() -> None:
    results = await producer(rounds=1, seconds=0.3)

    assert set(results) == {EIP, ZEEP}
    assert all(m.rates and m.median > 0 for m in results.values())


async def test_one_short_round_of_the_consumer_comparison() -> None:
    results = await consumer(rounds=1, seconds=0.3)

    assert set(results) == {CONSUMER_EIP, CONSUMER_LXML, CONSUMER_VALIDATING}
    assert all(m.rates and m.median > 0 for m in results.values())


async def test_the_validating_baseline_validates_and_answers_as_eip_does() -> None:
    with start_server_process("benchmarks._soap_apps:credit_validating_app") as server:
        address = f"{server.url}/services/customer"
        headers = {"content-type": "text/xml; charset=utf-8"}
        async with httpx.AsyncClient() as http:
            good = await http.post(address, content=CHECK_CREDIT, headers=headers)
            bad_amount = CHECK_CREDIT.replace(b"10.50", b"abc")
            invalid = await http.post(address, content=bad_amount, headers=headers)

    assert good.status_code == 200
    assert b"<c:approved>true</c:approved><c:limit>1000.00</c:limit>" in good.content
    assert invalid.status_code == 500  # the XSD refuses an amount of "abc": a Client fault
    assert b"<faultcode>soapenv:Client</faultcode>" in invalid.content
