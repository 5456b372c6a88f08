"""The SOAP example (routes/crm_soap.py): CRM upserts to the ERP's SOAP service, and the ERP's
credit-check callback served over SOAP, on a real server with zeep and eip as the clients."""

from __future__ import annotations

import asyncio
import decimal
import json
import logging
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import zeep
import zeep.exceptions
from pytest_asyncio import fixture as async_fixture
from zeep.wsse.username import UsernameToken

from eip import Context, RouteDefinitionError
from eip import headers as H
from eip.components.soap import SoapClientSpec
from eip.config import load_config
from eip.dsl.model import ToDef
from routes._support import dead_letters, inbox, read_dead_letter, rejected
from routes.crm_soap import (
    EXAMPLE,
    INBOX,
    UPSERT_ROUTE,
    WSDL,
    CrmCustomerSoapUpsert,
    DemoErpSoapService,
    ErpCreditCheck,
)

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Running:
    def __init__(self, context: Context, data: Path, port: int) -> None:
        self.context, self.data, self.port = context, data, port

    @property
    def credit_check(self) -> str:
        return f"http://127.0.0.1:{self.port}/services/erp/credit-check"


@async_fixture
async def running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Running]:
    port = _free_port()
    monkeypatch.setenv("EIP_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("EIP_DEMO", "1")
    monkeypatch.setenv("EIP_HTTP_PORT", str(port))  # {{server.http_port}} in eip.toml's URLs
    monkeypatch.delenv("EIP_DEMO__ERP__SOAP_URL", raising=False)
    context = Context(shutdown_timeout=5)
    context.use_config(load_config(ROOT / "eip.toml"))  # the demo's settings, as eip run
    context.component("http").configure(host="127.0.0.1", port=port)  # type: ignore[attr-defined]
    context.add_routes(CrmCustomerSoapUpsert(), ErpCreditCheck(), DemoErpSoapService())
    await context.start()
    try:
        yield Running(context, tmp_path, port)
    finally:
        await context.stop()


def _first(folder: Path) -> Path | None:
    """The first finished file: the file producer writes under a hidden temporary name and
    renames it, so hidden files are files still being written."""
    found = (
        sorted(p for p in folder.glob("*") if not p.name.startswith(".")) if folder.is_dir() else []
    )
    return found[0] if found else None


async def _wait_for(folder: Path, timeout: float = 15.0) -> Path:
    """The first file in ``folder``, once there is one (file consumers work in threads)."""
    for _ in range(int(timeout / 0.02)):
        found = await asyncio.to_thread(_first, folder)
        if found is not None:
            return found
        await asyncio.sleep(0.02)
    raise AssertionError(f"nothing arrived in {folder} within {timeout}s")


async def _wait_for_names(folder: Path, names: set[str], timeout: float = 15.0) -> None:
    """Wait until ``folder`` holds (at least) the finished files ``names``."""
    for _ in range(int(timeout / 0.02)):
        found = await asyncio.to_thread(_names, folder)
        if names <= found:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{folder} has {sorted(found)}, not {sorted(names)}, after {timeout}s")


def _names(folder: Path) -> set[str]:
    if not folder.is_dir():
        return set()
    return {p.name for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")}


def _erp_calls(running: Running) -> int:
    """How many UpsertCustomer requests the (demo) ERP's SOAP service took."""
    return running.context.routes["demo-erp-soap-customer"].exchanges_total


def _drop(inbox: Path, record: dict[str, Any]) -> None:
    inbox.mkdir(parents=True, exist_ok=True)
    (inbox / ".customer.tmp").write_text(json.dumps(record))
    (inbox / ".customer.tmp").rename(inbox / f"customer-{record['id']}.json")


@pytest.mark.parametrize("port", ["CustomerSoap11Port", "CustomerSoap12Port"])
async def test_the_credit_check_is_answered_from_crm_limits(running: Running, port: str) -> None:
    def calls() -> tuple[Any, Any, zeep.exceptions.Fault]:
        erp = UsernameToken("erp-callback", "demo-callback-password", use_digest=True)
        client = zeep.Client(f"{running.credit_check}?wsdl", wsse=erp)
        service = client.bind("CustomerService", port)
        fits = service.CheckCredit(customerId="C001001", amount=decimal.Decimal("4999.99"))
        over = service.CheckCredit(customerId="C001002", amount=decimal.Decimal("750.01"))
        with pytest.raises(zeep.exceptions.Fault) as caught:
            service.CheckCredit(customerId="1001", amount=decimal.Decimal("1.00"))
        return fits, over, caught.value

    fits, over, fault = await asyncio.to_thread(calls)
    assert (fits.approved, fits.limit) == (True, decimal.Decimal("5000.00"))
    assert (over.approved, over.reason) == (False, "over the credit limit")
    assert "CheckCredit/customerId" in fault.message  # rejected before the route ran


async def test_the_credit_check_requires_ws_security(running: Running) -> None:
    def call(wsse: UsernameToken | None) -> zeep.exceptions.Fault:
        client = zeep.Client(f"{running.credit_check}?wsdl", wsse=wsse)
        service = client.bind("CustomerService", "CustomerSoap11Port")
        with pytest.raises(zeep.exceptions.Fault) as caught:
            service.CheckCredit(customerId="C001001", amount=decimal.Decimal("1.00"))
        return caught.value

    missing = await asyncio.to_thread(call, None)
    wrong = await asyncio.to_thread(call, UsernameToken("erp-callback", "guess"))
    assert "InvalidSecurity" in str(missing.code)
    assert "FailedAuthentication" in str(wrong.code)


async def test_the_demo_samples_take_the_upsert_and_the_fault_paths(running: Running) -> None:
    data = running.data
    # The demo timer dropped both samples; the route took them (moved once done).
    await _wait_for_names(
        inbox(INBOX, data) / ".done", {"customer-1001.json", "customer-1002.json"}
    )
    # Written before the file counts as done: 1002 (a closed customer) is the fault path.
    assert await asyncio.to_thread(_names, rejected(EXAMPLE, data)) == {"customer-1002.json"}
    assert await asyncio.to_thread(_names, dead_letters(EXAMPLE, data)) == set()
    letter = read_dead_letter((rejected(EXAMPLE, data) / "customer-1002.json").read_bytes())
    assert (letter.body["fault"], letter.body["detail"]["code"]) == ("CustomerFault", "LOCKED")
    assert letter.failure[H.REDELIVERY_COUNT] == 0
    assert _erp_calls(running) == 2


async def test_a_customer_the_erp_refuses_is_rejected_with_the_fault(running: Running) -> None:
    record = {
        "id": 1003,
        "name": "Closed Ltd",
        "status": "closed",
        "customer_since": "2001-01-01",
        "addresses": [{"street": "3 Lane", "city": "York", "country": "gb"}],
    }
    data = running.data
    await asyncio.to_thread(_drop, inbox(INBOX, data), record)
    names = {"customer-1001.json", "customer-1002.json", "customer-1003.json"}
    await _wait_for_names(inbox(INBOX, data) / ".done", names)  # each one finished
    refused = rejected(EXAMPLE, data) / "customer-1003.json"
    letter = read_dead_letter(await asyncio.to_thread(refused.read_bytes))
    saved = letter.body
    assert letter.failure[H.EXCEPTION_TYPE] == "eip.errors.SoapFault"
    assert saved["fault"] == "CustomerFault"
    assert saved["detail"] == {"code": "LOCKED", "message": "customer is closed", "field": "status"}
    assert saved["request"]["customer"]["id"] == "C001003"
    # The ERP was called once per record: a typed fault is not redelivered (before the fix the
    # clause inherited the error handler's three redeliveries: 1 + 4 + 4 calls).
    assert _erp_calls(running) == 3


def test_the_example_wsdl_is_the_one_the_tests_use() -> None:
    tests_copy = Path(__file__).parent / "soap" / "wsdl" / "crm_erp.wsdl"
    assert Path(WSDL).read_bytes() == tests_copy.read_bytes()


async def test_an_erp_that_is_down_is_retried_then_dead_lettered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("EIP_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("EIP_DEMO", "1")
    # The demo's ERP address, overridden from the environment: nothing listens there.
    monkeypatch.setenv("EIP_DEMO__ERP__SOAP_URL", f"http://127.0.0.1:{_free_port()}/soap/x")
    context = Context(shutdown_timeout=5)
    context.use_config(load_config(ROOT / "eip.toml"))
    context.add_routes(CrmCustomerSoapUpsert())  # no demo ERP: nothing listens there
    record = {
        "id": 1004,
        "name": "Down Ltd",
        "status": "active",
        "customer_since": "2020-01-01",
        "addresses": [{"street": "4 Lane", "city": "Hull", "country": "gb"}],
    }
    with caplog.at_level(logging.WARNING, logger="eip.error_handler"):
        async with context:
            await asyncio.to_thread(_drop, inbox(INBOX, tmp_path), record)
            dead = await _wait_for(dead_letters(EXAMPLE, tmp_path))  # 0.5 + 1 + 2 s of backoff
    assert dead.name == "customer-1004.json"
    letter = read_dead_letter(dead.read_bytes())
    assert json.loads(letter.original_body())["id"] == 1004  # the record as it arrived
    assert letter.failure[H.REDELIVERY_COUNT] == 3
    assert letter.failure[H.EXCEPTION_TYPE] == "eip.errors.EndpointError"
    attempts = [r.getMessage() for r in caplog.records if "redelivery attempt" in r.getMessage()]
    assert len(attempts) == 3
    for message, expected in zip(
        attempts, ("1 of 3 in 0.50s", "2 of 3 in 1.00s", "3 of 3 in 2.00s"), strict=True
    ):
        assert f"redelivery attempt {expected}" in message
    assert all(
        m.startswith("route crm-customer-soap-upsert, step soap:legacy-erp") for m in attempts
    )
    assert not rejected(EXAMPLE, tmp_path).exists()


def test_without_the_demo_the_erp_address_and_credentials_must_be_configured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EIP_DEMO", "0")
    for name in ("EIP_ERP__SOAP_URL", "EIP_ERP__SOAP_USER", "ERP_SOAP_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    context = Context()
    context.add_routes(CrmCustomerSoapUpsert())
    with pytest.raises(RouteDefinitionError) as missing:
        context.validate()  # the routes compile as at start; nothing connects
    assert str(missing.value).startswith("routes/crm_soap.py:")
    assert (
        "route 'crm-customer-soap-upsert', step 3: endpoint soap:legacy-erp?"
        "address={{erp.soap_url}}&" in str(missing.value)
    )
    assert str(missing.value).endswith(
        "placeholder {{erp.soap_url}} has no value: set soap_url in the [erp] table of "
        "eip.toml, or $EIP_ERP__SOAP_URL"
    )
    monkeypatch.setenv("EIP_ERP__SOAP_URL", "https://erp.example.com/soap/customer")
    monkeypatch.setenv("EIP_ERP__SOAP_USER", "crm-prod")
    monkeypatch.setenv("ERP_SOAP_PASSWORD", "s3cret")
    context = Context()
    (model,) = [m for m in CrmCustomerSoapUpsert().build() if m.route_id == UPSERT_ROUTE]
    (erp,) = [s.endpoint for s in model.steps if isinstance(s, ToDef)]
    assert isinstance(erp, SoapClientSpec)
    assert (erp.address, erp.ws_username) == ("{{erp.soap_url}}", "{{erp.soap_user}}")
    _, spec = context.resolve_endpoint(erp)  # resolved at start, shown as written
    assert isinstance(spec, SoapClientSpec)
    assert (spec.address, spec.ws_username, spec.ws_password()) == (
        "https://erp.example.com/soap/customer",
        "crm-prod",
        "s3cret",
    )
