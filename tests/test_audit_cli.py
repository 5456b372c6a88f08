"""``eip audit verify`` and ``eip audit show`` as a real process, on stores written by routes."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from eip import Context, RouteBuilder, header
from eip.audit.cli import parse_time
from eip.audit.record import format_time
from tests.cli_support import run_cli


async def audited_exchanges(store: str) -> None:
    """Three exchanges of two routes: 4711 completed on both, 42 failed."""

    class Routes(RouteBuilder):
        def configure(self) -> None:
            (
                self.from_("direct:crm")
                .route_id("crm-sync")
                .audit(key=header("customer"), fields=["status"], store=store)
                .process(lambda ex: ex.body["must"])
                .to("mock:erp")
            )
            self.from_("direct:erp").route_id("erp-sync").audit(key=header("customer"), store=store)

    context = Context()
    context.add_routes(Routes())
    async with context:
        template = context.template()
        await template.send("direct:crm", {"must": 1, "status": "new"}, headers={"customer": 4711})
        await template.send("direct:crm", {"status": "odd"}, headers={"customer": 42})
        await template.send("direct:erp", "x", headers={"customer": 4711})


async def test_verify_says_ok_with_the_head_hash_and_names_an_edited_row(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    await audited_exchanges(f"sqlite:{path}")
    ok = run_cli("audit", "verify", "--store", f"sqlite:{path}")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith(f"ok: 3 record(s) in 1 chain(s) intact (sqlite:{path})")
    with sqlite3.connect(path) as db:
        head = db.execute("SELECT hash FROM eip_audit_head").fetchone()[0]
        assert f"chain main: last record 3, sha256 {head}" in ok.stdout
        db.execute("UPDATE eip_audit SET records = replace(records, '42', '43') WHERE last = 2")
    broken = run_cli("audit", "verify", "--store", f"sqlite:{path}")
    assert broken.returncode == 1
    assert broken.stderr.startswith(f"eip: error: audit store sqlite:{path} is broken: chain main,")
    assert "record 2 (exchange " in broken.stderr
    assert "its content does not match its hash (edited) (1 record(s) before it verified)" in (
        broken.stderr
    )
    as_json = run_cli("audit", "verify", "--store", f"sqlite:{path}", "--json")
    answer = json.loads(as_json.stdout)
    assert (as_json.returncode, answer["ok"], answer["broken"]["seq"]) == (1, False, 2)


async def test_verify_names_a_deleted_row(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    await audited_exchanges(f"sqlite:{path}")
    with sqlite3.connect(path) as db:
        db.execute("DELETE FROM eip_audit WHERE last = 1")  # each send was a batch: one row
    broken = run_cli("audit", "verify", "--store", f"sqlite:{path}")
    assert broken.returncode == 1
    assert "record 1 of chain main is missing before record 2 (exchange " in broken.stderr


async def test_show_filters_by_route_key_and_time(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    await audited_exchanges(f"sqlite:{path}")
    store = f"sqlite:{path}"
    table = run_cli("audit", "show", "--store", store, "--key", "4711", "--since", "1h")
    assert table.returncode == 0, table.stderr
    header_line, *rows = table.stdout.splitlines()
    assert header_line.split() == [
        "time",
        "route",
        "outcome",
        "key",
        "principal",
        "endpoints",
        "exchange",
        "fields",
    ]
    assert [row.split()[1:4] for row in rows] == [
        ["crm-sync", "completed", "4711"],
        ["erp-sync", "completed", "4711"],
    ]
    assert '{"status":"new"}' in rows[0]
    shown = run_cli("audit", "show", "--store", store, "--route", "crm-sync", "--json")
    records = json.loads(shown.stdout)
    assert [(r["key"], r["outcome"], r["error"]) for r in records] == [
        ("4711", "completed", None),
        ("42", "failed", "builtins.KeyError"),
    ]
    assert records[0]["endpoints"] == ["mock:erp"]
    assert records[1]["endpoints"] == []
    later = run_cli("audit", "show", "--store", store, "--since", "now", "--json")
    assert json.loads(later.stdout) == []
    none = run_cli("audit", "show", "--store", store, "--key", "nobody")
    assert (none.returncode, none.stdout, none.stderr) == (0, "", "no records match\n")


async def test_the_store_comes_from_the_config(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    await audited_exchanges(f"jsonl:{path}")
    config = tmp_path / "eip.toml"
    config.write_text(f'[audit]\nstore = "jsonl:{path}"\n', encoding="utf-8")
    shown = run_cli("audit", "show", "--config", str(config), "--outcome", "failed", "--json")
    assert [r["key"] for r in json.loads(shown.stdout)] == ["42"]
    ok = run_cli("audit", "verify", "--config", str(config))
    assert ok.returncode == 0
    assert "3 record(s) in 1 chain(s) intact (jsonl:" in ok.stdout


def test_mistakes_are_one_line_errors(tmp_path: Path) -> None:
    missing = run_cli("audit", "verify", "--store", f"sqlite:{tmp_path / 'none.db'}")
    assert (missing.returncode, missing.stderr.strip()) == (
        1,
        f"eip: error: audit store sqlite:{tmp_path / 'none.db'}: no such file",
    )
    unknown = run_cli("audit", "show", "--store", "ftp:x")
    assert unknown.returncode == 2
    assert "write sqlite:PATH, jsonl:PATH or postgresql://user@host/db" in unknown.stderr
    when = run_cli("audit", "show", "--store", "sqlite:x.db", "--since", "last tuesday")
    assert when.returncode == 2
    assert "invalid time 'last tuesday'" in when.stderr


def test_times_on_the_command_line() -> None:
    assert parse_time("2026-11-04T09:30:00Z") == "2026-11-04T09:30:00.000000Z"
    assert parse_time("2026-11-04T10:30:00+01:00") == "2026-11-04T09:30:00.000000Z"
    assert parse_time("yesterday") < parse_time("today") <= parse_time("now")
    assert parse_time("24h") < parse_time("30m") < parse_time("now")
    assert len(parse_time("2026-11-04")) == len(format_time(0))
    with pytest.raises(Exception, match="invalid time"):
        parse_time("soon")
