"""The ERP nightly export example route: a CSV export streamed into JSON batches of 500."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import msgspec
import pytest

from eip import Context
from eip.testing import ManualClock
from routes.erp_nightly_export import (
    SAMPLE_DIR,
    AccountBatch,
    AccountStatus,
    ErpExportDemoSeed,
    ErpNightlyExport,
    ExportManifest,
)
from tests.crm_support import assert_failure, poll_until, read_letter, wait_for_file

HEADER = (
    "account_number,customer_id,company_name,country,currency,balance,credit_limit,"
    "days_overdue,status,last_payment_date\n"
)


def row(n: int) -> str:
    status = "blocked" if n % 7 == 0 else "active"
    return (
        f"D-{n:05d},{n},Customer {n} Ltd,de,eur,{n}.25,{n * 10}.00,{n % 30},{status},2024-04-01\n"
    )


def drop_export(data: Path, name: str, text: str) -> Path:
    directory = data / "inbox" / "erp-account-export"
    directory.mkdir(parents=True, exist_ok=True)
    temp = directory / f".{name}.tmp"
    temp.write_text(text)
    temp.replace(directory / name)
    return directory


def batches_dir(data: Path) -> Path:
    return data / "outbox" / "crm-account-batches"


def batch_files(data: Path) -> list[str]:
    return sorted(p.name for p in batches_dir(data).iterdir())


def read_batch(data: Path, name: str) -> AccountBatch:
    return msgspec.json.decode((batches_dir(data) / name).read_bytes(), type=AccountBatch)


def rejection(data: Path, stem: str) -> Path:
    return data / "rejected" / "erp-nightly-export" / f"{stem}.json"


async def test_1234_rows_make_batches_of_500_500_234(eip_context: Context, tmp_path: Path) -> None:
    export = drop_export(
        tmp_path, "accounts_20240502.csv", HEADER + "".join(map(row, range(1, 1235)))
    )
    eip_context.add_routes(ErpNightlyExport(tmp_path))
    await eip_context.start()
    await wait_for_file(export / ".done" / "accounts_20240502.csv")

    names = ["accounts_20240502-0001.json", "accounts_20240502-0002.json"]
    names.append("accounts_20240502-0003.json")
    assert batch_files(tmp_path) == [*names, "accounts_20240502.manifest.json"]
    batches = [read_batch(tmp_path, name) for name in names]
    assert [(b.export, b.batch, b.rows, len(b.accounts)) for b in batches] == [
        ("accounts_20240502", 1, 500, 500),
        ("accounts_20240502", 2, 500, 500),
        ("accounts_20240502", 3, 234, 234),
    ]
    numbers = [a.customer_number for b in batches for a in b.accounts]
    assert numbers == [f"C-{n:06d}" for n in range(1, 1235)]  # every row once, in order
    assert batches[1].accounts[0] == AccountStatus(
        customer_number="C-000501",
        erp_account="D-00501",
        name="Customer 501 Ltd",
        country_code="DE",
        currency="EUR",
        balance_cents=50125,
        credit_limit_cents=501000,
        days_overdue=21,
        blocked=False,
        last_payment=dt.date(2024, 4, 1),
    )
    assert batches[2].accounts[-1].erp_account == "D-01234"

    manifest_file = batches_dir(tmp_path) / "accounts_20240502.manifest.json"
    manifest = msgspec.json.decode(manifest_file.read_bytes(), type=ExportManifest)
    assert manifest == ExportManifest("accounts_20240502", batches=3, rows=1234, files=names)


async def test_sample_export_makes_three_batches(
    eip_context: Context, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    sample = SAMPLE_DIR / "erp_accounts_20240502.csv"
    export = drop_export(tmp_path, sample.name, sample.read_text())
    eip_context.add_routes(ErpNightlyExport(tmp_path))
    await eip_context.start()
    await wait_for_file(export / ".done" / sample.name)

    names = [f"erp_accounts_20240502-000{n}.json" for n in (1, 2, 3)]
    assert batch_files(tmp_path) == [*names, "erp_accounts_20240502.manifest.json"]
    batches = [read_batch(tmp_path, name) for name in names]
    assert [(b.batch, b.rows) for b in batches] == [(1, 500), (2, 500), (3, 234)]
    by_account = {a.erp_account: a for b in batches for a in b.accounts}
    assert len(by_account) == 1234
    assert by_account["D-40519"] == AccountStatus(
        customer_number="C-001008",
        erp_account="D-40519",
        name="Curie & Fils SARL",
        country_code="FR",
        currency="EUR",
        balance_cents=912000,
        credit_limit_cents=1500000,
        days_overdue=12,
        blocked=False,
        last_payment=dt.date(2024, 3, 29),
    )
    assert by_account["D-40125"].blocked
    assert by_account["D-40702"].last_payment is None  # empty cell
    assert "erp export erp_accounts_20240502: 1234 row(s) in 3 batch(es)" in caplog.messages


async def test_the_failure_sample_is_rejected_whole(eip_context: Context, tmp_path: Path) -> None:
    """The demo's failure path: erp_accounts_20240503.csv has an unknown status on line 5."""
    sample = SAMPLE_DIR / "erp_accounts_20240503.csv"
    export = drop_export(tmp_path, sample.name, sample.read_text())
    eip_context.add_routes(ErpNightlyExport(tmp_path))
    await eip_context.start()
    await wait_for_file(export / ".error" / sample.name)
    assert (export / ".error" / sample.name).read_text() == sample.read_text()  # kept whole
    letter = read_letter(rejection(tmp_path, "erp_accounts_20240503"))
    assert_failure(
        letter, "UnmarshalError", "erp-nightly-export", "line 5 (row 4), column 'status'"
    )
    assert letter.headers["eip.file.name"] == sample.name
    assert letter.body_encoding == "path"
    assert letter.original_body() == export / sample.name  # where it was when it failed
    assert not batches_dir(tmp_path).exists()  # the bad row is in the first batch: none written


