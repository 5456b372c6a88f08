"""The CRM lead feed example route, end to end on real files and a real SQLite state file."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import msgspec
import pytest

from eip import Context
from eip.testing import ManualClock
from routes.crm_lead_feed import (
    SAMPLE_DIR,
    CrmLead,
    CrmLeadFeed,
    LeadContact,
    LeadFeedDemoSeed,
    RejectedLead,
)
from tests.crm_support import poll_until, wait_for_file

FIRST = "leads-20240502-0800.ndjson"
SECOND = "leads-20240502-0900.ndjson"


def lead_line(lead_id: str, email: str = "x@example.com", source: str = "web promotion") -> str:
    return msgspec.json.encode(
        {"id": lead_id, "source": source, "email": email, "created_at": "2024-05-02T10:00:00Z"}
    ).decode()


def drop_file(directory: Path, name: str, text: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    temp = directory / f".{name}.tmp"
    temp.write_text(text)
    temp.replace(directory / name)


def inbox(data: Path) -> Path:
    return data / "inbox" / "marketing-leads"


def accepted_ids(data: Path) -> list[str]:
    accepted = data / "outbox" / "crm-leads"
    return sorted(p.name for p in accepted.iterdir()) if accepted.exists() else []


def rejects(data: Path, source: str) -> list[RejectedLead]:
    path = data / "rejected" / "lead-feed" / f"rejected-{Path(source).stem}.json"
    return msgspec.json.decode(path.read_bytes(), type=list[RejectedLead])


async def test_sample_feeds_are_filtered_validated_and_deduplicated(
    eip_context: Context, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    incoming = inbox(tmp_path)
    incoming.mkdir(parents=True)
    for name in (FIRST, SECOND):
        (incoming / name).write_bytes((SAMPLE_DIR / name).read_bytes())
    eip_context.add_routes(CrmLeadFeed(tmp_path))
    await eip_context.start()
    await wait_for_file(incoming / ".done" / FIRST)
    await wait_for_file(incoming / ".done" / SECOND)

    # L-10002 and L-10007 are not from the web promotion; L-10003 comes twice (once per file);
    # L-10004 has no valid e-mail, L-10008 a number for one, line 5 of the second file is cut.
    assert accepted_ids(tmp_path) == [
        "lead-L-10001.json",
        "lead-L-10003.json",
        "lead-L-10005.json",
        "lead-L-10006.json",
        "lead-L-10010.json",
    ]
    anna_file = tmp_path / "outbox" / "crm-leads" / "lead-L-10005.json"
    anna = msgspec.json.decode(anna_file.read_bytes(), type=CrmLead)
    assert anna == CrmLead(
        external_id="L-10005",
        contact=LeadContact(
            email="anna.schmidt@beispiel.de", first_name="Anna", last_name="Schmidt"
        ),
        company="Schmidt & Soehne GmbH",
        country_code="DE",
        campaign="spring-promo-2024",
        marketing_consent=True,
        received_at=dt.datetime(2024, 5, 2, 7, 58, 31, tzinfo=dt.UTC),
        lead_source="web-promotion",
        status="new",
    )

    sample_lines = (SAMPLE_DIR / FIRST).read_text().splitlines()
    assert rejects(tmp_path, FIRST) == [
        RejectedLead(
            line=4,
            reason="$.email: cannot convert 'call me maybe' for target 'contact.email': "
            "not an e-mail address",
            content=sample_lines[3],
        )
    ]
    second = rejects(tmp_path, SECOND)
    assert [(r.line, r.content) for r in second] == [
        (4, (SAMPLE_DIR / SECOND).read_text().splitlines()[3]),
        (5, '{"id":"L-10009","source":"web promotion","email":"k.nowak@'),
    ]
    assert second[0].reason == "invalid json input: $.email: expected str, got int"
    assert second[1].reason.startswith("invalid json input: ")

    messages = [r.getMessage() for r in caplog.records]
    assert (
        f"lead file {FIRST}: 3 accepted, 0 duplicate(s) skipped, 1 from other sources, 1 rejected"
        in messages
    )
    assert (
        f"lead file {SECOND}: 2 accepted, 1 duplicate(s) skipped, 1 from other sources, "
        "2 rejected" in messages
    )


async def test_a_clean_file_writes_no_rejects(eip_context: Context, tmp_path: Path) -> None:
    incoming = inbox(tmp_path)
    drop_file(incoming, "a.ndjson", f"{lead_line('A1')}\n{lead_line('A1')}\n\n")
    eip_context.add_routes(CrmLeadFeed(tmp_path))
    await eip_context.start()
    await wait_for_file(incoming / ".done" / "a.ndjson")
    assert accepted_ids(tmp_path) == ["lead-A1.json"]
    assert not (tmp_path / "rejected" / "lead-feed").exists()


async def test_dedupe_across_files_while_running(
    eip_context: Context, manual_clock: ManualClock, tmp_path: Path
) -> None:
    incoming = inbox(tmp_path)
    accepted = tmp_path / "outbox" / "crm-leads"
    drop_file(incoming, "1.ndjson", f"{lead_line('A1')}\n{lead_line('A2')}\n")
    eip_context.add_routes(CrmLeadFeed(tmp_path))
    await eip_context.start()
    await wait_for_file(incoming / ".done" / "1.ndjson")
    for path in accepted.iterdir():
        path.unlink()  # so that a lead written again would show

    drop_file(incoming, "2.ndjson", f"{lead_line('A2')}\n{lead_line('A3')}\n")
    await poll_until(manual_clock, (incoming / ".done" / "2.ndjson").exists)
    assert accepted_ids(tmp_path) == ["lead-A3.json"]


async def test_restart_remembers_the_ids_seen_before(
    eip_context: Context, manual_clock: ManualClock, tmp_path: Path
) -> None:
    incoming = inbox(tmp_path)
    accepted = tmp_path / "outbox" / "crm-leads"
    drop_file(incoming, "1.ndjson", f"{lead_line('A1')}\n{lead_line('A2')}\n")
    eip_context.add_routes(CrmLeadFeed(tmp_path))
    await eip_context.start()
    await wait_for_file(incoming / ".done" / "1.ndjson")
    await eip_context.stop()
    assert accepted_ids(tmp_path) == ["lead-A1.json", "lead-A2.json"]
    for path in accepted.iterdir():
        path.unlink()

    drop_file(incoming, "2.ndjson", f"{lead_line('A2')}\n{lead_line('A3')}\n{lead_line('A1')}\n")
    restarted = Context(clock=manual_clock, shutdown_timeout=5.0)
    restarted.add_routes(CrmLeadFeed(tmp_path))
    try:
        await restarted.start()
        await wait_for_file(incoming / ".done" / "2.ndjson")
    finally:
        await restarted.stop()
    assert accepted_ids(tmp_path) == ["lead-A3.json"]
    assert (tmp_path / "state" / "leads.db").exists()


async def test_a_rejected_lead_does_not_use_up_its_id(
    eip_context: Context, manual_clock: ManualClock, tmp_path: Path
) -> None:
    incoming = inbox(tmp_path)
    drop_file(incoming, "1.ndjson", lead_line("B7", email="b7-at-example.com") + "\n")
    eip_context.add_routes(CrmLeadFeed(tmp_path))
    await eip_context.start()
    await wait_for_file(incoming / ".done" / "1.ndjson")
    assert accepted_ids(tmp_path) == []
    assert [r.line for r in rejects(tmp_path, "1.ndjson")] == [1]

    drop_file(incoming, "2.ndjson", lead_line("B7", email="b7@example.com") + "\n")  # corrected
    await poll_until(manual_clock, (incoming / ".done" / "2.ndjson").exists)
    assert accepted_ids(tmp_path) == ["lead-B7.json"]


async def test_a_write_failure_fails_the_file_and_releases_the_id(
    eip_context: Context, manual_clock: ManualClock, tmp_path: Path
) -> None:
    incoming = inbox(tmp_path)
    outbox = tmp_path / "outbox"
    outbox.mkdir(parents=True)
    (outbox / "crm-leads").write_text("not a directory")  # every write fails
    drop_file(incoming, "1.ndjson", f"{lead_line('C1')}\n{lead_line('C2')}\n")
    eip_context.add_routes(CrmLeadFeed(tmp_path))
    await eip_context.start()
    await wait_for_file(incoming / ".error" / "1.ndjson")

    (outbox / "crm-leads").unlink()  # fixed; the operator moves the file back
    (incoming / ".error" / "1.ndjson").rename(incoming / "1.ndjson")
    await poll_until(manual_clock, (incoming / ".done" / "1.ndjson").exists)
    assert accepted_ids(tmp_path) == ["lead-C1.json", "lead-C2.json"]


async def test_demo_seed_copies_the_samples(
    eip_context: Context, manual_clock: ManualClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EIP_DATA_DIR", str(tmp_path))
    eip_context.add_routes(LeadFeedDemoSeed())
    await eip_context.start()
    await manual_clock.advance(0)
    incoming = inbox(tmp_path)
    assert sorted(p.name for p in incoming.iterdir()) == [FIRST, SECOND]
    assert (incoming / SECOND).read_bytes() == (SAMPLE_DIR / SECOND).read_bytes()
