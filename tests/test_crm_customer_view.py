"""The customer view example route: CRM JSON + ERP XML merged by an aggregator on SQLite."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import msgspec
import pytest

from eip import Context
from eip import headers as H
from eip.testing import ManualClock
from routes.crm_customer_view import (
    COMPLETION_TIMEOUT,
    SAMPLE_DIR,
    CrmProfile,
    CustomerView,
    CustomerViewBuilder,
    CustomerViewDemoSeed,
    ErpAccount,
)
from tests.crm_support import assert_failure, poll_until, read_letter, wait_for_file

LOVELACE_CRM = CrmProfile(
    name="Lovelace Analytics Ltd",
    email="accounts@lovelace-analytics.co.uk",
    segment="enterprise",
    phone="+44 20 7946 0018",
    country_code="GB",
    account_manager="j.meyer",
    updated_at=dt.datetime(2024, 5, 1, 16, 20, tzinfo=dt.UTC),
)
LOVELACE_ERP = ErpAccount(
    account_number="D-40017",
    legal_name="LOVELACE ANALYTICS LTD",
    credit_limit_cents=5_000_000,
    currency="GBP",
    payment_terms="NET30",
    blocked=False,
    dunning_level=0,
    vat_id="GB123456789",
)


def inbox(data: Path, side: str) -> Path:
    return data / "inbox" / ("crm-customer-json" if side == "crm" else "erp-customer-xml")


def drop_sample(data: Path, side: str, name: str, content: bytes | None = None) -> Path:
    """Drop a sample (or ``content`` under its name) into the side's inbox, atomically."""
    directory = inbox(data, side)
    directory.mkdir(parents=True, exist_ok=True)
    temp = directory / f".{name}.tmp"
    temp.write_bytes(content if content is not None else (SAMPLE_DIR / side / name).read_bytes())
    temp.replace(directory / name)
    return directory / ".done" / name


def view_path(data: Path, customer_id: str) -> Path:
    return data / "outbox" / "customer-views" / f"customer-{customer_id}.json"


def rejection(data: Path, name: str) -> Path:
    return data / "rejected" / "customer-view" / f"{name}.json"


def read_view(data: Path, customer_id: str) -> CustomerView:
    return msgspec.json.decode(view_path(data, customer_id).read_bytes(), type=CustomerView)


def check_inputs(view: CustomerView, **names: str) -> None:
    assert set(view.inputs) == set(names)
    for side, name in names.items():
        assert view.inputs[side].startswith(f"{side}:{name}:")


@pytest.mark.parametrize("first", ["crm", "erp"])
async def test_both_sides_merge_in_either_order(
    eip_context: Context, manual_clock: ManualClock, tmp_path: Path, first: str
) -> None:
    second = "erp" if first == "crm" else "crm"
    names = {"crm": "customer-1001.json", "erp": "customer-1001.xml"}
    done = drop_sample(tmp_path, first, names[first])
    eip_context.add_routes(CustomerViewBuilder(tmp_path))
    await eip_context.start()
    await wait_for_file(done)
    assert not view_path(tmp_path, "1001").exists()  # waits for the other side

    done = drop_sample(tmp_path, second, names[second])
    await poll_until(manual_clock, view_path(tmp_path, "1001").exists)
    view = read_view(tmp_path, "1001")
    assert (view.customer_id, view.crm, view.erp) == ("1001", LOVELACE_CRM, LOVELACE_ERP)
    assert (view.missing, view.carried_over) == ([], [])
    check_inputs(view, crm="customer-1001.json", erp="customer-1001.xml")


