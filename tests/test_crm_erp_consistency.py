"""The CRM/ERP consistency example (routes/crm_erp_consistency.py) end to end, against a real
CRM and a real ERP (aiohttp on 127.0.0.1) serving the example's sample data: the check runs,
reports (body, files, metrics), repairs the ERP through the upsert route, and the next run
sees the repairs."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from pytest_asyncio import fixture as async_fixture

from eip import Context, Exchange
from eip.reconcile import ReconcileReport
from routes.crm_erp_consistency import (
    CHECK,
    SAMPLE_DIR,
    CrmErpConsistency,
    demo_crm_accounts,
    demo_erp_customers,
    reports_dir,
)

CRM_TOKEN = "crm-token-1"
ERP_TOKEN = "erp-token-1"
#: The ERP refuses these (as the demo ERP does: "being migrated").
LOCKED = {"C-001013"}


@dataclass
class Systems:
    """The CRM (accounts, Link-paged) and the ERP (customers by page; PUT upserts)."""

    crm: list[dict[str, Any]]
    erp: dict[str, dict[str, Any]]
    requests: list[tuple[str, str]] = field(default_factory=list)
    puts: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/crm/api/accounts", self.accounts)
        app.router.add_get("/erp/api/customers", self.customers)
        app.router.add_put("/erp/api/customers/{number}", self.upsert)
        return app

    def _check(self, request: web.Request, token: str) -> None:
        self.requests.append((request.method, request.path_qs))
        if request.headers.get("authorization") != f"Bearer {token}":
            raise web.HTTPUnauthorized()

    async def accounts(self, request: web.Request) -> web.Response:
        self._check(request, CRM_TOKEN)
        page = int(request.query.get("page", "1"))
        chunk = self.crm[(page - 1) * 5 : page * 5]
        more = page * 5 < len(self.crm)
        link = {"Link": f'<{request.path}?page={page + 1}>; rel="next"'} if more else {}
        return web.json_response(chunk, headers=link)

    async def customers(self, request: web.Request) -> web.Response:
        self._check(request, ERP_TOKEN)
        page, size = int(request.query["page"]), int(request.query["size"])
        rows = [self.erp[n] for n in sorted(self.erp)]
        return web.json_response({"customers": rows[(page - 1) * size : page * size]})

    async def upsert(self, request: web.Request) -> web.Response:
        self._check(request, ERP_TOKEN)
        number = request.match_info["number"]
        record = await request.json()
        self.puts.append((number, record))
        if number in LOCKED:
            return web.json_response({"error": f"{number} is being migrated"}, status=503)
        self.erp[number] = record
        return web.json_response({"erp_id": f"E-{number}"})


def _sample(name: str) -> Any:
    return json.loads((SAMPLE_DIR / name).read_bytes())


@dataclass
class Setup:
    context: Context
    systems: Systems
    data: Path

    async def check(self) -> ReconcileReport:
        exchange = await self.context.template().send(CHECK)
        assert exchange.exception is None, exchange.exception
        assert isinstance(exchange.body, bytes)  # the route wrote the report as JSON
        latest = json.loads((reports_dir(self.data) / "latest.json").read_bytes())
        assert json.loads(exchange.body) == latest
        return _report(latest)


def _report(doc: dict[str, Any]) -> ReconcileReport:
    import msgspec

    return msgspec.convert(doc, ReconcileReport)


@async_fixture
async def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Setup]:
    systems = Systems(_sample("crm_customers.json"), {
        c["customer_number"]: c for c in _sample("erp_customers.json")
    })  # fmt: skip
    runner = web.AppRunner(systems.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    monkeypatch.setenv("EIP_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("EIP_DEMO", "0")
    monkeypatch.setenv("EIP_CRM__URL", f"{url}/crm")  # {{crm.url}}
    monkeypatch.setenv("EIP_ERP__URL", f"{url}/erp")  # {{erp.url}}
    monkeypatch.setenv("CRM_API_TOKEN", CRM_TOKEN)
    monkeypatch.setenv("ERP_API_TOKEN", ERP_TOKEN)
    context = Context(metrics=True, shutdown_timeout=5)
    context.add_routes(CrmErpConsistency())
    await context.start()
    try:
        yield Setup(context, systems, tmp_path)
    finally:
        await context.stop()
        await runner.cleanup()


async def test_the_check_reports_repairs_the_erp_and_the_next_run_sees_it(setup: Setup) -> None:
    report = await setup.check()

    assert report.counts == {
        "same": 6,  # 1001, 1002 (case, spaces), 1005, 1008, 1010, 1011 (spaces)
        "differs": 4,  # 1003 postal code, 1004 e-mail, 1006 segment, 1013 e-mail
        "only_left": 1,  # 1009: not in the ERP
        "only_right": 2,  # 1007 (inactive in the CRM), 9999 (the ERP's own)
        "duplicate": 0,
    }
    assert report.consistency == round(6 / 13, 6)
    assert report.field_differences == {"email": 2, "postal_code": 1, "segment": 1}
    assert (report.left.records, report.right.records) == (11, 12)  # 1007 filtered out
    differs = {s.key: s.fields for s in report.samples["differs"]}
    assert differs["C-001003"] is not None
    assert differs["C-001003"]["postal_code"].left == "MK3 6EB"
    assert differs["C-001003"]["postal_code"].right == "MK3 6EA"
    assert sorted(s.key for s in report.samples["only_right"]) == ["C-001007", "C-009999"]

    # Repairs: the 4 that differ and the missing one, as the CRM has them; C-001013 is
    # refused (tried 3 times), which the report counts without failing the check.
    assert (report.repairs.sent, report.repairs.failed, report.repairs.skipped) == (4, 1, 0)
    assert report.repairs.endpoint == "direct:erp-customer-upsert"
    assert "differs 'C-001013'" in report.repairs.errors[0]
    assert "503" in report.repairs.errors[0]
    put = dict(setup.systems.puts)
    assert sorted(put) == ["C-001003", "C-001004", "C-001006", "C-001009", "C-001013"]
    assert [n for n, _ in setup.systems.puts].count("C-001013") == 3
    assert put["C-001009"] == {
        "customer_number": "C-001009",
        "name": "John Backus",
        "email": "john@example.com",
        "segment": "b2c",
        "postal_code": "10027",
        "country_code": "US",
        "source_event": "reconcile:crm-erp-consistency",
    }
    assert "C-001007" not in put
    assert "C-009999" not in put

    # Paging: the CRM by its Link headers (5 a page), the ERP by page number until short.
    assert [p for m, p in setup.systems.requests if p.startswith("/crm")] == [
        "/crm/api/accounts",
        "/crm/api/accounts?page=2",
        "/crm/api/accounts?page=3",
    ]
    assert [p for m, p in setup.systems.requests if m == "GET" and p.startswith("/erp")] == [
        "/erp/api/customers?page=1&size=500"
    ]

    metrics = setup.context.metrics
    assert metrics is not None
    text = metrics.render()[0].decode()
    label = 'reconcile="crm-erp-consistency"'
    assert f"eip_reconcile_consistency_ratio{{{label}}} {round(6 / 13, 6)}" in text
    assert f'eip_reconcile_keys{{{label},verdict="only_left"}} 1.0' in text

    second = await setup.check()
    assert second.counts == {
        "same": 10,
        "differs": 1,  # C-001013, still refused by the ERP
        "only_left": 0,
        "only_right": 2,
        "duplicate": 0,
    }
    assert (second.repairs.sent, second.repairs.failed) == (0, 1)
    history = sorted(p.name for p in reports_dir(setup.data).iterdir())
    assert len(history) == 3
    assert history[-1] == "latest.json"
    assert json.loads((reports_dir(setup.data) / history[1]).read_bytes())["counts"] == (
        second.counts
    )


async def test_a_failing_source_fails_the_run_naming_it(setup: Setup) -> None:
    broken = dict(setup.systems.crm[0], id="10x20")  # no customer number can be made of it
    setup.systems.crm.append(broken)
    exchange = await setup.context.template().send(CHECK)
    assert exchange.exception is not None
    assert "source 'crm': map failed on record 12" in str(exchange.exception)
    assert "$.id: cannot convert '10x20' for target 'customer_number'" in str(exchange.exception)
    assert setup.systems.puts == []  # nothing repaired from a run that could not read the CRM


def test_the_demo_systems_page_and_show_the_upserts(tmp_path: Path) -> None:
    exchange = Exchange(None, {"page": "3", "per_page": "5"})
    assert [a["id"] for a in demo_crm_accounts(exchange)] == [1011, 1013]
    assert "link" not in exchange.headers
    first = Exchange(None, {})
    assert len(demo_crm_accounts(first)) == 5
    assert first.headers["link"] == '</demo/crm/api/accounts?page=2&per_page=5>; rel="next"'

    upserts = tmp_path / "demo" / "erp-api"
    upserts.mkdir(parents=True)
    repaired = {"customer_number": "C-001009", "name": "John Backus"}
    (upserts / "C-001009.json").write_text(json.dumps(repaired))
    customers = demo_erp_customers(tmp_path)
    assert repaired in customers
    assert len(customers) == 13
