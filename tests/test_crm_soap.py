"""The SOAP example (routes/crm_soap.py): CRM upserts to the ERP's SOAP service, and the ERP's
credit-check callback served over SOAP, on a real server with zeep and eip as the clients."""

from __future__ import annotations

import asyncio
import decimal
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import zeep
import zeep.exceptions
from pytest_asyncio import fixture as async_fixture

from eip import Context
from routes.crm_soap import WSDL, CrmCustomerSoapUpsert, DemoErpSoapService, ErpCreditCheck


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
    monkeypatch.setenv("EIP_HTTP_PORT", str(port))
    monkeypatch.delenv("ERP_SOAP_URL", raising=False)
    context = Context(shutdown_timeout=5)
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


def _drop(inbox: Path, record: dict[str, Any]) -> None:
    inbox.mkdir(parents=True, exist_ok=True)
    (inbox / ".customer.tmp").write_text(json.dumps(record))
    (inbox / ".customer.tmp").rename(inbox / f"customer-{record['id']}.json")


@pytest.mark.parametrize("port", ["CustomerSoap11Port", "CustomerSoap12Port"])
async def test_the_credit_check_is_answered_from_crm_limits(running: Running, port: str) -> None:
    def calls() -> tuple[Any, Any, zeep.exceptions.Fault]:
        client = zeep.Client(f"{running.credit_check}?wsdl")
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


async def test_the_sample_customer_is_upserted_in_the_erp_over_soap(running: Running) -> None:
    done = running.data / "crm" / "soap-upserts" / ".done"
    taken = await _wait_for(done)  # the demo timer dropped customer-1001.json; the route took it
    assert taken.name == "customer-1001.json"
    for failed in ("soap-rejected", "soap-dead"):  # written before the file counts as done
        assert await asyncio.to_thread(_first, running.data / "crm" / failed) is None


async def test_a_customer_the_erp_refuses_is_rejected_with_the_fault(running: Running) -> None:
    record = {
        "id": 1003,
        "name": "Closed Ltd",
        "status": "closed",
        "customer_since": "2001-01-01",
        "addresses": [{"street": "3 Lane", "city": "York", "country": "gb"}],
    }
    await asyncio.to_thread(_drop, running.data / "crm" / "soap-upserts", record)
    rejected = await _wait_for(running.data / "crm" / "soap-rejected")
    saved = json.loads(await asyncio.to_thread(rejected.read_text))
    assert saved["fault"] == "CustomerFault"
    assert saved["detail"] == {"code": "LOCKED", "message": "customer is closed", "field": "status"}
    assert saved["request"]["customer"]["id"] == "C001003"


def test_the_example_wsdl_is_the_one_the_tests_use() -> None:
    tests_copy = Path(__file__).parent / "soap" / "wsdl" / "crm_erp.wsdl"
    assert Path(WSDL).read_bytes() == tests_copy.read_bytes()