async def test_samples_complete_now_or_after_the_timeout(
    eip_context: Context, manual_clock: ManualClock, tmp_path: Path
) -> None:
    done = [
        drop_sample(tmp_path, side, sample.name)
        for side in ("crm", "erp")
        for sample in sorted((SAMPLE_DIR / side).iterdir())
    ]
    eip_context.add_routes(CustomerViewBuilder(tmp_path))
    await eip_context.start()
    for path in done:
        await wait_for_file(path)
    await wait_for_file(view_path(tmp_path, "1002"))
    await wait_for_file(view_path(tmp_path, "1001"))
    hopper = read_view(tmp_path, "1002")
    assert hopper.erp is not None
    assert (hopper.erp.credit_limit_cents, hopper.erp.blocked, hopper.erp.dunning_level) == (
        1_250_050,
        True,
        2,
    )
    assert hopper.erp.vat_id == "DE811234567"
    assert sorted(p.name for p in view_path(tmp_path, "1001").parent.iterdir()) == [
        "customer-1001.json",
        "customer-1002.json",
    ]

    await manual_clock.advance(COMPLETION_TIMEOUT)
    await wait_for_file(view_path(tmp_path, "1003"))
    await wait_for_file(view_path(tmp_path, "1004"))
    turing = read_view(tmp_path, "1003")
    assert (turing.missing, turing.erp) == (["erp"], None)
    assert turing.crm == CrmProfile(
        name="Turing Robotics SAS",
        email="contact@turing-robotics.fr",
        segment="mid-market",
        phone=None,
        country_code="FR",
        account_manager=None,
        updated_at=dt.datetime(2024, 5, 2, 8, 30, 45, tzinfo=dt.UTC),
    )
    babbage = read_view(tmp_path, "1004")
    assert (babbage.missing, babbage.crm) == (["crm"], None)
    assert babbage.erp == ErpAccount(
        account_number="D-40388",
        legal_name="Babbage Instruments BV",
        credit_limit_cents=800_000,
        currency="EUR",
        payment_terms="NET30",
        blocked=False,
        dunning_level=0,
        vat_id=None,
    )


async def test_one_side_completes_after_the_timeout(
    eip_context: Context, manual_clock: ManualClock, tmp_path: Path
) -> None:
    done = drop_sample(tmp_path, "crm", "customer-1001.json")
    eip_context.add_routes(CustomerViewBuilder(tmp_path))
    await eip_context.start()
    await wait_for_file(done)
    await manual_clock.advance(COMPLETION_TIMEOUT - 1)
    await asyncio.sleep(0.05)
    assert not view_path(tmp_path, "1001").exists()

    await manual_clock.advance(1)
    await wait_for_file(view_path(tmp_path, "1001"))
    view = read_view(tmp_path, "1001")
    assert (view.crm, view.erp, view.missing, view.carried_over) == (
        LOVELACE_CRM,
        None,
        ["erp"],
        [],
    )
    check_inputs(view, crm="customer-1001.json")


async def test_a_later_one_sided_update_keeps_the_other_side(
    eip_context: Context, manual_clock: ManualClock, tmp_path: Path
) -> None:
    drop_sample(tmp_path, "crm", "customer-1001.json")
    drop_sample(tmp_path, "erp", "customer-1001.xml")
    eip_context.add_routes(CustomerViewBuilder(tmp_path))
    await eip_context.start()
    await wait_for_file(view_path(tmp_path, "1001"))
    view_path(tmp_path, "1001").rename(tmp_path / "first-view.json")

    # The CRM sends an update under the same file name; the ERP sends nothing.
    update = msgspec.json.decode((SAMPLE_DIR / "crm" / "customer-1001.json").read_bytes())
    update["segment"] = "Strategic"
    drop_sample(tmp_path, "crm", "customer-1001.json", msgspec.json.encode(update))
    await poll_until(
        manual_clock, lambda: not (inbox(tmp_path, "crm") / "customer-1001.json").exists()
    )
    assert not view_path(tmp_path, "1001").exists()  # a new group: not a re-delivery

    (tmp_path / "first-view.json").rename(view_path(tmp_path, "1001"))
    await manual_clock.advance(COMPLETION_TIMEOUT)
    for _ in range(500):
        view = read_view(tmp_path, "1001")
        if view.carried_over:
            break
        await asyncio.sleep(0.01)
    assert view.crm is not None
    assert view.crm.segment == "strategic"
    assert (view.erp, view.missing, view.carried_over) == (LOVELACE_ERP, [], ["erp"])
    check_inputs(view, crm="customer-1001.json", erp="customer-1001.xml")


