"""The CRM customer import example route, end to end on real files."""

from __future__ import annotations

import csv as stdlib_csv
import datetime as dt
from pathlib import Path

import msgspec
import pytest

from eip import Context
from eip.testing import ManualClock, advice
from routes.crm_customer_import import SAMPLE, CrmCustomerImport, DemoSeed
from routes.crm_models import ErpCustomer
from tests.crm_support import wait_for_file

INBOX = ("inbox", "crm-customer-export")


async def test_sample_export_is_imported(eip_context: Context, tmp_path: Path) -> None:
    export = tmp_path.joinpath(*INBOX)
    export.mkdir(parents=True)
    (export / "crm_customers.csv").write_bytes(SAMPLE.read_bytes())
    eip_context.add_routes(CrmCustomerImport(tmp_path))
    await eip_context.start()

    done = export / ".done" / "crm_customers.csv"
    await wait_for_file(done)
    erp_file = tmp_path / "outbox" / "erp-customers" / "erp-customers-crm_customers.json"
    customers = msgspec.json.decode(erp_file.read_bytes(), type=list[ErpCustomer])
    assert [c.customer_number for c in customers] == [
        "C-001001",
        "C-001002",
        "C-001004",
        "C-001007",
    ]
    ada = customers[0]
    assert ada.contact.email == "ada.lovelace@example.com"
    assert ada.country_code == "GB"
    assert ada.annual_revenue_cents == 12500050
    assert ada.tier == "enterprise"
    assert ada.customer_since == dt.date(2019, 3, 14)
    assert customers[2].country_code == "DE"  # default for an empty country

    # the sample's failure path: three rows rejected, with line and reason
    rejected_file = tmp_path / "rejected" / "customer-import" / "rejected-crm_customers.csv"
    rows = list(stdlib_csv.DictReader(rejected_file.read_text().splitlines()))
    by_id = {row["customer_id"]: row for row in rows}
    assert set(by_id) == {"1003", "1005", "1006"}
    assert by_id["1003"]["line"] == "4"
    assert "missing required field(s): email" in by_id["1003"]["reason"]
    assert "revenue_eur" in by_id["1005"]["reason"]
    assert "created" in by_id["1006"]["reason"]
    assert not (export / "crm_customers.csv").exists()


async def test_malformed_export_goes_to_error_dir(eip_context: Context, tmp_path: Path) -> None:
    export = tmp_path.joinpath(*INBOX)
    export.mkdir(parents=True)
    (export / "broken.csv").write_text('customer_id,email\n1,"unterminated\n')
    eip_context.add_routes(CrmCustomerImport(tmp_path))
    await eip_context.start()
    await wait_for_file(export / ".error" / "broken.csv")
    assert not (tmp_path / "outbox" / "erp-customers").exists() or not any(
        (tmp_path / "outbox" / "erp-customers").iterdir()
    )


async def test_import_with_mocked_outputs(eip_context: Context, tmp_path: Path) -> None:
    """The test kit way: feed the route directly and mock the file writers."""
    eip_context.add_routes(CrmCustomerImport(tmp_path))
    advice(eip_context, "crm-customer-import").replace_from("direct:test")
    advice(eip_context, "erp-customer-file").mock_endpoints("file:*", skip=True)
    advice(eip_context, "crm-rejected-rows").mock_endpoints("file:*", skip=True)
    await eip_context.start()
    csv_text = (
        b"customer_id,first_name,last_name,email,country,revenue_eur,segment,created,internal_notes\n"
        b"7,Ann,Lee,ann@x.org,at,10,SMB,2024-01-02,\n"
        b"7,Ann,Lee,ann2@x.org,at,10,SMB,2024-01-02,\n"
    )
    await eip_context.template().send("direct:test", csv_text, {"eip.file.name": "x.csv"})
    erp_mock = eip_context.mock(f"file:{tmp_path / 'outbox' / 'erp-customers'}")
    erp_mock.expect_count(1).expect_header("eip.file.name", "erp-customers-x.json")
    await erp_mock.assert_satisfied(timeout=1)
    (customer,) = msgspec.json.decode(erp_mock.received_bodies[0], type=list[ErpCustomer])
    assert customer.customer_number == "C-000007"
    assert eip_context.mock(f"file:{tmp_path / 'rejected' / 'customer-import'}").count == 0


async def test_demo_seed_copies_the_sample(
    eip_context: Context, manual_clock: ManualClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EIP_DATA_DIR", str(tmp_path))
    eip_context.add_routes(DemoSeed())
    await eip_context.start()
    await manual_clock.advance(0)
    seeded = tmp_path.joinpath(*INBOX, "crm_customers.csv")
    assert seeded.read_bytes() == SAMPLE.read_bytes()
