"""The CRM -> HR example (routes/crm_hr_mapping.py) end to end, against a real CRM and a real
HR API (aiohttp on 127.0.0.1): sales reps mapped with the code lists, an unknown region
rejected, and the code lists edited while the routes run."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from pytest_asyncio import fixture as async_fixture

from eip import Context, RouteDefinitionError
from eip import headers as H
from routes._support import dead_letters, read_dead_letter, rejected
from routes.crm_hr_mapping import SAMPLE_DIR, SYNC, CrmHrMapping, reference_dir

CRM_TOKEN = "crm-token-7"
HR_TOKEN = "hr-token-7"


@dataclass
class Systems:
    reps: list[dict[str, Any]]
    employees: dict[str, dict[str, Any]] = field(default_factory=dict)
    refuse: set[str] = field(default_factory=set)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/crm/api/sales-reps", self.sales_reps)
        app.router.add_put("/hr/api/employees/{number}", self.upsert)
        return app

    async def sales_reps(self, request: web.Request) -> web.Response:
        if request.headers.get("authorization") != f"Bearer {CRM_TOKEN}":
            raise web.HTTPUnauthorized()
        return web.json_response(self.reps)

    async def upsert(self, request: web.Request) -> web.Response:
        if request.headers.get("authorization") != f"Bearer {HR_TOKEN}":
            raise web.HTTPUnauthorized()
        number = request.match_info["number"]
        if number in self.refuse:
            return web.json_response({"error": "locked"}, status=409)
        self.employees[number] = await request.json()
        return web.json_response({"employee_id": number})


def replace(path: Path, text: str) -> None:
    """Save a code list as an editor should: a temporary file renamed over it; the mtime
    moves on even on a coarse clock."""
    old = path.stat().st_mtime_ns
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text(text, encoding="utf-8")
    os.replace(temp, path)
    stat = path.stat()
    if stat.st_mtime_ns <= old:
        os.utime(path, ns=(stat.st_atime_ns, old + 1_000_000))


@dataclass
class Setup:
    context: Context
    systems: Systems
    data: Path

    async def sync(self) -> dict[str, int]:
        exchange = await self.context.template().send(SYNC)
        assert exchange.exception is None, exchange.exception
        summary: dict[str, int] = exchange.body
        return summary


@async_fixture
async def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Setup]:
    folder = reference_dir(tmp_path)
    folder.mkdir(parents=True)
    for name in ("regions.csv", "departments.csv"):
        shutil.copyfile(SAMPLE_DIR / name, folder / name)
    systems = Systems(json.loads((SAMPLE_DIR / "sales_reps.json").read_bytes()))
    runner = web.AppRunner(systems.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    monkeypatch.setenv("EIP_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("EIP_DEMO", "0")
    monkeypatch.setenv("EIP_CRM__URL", f"{url}/crm")
    monkeypatch.setenv("EIP_HR__URL", f"{url}/hr")
    monkeypatch.setenv("CRM_API_TOKEN", CRM_TOKEN)
    monkeypatch.setenv("HR_API_TOKEN", HR_TOKEN)
    context = Context(shutdown_timeout=5)
    context.add_routes(CrmHrMapping(check_every=0))  # look at the files at every lookup
    await context.start()
    try:
        yield Setup(context, systems, tmp_path)
    finally:
        await context.stop()
        await runner.cleanup()


async def test_sales_reps_are_mapped_through_the_code_lists(setup: Setup) -> None:
    summary = await setup.sync()

    assert summary == {"fetched": 8, "upserted": 7, "rejected": 1, "dead_lettered": 0}
    employees = setup.systems.employees
    assert sorted(employees) == [f"SR-000{n}" for n in (301, 302, 303, 304, 305, 306, 308)]
    assert employees["SR-000301"] == {
        "employee_number": "SR-000301",
        "given_name": "Na",
        "family_name": "Li",
        "work_email": "li.na@crm.example.cn",
        "region_code": "CN-E",
        "cost_center": "CC-1100",
        "department_code": "D-410",
        "start_date": "2019-03-01",
        "status": "active",
        "source_system": "crm",
    }
    # Names match without case or extra spaces: "key accounts", "  east ", "Channel  Partners".
    assert employees["SR-000304"]["department_code"] == "D-410"
    liu = employees["SR-000305"]
    assert (liu["region_code"], liu["department_code"], liu["status"]) == (
        "CN-E",
        "D-440",
        "inactive",
    )
    # Zhou Lin's region is in no code list: rejected with the reason, never sent to HR.
    letter = read_dead_letter(
        (rejected("hr-mapping", setup.data) / "sales-rep-307.json").read_bytes()
    )
    assert letter.body["region"] == "Hainan"
    reason = letter.failure[H.EXCEPTION_MESSAGE]
    assert "$.region: cannot convert 'Hainan' for target 'region_code'" in reason
    assert "'Hainan' is not in regions.csv" in reason


async def test_an_edited_code_list_is_used_by_the_next_record(setup: Setup) -> None:
    await setup.sync()
    regions = reference_dir(setup.data) / "regions.csv"
    departments = reference_dir(setup.data) / "departments.csv"
    text = regions.read_text(encoding="utf-8")
    replace(regions, text.replace("CN-N,CC-1200", "CN-NORTH,CC-1210") + "Hainan,CN-HN,CC-1600,\n")
    replace(departments, departments.read_text(encoding="utf-8").replace("D-430", "D-431"))

    summary = await setup.sync()

    assert summary == {"fetched": 8, "upserted": 8, "rejected": 0, "dead_lettered": 0}
    employees = setup.systems.employees
    assert employees["SR-000302"]["region_code"] == "CN-NORTH"  # changed without a restart
    assert employees["SR-000302"]["cost_center"] == "CC-1210"
    zhou = employees["SR-000307"]  # rejected before, sent now that the code list has Hainan
    assert (zhou["region_code"], zhou["department_code"]) == ("CN-HN", "D-431")

    # A broken save (the key column renamed) is refused: the last good codes stay in use.
    replace(regions, text.replace("crm_region", "region"))
    again = await setup.sync()
    assert again["upserted"] == 8
    assert employees["SR-000302"]["region_code"] == "CN-NORTH"


async def test_a_rep_hr_refuses_is_dead_lettered_and_the_others_go_through(setup: Setup) -> None:
    setup.systems.refuse.add("SR-000303")
    summary = await setup.sync()
    assert summary == {"fetched": 8, "upserted": 6, "rejected": 1, "dead_lettered": 1}
    letter = read_dead_letter(
        (dead_letters("hr-mapping", setup.data) / "sales-rep-303.json").read_bytes()
    )
    assert "HTTP 409" in letter.failure[H.EXCEPTION_MESSAGE]
    assert letter.body["id"] == 303


def test_missing_code_lists_fail_the_load_naming_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EIP_DEMO", "0")
    with pytest.raises(RouteDefinitionError, match=r"lookup table .*regions.csv: no such file"):
        CrmHrMapping(tmp_path).build()