async def test_open_groups_survive_a_restart(
    eip_context: Context, manual_clock: ManualClock, tmp_path: Path
) -> None:
    done = drop_sample(tmp_path, "crm", "customer-1001.json")
    eip_context.add_routes(CustomerViewBuilder(tmp_path))
    await eip_context.start()
    await wait_for_file(done)
    await eip_context.stop()
    assert not view_path(tmp_path, "1001").exists()  # not flushed half-done on shutdown

    done = drop_sample(tmp_path, "erp", "customer-1001.xml")
    restarted = Context(clock=manual_clock, shutdown_timeout=5.0)
    restarted.add_routes(CustomerViewBuilder(tmp_path))
    try:
        await restarted.start()
        await wait_for_file(view_path(tmp_path, "1001"))
    finally:
        await restarted.stop()
    view = read_view(tmp_path, "1001")
    assert (view.crm, view.erp, view.missing) == (LOVELACE_CRM, LOVELACE_ERP, [])


async def test_the_failure_sample_is_rejected_with_the_failure_headers(
    eip_context: Context, tmp_path: Path
) -> None:
    """The demo's failure path: customer-1005.xml has a credit limit in German notation."""
    sample = (SAMPLE_DIR / "erp" / "customer-1005.xml").read_bytes()
    done = drop_sample(tmp_path, "erp", "customer-1005.xml")
    eip_context.add_routes(CustomerViewBuilder(tmp_path))
    await eip_context.start()
    await wait_for_file(done)  # handled: a rejection completes the file
    letter = read_letter(rejection(tmp_path, "customer-1005.xml"))
    assert_failure(letter, "MappingError", "erp-customer-xml", "cannot convert '12.500,00'")
    assert letter.failure[H.FAILURE_ENDPOINT] == "map_fields(FieldMapper)"
    assert letter.headers[H.FILE_NAME] == "customer-1005.xml"
    assert (letter.body_encoding, letter.original_body()) == ("text", sample)  # as it came
    assert not view_path(tmp_path, "1005").parent.exists()


async def test_broken_documents_are_rejected_not_aggregated(
    eip_context: Context, tmp_path: Path
) -> None:
    broken_xml = b'<customer id="1009"><accountNumber>D-1</customer>'
    drop_sample(tmp_path, "erp", "bad.xml", broken_xml)
    drop_sample(tmp_path, "crm", "bad.json", b'{"id": "1009", "name": "No e-mail"}')
    eip_context.add_routes(CustomerViewBuilder(tmp_path))
    await eip_context.start()
    await wait_for_file(inbox(tmp_path, "erp") / ".done" / "bad.xml")
    await wait_for_file(inbox(tmp_path, "crm") / ".done" / "bad.json")
    xml_letter = read_letter(rejection(tmp_path, "bad.xml"))
    assert_failure(xml_letter, "UnmarshalError", "erp-customer-xml", "invalid xml input")
    assert xml_letter.original_body() == broken_xml
    json_letter = read_letter(rejection(tmp_path, "bad.json"))
    assert_failure(json_letter, "UnmarshalError", "crm-customer-json", "field 'email'")
    assert not view_path(tmp_path, "1009").parent.exists()


async def test_a_rejection_that_cannot_be_written_fails_the_file(
    eip_context: Context, tmp_path: Path
) -> None:
    (tmp_path / "rejected").mkdir()
    (tmp_path / "rejected" / "customer-view").write_text("a file where the directory should be")
    drop_sample(tmp_path, "erp", "customer-1005.xml")
    eip_context.add_routes(CustomerViewBuilder(tmp_path))
    await eip_context.start()
    await wait_for_file(inbox(tmp_path, "erp") / ".error" / "customer-1005.xml")


async def test_demo_seed_copies_the_samples(
    eip_context: Context, manual_clock: ManualClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EIP_DATA_DIR", str(tmp_path))
    eip_context.add_routes(CustomerViewDemoSeed())
    await eip_context.start()
    await manual_clock.advance(0)
    for side in ("crm", "erp"):
        seeded = sorted(p.name for p in inbox(tmp_path, side).iterdir())
        assert seeded == sorted(p.name for p in (SAMPLE_DIR / side).iterdir())