async def test_a_bad_row_fails_the_export_without_a_manifest(
    eip_context: Context, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rows = [row(n) for n in range(1, 1235)]
    rows[1099] = rows[1099].replace(",active,", ",dormant,")  # row 1100 = line 1101
    export = drop_export(tmp_path, "accounts.csv", HEADER + "".join(rows))
    eip_context.add_routes(ErpNightlyExport(tmp_path))
    await eip_context.start()
    await wait_for_file(export / ".error" / "accounts.csv")
    assert "accounts.manifest.json" not in batch_files(tmp_path)
    failure = next(r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)
    assert "line 1101 (row 1100), column 'status'" in failure
    letter = read_letter(rejection(tmp_path, "accounts"))
    assert_failure(letter, "UnmarshalError", "erp-nightly-export", "line 1101 (row 1100)")


async def test_an_export_without_rows_has_an_empty_manifest(
    eip_context: Context, tmp_path: Path
) -> None:
    export = drop_export(tmp_path, "empty.csv", HEADER)
    eip_context.add_routes(ErpNightlyExport(tmp_path))
    await eip_context.start()
    await wait_for_file(export / ".done" / "empty.csv")
    assert batch_files(tmp_path) == ["empty.manifest.json"]
    manifest = (batches_dir(tmp_path) / "empty.manifest.json").read_bytes()
    assert msgspec.json.decode(manifest, type=ExportManifest) == ExportManifest("empty")


async def test_rerunning_an_export_rewrites_the_same_batches(
    eip_context: Context, manual_clock: ManualClock, tmp_path: Path
) -> None:
    text = HEADER + "".join(map(row, range(1, 8)))
    export = drop_export(tmp_path, "x.csv", text)
    eip_context.add_routes(ErpNightlyExport(tmp_path, batch_size=3))
    await eip_context.start()
    await wait_for_file(export / ".done" / "x.csv")
    first = {name: (batches_dir(tmp_path) / name).read_bytes() for name in batch_files(tmp_path)}
    assert list(first) == ["x-0001.json", "x-0002.json", "x-0003.json", "x.manifest.json"]

    for name in first:
        (batches_dir(tmp_path) / name).unlink()
    (export / ".done" / "x.csv").rename(export / "x.csv")
    await poll_until(manual_clock, (export / ".done" / "x.csv").exists)
    second = {name: (batches_dir(tmp_path) / name).read_bytes() for name in batch_files(tmp_path)}
    assert second == first


async def test_demo_seed_copies_the_sample(
    eip_context: Context, manual_clock: ManualClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EIP_DATA_DIR", str(tmp_path))
    eip_context.add_routes(ErpExportDemoSeed())
    await eip_context.start()
    await manual_clock.advance(0)
    seeded = tmp_path / "inbox" / "erp-account-export"
    names = ["erp_accounts_20240502.csv", "erp_accounts_20240503.csv"]
    assert sorted(p.name for p in seeded.iterdir()) == names
    for name in names:
        assert (seeded / name).read_bytes() == (SAMPLE_DIR / name).read_bytes()
