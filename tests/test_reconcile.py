"""The consistency check (eip.reconcile): verdicts on crafted data, normalisation, duplicates,
memory spill, sources, errors, and the ``reconcile`` step with repairs, report and metrics."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiohttp import web

from eip import Context, RouteBuilder, RouteDefinitionError
from eip.reconcile import (
    RECONCILE_FIELDS,
    RECONCILE_KEY,
    RECONCILE_NAME,
    RECONCILE_VERDICT,
    ReconcileError,
    ReconcileReport,
    Repair,
    callable_source,
    casefold,
    collapse_spaces,
    compose,
    date,
    empty_as_none,
    file_source,
    http_source,
    number,
    reconcile,
    trim,
)
from eip.reconcile.http_sources import next_link

LEFT = [
    {"id": 1, "name": "Ada", "email": "ada@example.com", "tier": "gold"},
    {"id": 2, "name": "Grace", "email": "grace@example.com", "tier": "gold"},
    {"id": 3, "name": "Alan", "email": "alan@example.com", "tier": "silver"},
    {"id": 4, "name": "Edsger", "email": "edsger@example.com", "tier": "bronze"},
]
RIGHT = [
    {"tier": "gold", "email": "ada@example.com", "name": "Ada", "id": 1},  # other field order
    {"id": 2, "name": "Grace", "email": "grace@navy.example", "tier": "platinum"},
    {"id": 5, "name": "Barbara", "email": "barbara@example.com", "tier": "gold"},
    {"id": 4, "name": "Edsger", "email": "edsger@example.com", "tier": "bronze"},
]


def rows(records: list[dict[str, Any]]) -> Any:
    return lambda: [dict(r) for r in records]


async def test_each_key_gets_its_verdict() -> None:
    repairs: list[Repair] = []

    report = await reconcile(rows(LEFT), rows(RIGHT), key="id", repair=repairs.append)

    assert report.counts == {
        "same": 2,
        "differs": 1,
        "only_left": 1,
        "only_right": 1,
        "duplicate": 0,
    }
    assert report.keys == 5
    assert report.consistency == 0.4
    assert not report.consistent
    assert report.field_differences == {"email": 1, "tier": 1}
    [differs] = report.samples["differs"]
    assert differs.key == 2
    assert differs.fields is not None
    assert {k: (v.left, v.right) for k, v in differs.fields.items()} == {
        "email": ("grace@example.com", "grace@navy.example"),
        "tier": ("gold", "platinum"),
    }
    assert [s.record for s in report.samples["only_left"]] == [LEFT[2]]
    assert [s.record for s in report.samples["only_right"]] == [RIGHT[2]]
    assert sorted(s.key for s in report.samples["same"]) == [1, 4]
    # Default repairs: the left side is right, for differs and only_left.
    assert sorted((r.verdict, r.key, r.fields) for r in repairs) == [
        ("differs", 2, ("email", "tier")),
        ("only_left", 3, ()),
    ]
    assert next(r for r in repairs if r.key == 2).record == LEFT[1]
    assert report.repairs.sent == 2
    assert (report.left.records, report.right.records) == (4, 4)
    assert not report.spilled


async def test_an_empty_pair_of_sources_is_consistent() -> None:
    report = await reconcile(rows([]), rows([]), key="id")
    assert report.keys == 0
    assert report.consistency == 1.0
    assert report.consistent


async def test_normalisers_make_two_spellings_of_a_value_equal() -> None:
    crm = [
        {"id": "C-1", "name": "  Ada   Lovelace ", "email": "ADA@Example.com",
         "revenue": "1.234,50", "since": "01.03.2024", "note": ""},
    ]  # fmt: skip
    erp = [
        {"id": "C-1", "name": "ada lovelace", "email": "ada@example.com", "revenue": 1234.5,
         "since": "2024-03-01", "note": None},
    ]  # fmt: skip
    normalise = {
        "*": trim,
        "name": [collapse_spaces, casefold],
        "email": casefold,
        "revenue": number(decimal=",", thousands="."),
        "since": date("%d.%m.%Y", "%Y-%m-%d"),
        "note": empty_as_none,
    }
    plain = await reconcile(rows(crm), rows(erp), key="id")
    assert plain.counts["differs"] == 1
    assert set(plain.field_differences) == {"name", "email", "revenue", "since", "note"}

    normalised = await reconcile(rows(crm), rows(erp), key="id", normalise=normalise)
    assert normalised.counts["same"] == 1
    assert normalised.consistent

    # A field the normalisers cannot make equal still differs, shown as the sources have it.
    erp[0]["revenue"] = "1234.51"
    again = await reconcile(rows(crm), rows(erp), key="id", normalise=normalise)
    assert again.field_differences == {"revenue": 1}
    fields = again.samples["differs"][0].fields
    assert fields is not None
    assert (fields["revenue"].left, fields["revenue"].right) == ("1.234,50", "1234.51")


def test_normalisers_compose_and_leave_what_they_do_not_apply_to() -> None:
    euro = number(decimal=",", thousands=".")
    assert euro("1.234,50") == euro(1234.5) == euro("1234,5")
    assert number(places=2)("19.999") == number()("20")
    assert number()("n/a") == "n/a"  # not a number: compared as it is
    assert number()(True) is True
    assert date("%d.%m.%Y")("01.03.2024") == dt.date(2024, 3, 1)
    assert date()("2024-03-01T10:00:00+01:00") == dt.date(2024, 3, 1)
    assert date()(dt.datetime(2024, 3, 1, 23, 59)) == dt.date(2024, 3, 1)
    assert date()("soon") == "soon"
    assert compose(trim, casefold)("  STRASSE ") == compose(casefold)("straße")
    assert trim(42) == 42
    assert collapse_spaces(" a \t b ") == "a b"
    with pytest.raises(ValueError, match="separators must differ"):
        number(decimal=",", thousands=",")


async def test_a_normaliser_that_raises_leaves_the_value_as_it_was() -> None:
    def explode(value: Any) -> Any:
        raise RuntimeError("boom")

    report = await reconcile(
        rows([{"id": 1, "a": "x"}]), rows([{"id": 1, "a": "y"}]), key="id", normalise={"a": explode}
    )
    assert report.field_differences == {"a": 1}


async def test_fields_ignore_and_absent_fields() -> None:
    left = [{"id": 1, "name": "Ada", "updated": "2026-01-01", "extra": None}]
    right = [{"id": 1, "name": "Ada", "updated": "2026-02-02"}]
    found = await reconcile(rows(left), rows(right), key="id")
    assert found.field_differences == {"updated": 1}  # absent and None are the same
    ignored = await reconcile(rows(left), rows(right), key="id", ignore=["updated"])
    assert ignored.consistent
    only_name = await reconcile(rows(left), rows(right), key="id", fields=["name"])
    assert only_name.consistent


async def test_a_key_held_twice_is_a_duplicate_never_compared_nor_repaired() -> None:
    left = [{"id": 1, "v": "a"}, {"id": 1, "v": "b"}, {"id": 2, "v": "x"}, {"id": 3, "v": "y"}]
    right = [{"id": 1, "v": "a"}, {"id": 2, "v": "x"}, {"id": 2, "v": "z"}]
    repairs: list[Repair] = []
    report = await reconcile(rows(left), rows(right), key="id", repair=repairs.append)
    assert report.counts["duplicate"] == 2
    assert report.counts["only_left"] == 1  # id 3
    assert report.counts["same"] == 0
    assert report.keys == 3
    assert (report.left.duplicate_keys, report.right.duplicate_keys) == (1, 1)
    shown = {s.key: (s.left_count, s.right_count) for s in report.samples["duplicate"]}
    assert shown == {1: (2, 1), 2: (1, 2)}
    assert [(r.verdict, r.key) for r in repairs] == [("only_left", 3)]


class Customer(msgspec.Struct):
    country: str
    number: int
    name: str


async def test_composite_keys_and_struct_records_in_memory_and_spilled() -> None:
    left = [Customer("DE", n, f"n{n}") for n in range(300)]
    right = [{"country": "DE", "number": n, "name": f"n{n}"} for n in range(1, 300)]
    right[10]["name"] = "changed"
    right.append({"country": "FR", "number": 0, "name": "n0"})
    for memory in (10_000, 50):
        report = await reconcile(
            lambda: left,
            lambda: right,
            key=("country", "number"),
            memory_records=memory,
            partitions=4,
        )
        assert report.spilled is (memory == 50)
        assert report.counts == {
            "same": 298,
            "differs": 1,
            "only_left": 1,
            "only_right": 1,
            "duplicate": 0,
        }
        assert report.samples["only_left"][0].key == ("DE", 0)
        assert report.samples["only_right"][0].key == ("FR", 0)
        assert report.samples["differs"][0].key == ("DE", 11)


def synthetic(count: int, changed: int = 0, offset: int = 0) -> list[dict[str, Any]]:
    return [
        {
            "id": f"K{n:06d}",
            "name": f"Customer {n}",
            "amount": n % 97 + (1 if changed and n % changed == 0 else 0),
        }
        for n in range(offset, offset + count)
    ]


async def test_a_spilled_run_finds_what_an_in_memory_run_finds() -> None:
    left = synthetic(6_000)
    right = synthetic(6_000, changed=50, offset=100)
    right.append(dict(right[0]))  # a duplicate on the right
    results = []
    for memory, partitions in ((100_000, 64), (2_000, 4), (300, 2)):  # the last splits again
        repairs: list[Repair] = []
        report = await reconcile(
            lambda: left,
            lambda: right,
            key="id",
            memory_records=memory,
            partitions=partitions,
            repair=repairs.append,
            spill_dir=None,
        )
        results.append((report.counts, report.field_differences, sorted(r.key for r in repairs)))
        assert report.spilled is (memory < 100_000)
    assert results[0] == results[1] == results[2]
    counts = results[0][0]
    assert counts["only_left"] == 100
    assert counts["only_right"] == 100
    assert counts["duplicate"] == 1
    assert counts["differs"] == sum(1 for n in range(101, 6_000) if n % 50 == 0)


async def test_the_spill_folder_is_removed_after_the_run(tmp_path: Path) -> None:
    await reconcile(
        lambda: synthetic(3_000),
        lambda: synthetic(3_000, changed=7),
        key="id",
        memory_records=500,
        spill_dir=tmp_path,
    )
    assert not any(tmp_path.iterdir())  # noqa: ASYNC240 - a tiny folder

    def failing() -> Any:
        yield from synthetic(2_000)
        raise ConnectionError("the database went away")

    with pytest.raises(ReconcileError, match="source 'failing': the database went away"):
        await reconcile(
            lambda: synthetic(3_000),
            callable_source(failing),
            key="id",
            memory_records=500,
            spill_dir=tmp_path,
        )
    assert not any(tmp_path.iterdir())  # noqa: ASYNC240 - spilled, failed, cleaned up


async def test_a_record_without_its_key_is_an_error_naming_side_source_and_record() -> None:
    right = [{"id": 1}, {"id": 2}, {"ident": 3}]
    with pytest.raises(ReconcileError, match=r"right source 'erp', record 3: no key field 'id'"):
        await reconcile(rows(LEFT), callable_source(rows(right), name="erp"), key="id")
    with pytest.raises(ReconcileError, match=r"left source 'left', record 2: the key is empty"):
        await reconcile(rows([{"id": 1}, {"id": None}]), rows([]), key="id")


async def test_map_and_filter_reshape_a_source_and_failures_name_the_record() -> None:
    crm = callable_source(
        lambda: [{"no": 1, "active": True}, {"no": 2, "active": False}, {"no": 3, "active": True}],
        name="crm",
    )
    shaped = crm.filter(lambda r: r["active"]).map(lambda r: {"id": r["no"]})
    report = await reconcile(shaped, rows([{"id": 1}, {"id": 3}]), key="id")
    assert report.consistent
    assert report.left.records == 2
    assert [r async for r in shaped] == [{"id": 1}, {"id": 3}]
    broken = crm.map(lambda r: {"id": 10 // (r["no"] - 2)})
    with pytest.raises(ReconcileError, match=r"source 'crm': map failed on record 2"):
        await reconcile(broken, rows([]), key="id")


async def test_file_sources_read_json_lines_csv_and_json_arrays(tmp_path: Path) -> None:
    lines = tmp_path / "crm.jsonl"
    lines.write_bytes(b'{"id": "1", "name": "Ada"}\n\n{"id": "2", "name": "Grace"}')  # no final \n
    table = tmp_path / "erp.csv"
    table.write_text("id;name\n1;Ada\n2;Grace Hopper\n3;Alan\n", encoding="utf-8")
    array = tmp_path / "dwh.json"
    array.write_text(json.dumps({"data": {"rows": [{"id": "1", "name": "Ada"}]}}))

    report = await reconcile(file_source(lines), file_source(table, delimiter=";"), key="id")
    assert report.counts["same"] == 1
    assert report.counts["differs"] == 1
    assert report.counts["only_right"] == 1
    assert report.left.source == f"crm (jsonl file {lines})"

    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps([{"id": "1", "name": "Ada"}, {"id": "2", "name": "Grace"}]))
    assert (await reconcile(file_source(plain), file_source(lines), key="id")).consistent
    nested = await reconcile(file_source(array, items="data.rows"), file_source(lines), key="id")
    assert nested.counts["only_right"] == 1


async def test_json_files_are_keyed_without_decoding_whole_records(tmp_path: Path) -> None:
    """JSON lines and arrays hand over each record's own text with its key: equal texts are
    the same record without a decode, and texts that differ only in field order, spacing or
    a trailing CR are still the same once decoded."""
    left, right = tmp_path / "left.jsonl", tmp_path / "right.jsonl"
    rows_left = [json.dumps({"id": f"K{n}", "v": n, "w": "x"}) for n in range(3_000)]
    rows_right = list(rows_left)
    rows_right[1] = json.dumps({"w": "x", "v": 1, "id": "K1"})  # another field order
    rows_right[2] = rows_right[2].replace(", ", ",   ") + "\r"  # other spacing, CRLF
    rows_right[3] = json.dumps({"id": "K3", "v": 33, "w": "x"})  # differs
    rows_right[4] = json.dumps({"id": "K4", "v": 4, "w": "x"}, indent=None) + "   "
    left.write_text("\n".join(rows_left) + "\n", encoding="utf-8")
    right.write_text("\n\n".join(rows_right) + "\n", encoding="utf-8")  # blank lines too
    array = tmp_path / "right.json"
    array.write_text("[" + ",".join(rows_right) + "]", encoding="utf-8")
    for other in (right, array):
        for memory in (100_000, 500):
            repairs: list[Repair] = []
            report = await reconcile(
                file_source(left),
                file_source(other),
                key="id",
                memory_records=memory,
                repair=repairs.append,
            )
            assert report.counts["same"] == 2_999, (other, memory)
            assert report.field_differences == {"v": 1}
            assert [(r.key, r.record) for r in repairs] == [("K3", {"id": "K3", "v": 3, "w": "x"})]
    # Against a source of another kind (dicts packed by the engine) the texts are decoded.
    mixed = await reconcile(file_source(left), lambda: [json.loads(r) for r in rows_left], key="id")
    assert mixed.consistent


async def test_a_json_record_without_a_usable_key_names_its_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"id": 1}\n{"id": 2}\n\n{"name": "no id"}\n')
    with pytest.raises(ReconcileError, match=r"line 4\): no usable key field 'id'.*missing"):
        await reconcile(file_source(bad), rows([]), key="id")
    listed = tmp_path / "listed.json"
    listed.write_text('[{"id": 1}, {"id": [2]}]')
    with pytest.raises(ReconcileError, match=r"listed.json, record 2\): no usable key field"):
        await reconcile(file_source(listed), rows([]), key="id")
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b'{"id": 1}\n{"id": null}\n')
    with pytest.raises(ReconcileError, match=r"left source 'empty', record 2: the key is empty"):
        await reconcile(file_source(empty), rows([]), key="id")


async def test_file_source_errors_name_the_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"id": 1}\n{"id": 2}\n{"id": 3,\n{"id": 4}\n')
    with pytest.raises(ReconcileError, match=rf"source 'bad' \({bad}, line 3\): invalid JSON"):
        await reconcile(file_source(bad), rows([]), key="id")
    missing = tmp_path / "missing.jsonl"
    with pytest.raises(ReconcileError, match=r"missing.jsonl\): cannot open: No such file"):
        await reconcile(file_source(missing), rows([]), key="id")
    not_array = tmp_path / "object.json"
    not_array.write_text('{"id": 1}')
    with pytest.raises(ReconcileError, match="not a JSON array of records"):
        await reconcile(file_source(not_array), rows([]), key="id")
    with pytest.raises(ValueError, match="say format="):
        file_source(tmp_path / "export.txt")


async def test_callable_sources_take_generators_async_generators_and_awaitables() -> None:
    def generator() -> Any:
        yield from ({"id": n} for n in range(5_000))

    async def stream() -> AsyncIterator[dict[str, int]]:
        for n in range(5_000):
            yield {"id": n}

    async def query() -> list[dict[str, int]]:
        return [{"id": n} for n in range(5_000)]

    for source in (generator, stream, query):
        report = await reconcile(callable_source(source, batch_size=700), rows([]), key="id")
        assert report.counts["only_left"] == 5_000
    with pytest.raises(ReconcileError, match="returned a int, not an iterable"):
        await reconcile(lambda: 42, rows([]), key="id")

    async def broken_stream() -> AsyncIterator[dict[str, int]]:
        for n in range(10):
            yield {"id": n}
        raise ConnectionResetError("cursor lost")

    with pytest.raises(ReconcileError, match=r"'broken_stream': cursor lost \(after 10 records\)"):
        await reconcile(callable_source(broken_stream, batch_size=4), rows([]), key="id")


def test_next_link_reads_rfc_8288_link_headers() -> None:
    assert next_link('<https://x/p?page=2>; rel="next", <https://x/p?page=9>; rel="last"') == (
        "https://x/p?page=2"
    )
    assert next_link('<https://x/p?page=1>; rel="prev first", </p?page=3>; rel=next') == (
        "/p?page=3"
    )
    assert next_link('<https://x/p?page=9>; rel="last"') is None
    assert next_link(None) is None


# -- in routes --------------------------------------------------------------------------------
async def _served(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


def _api(customers: list[dict[str, Any]], seen: list[str]) -> web.Application:
    """/link pages by Link headers (2 a page), /paged by ?page=&size= with the list under
    "data"; both check the bearer token."""

    def authorised(request: web.Request) -> None:
        seen.append(request.path_qs)
        if request.headers.get("authorization") != "Bearer t0ken":
            raise web.HTTPUnauthorized()

    async def link(request: web.Request) -> web.Response:
        authorised(request)
        page = int(request.query.get("page", "1"))
        chunk = customers[(page - 1) * 2 : page * 2]
        headers = (
            {"Link": f'</link?page={page + 1}>; rel="next"'} if page * 2 < len(customers) else {}
        )
        return web.json_response(chunk, headers=headers)

    async def paged(request: web.Request) -> web.Response:
        authorised(request)
        page, size = int(request.query["page"]), int(request.query["size"])
        return web.json_response({"data": customers[(page - 1) * size : page * size]})

    async def broken(request: web.Request) -> web.Response:
        authorised(request)
        if request.query.get("page") == "2":
            return web.json_response({"error": "db down"}, status=500)
        return web.json_response({"data": customers[:2]})

    app = web.Application()
    app.router.add_get("/link", link)
    app.router.add_get("/paged", paged)
    app.router.add_get("/broken", broken)
    return app


CUSTOMERS = [{"id": n, "name": f"c{n}"} for n in range(1, 8)]


class Check(RouteBuilder):
    def __init__(self, url: str, **options: Any) -> None:
        super().__init__()
        self.url, self.options = url, options

    def configure(self) -> None:
        client = f"{self.url}/link?auth=bearer&secret=t0ken"
        (
            self.from_("direct:check")
            .route_id("crm-erp-check")
            .reconcile(
                http_source(client, name="crm"),
                http_source(
                    f"{self.url}/paged?auth=bearer&secret=t0ken",
                    items="data",
                    page_param="page",
                    size_param="size",
                    page_size=3,
                    name="erp",
                ),
                key="id",
                **self.options,
            )
            .to("mock:reports")
        )
        (self.from_("direct:fix").route_id("fix").process(refuse_seven).to("mock:fixed"))


def refuse_seven(exchange: Any) -> None:
    if exchange.headers[RECONCILE_KEY] == 7:
        raise ValueError("customer 7 is locked")


async def test_http_sources_page_through_link_headers_and_page_numbers() -> None:
    seen: list[str] = []
    runner, url = await _served(_api(CUSTOMERS, seen))
    try:
        context = Context()
        context.add_routes(Check(url))
        async with context:
            exchange = await context.template().send("direct:check")
            assert exchange.exception is None, exchange.exception
            report = exchange.body
    finally:
        await runner.cleanup()
    assert isinstance(report, ReconcileReport)
    assert report.consistent
    assert (report.left.records, report.right.records) == (7, 7)
    assert [p for p in seen if p.startswith("/link")] == [
        "/link",
        "/link?page=2",
        "/link?page=3",
        "/link?page=4",
    ]
    # Pages of 3 until a short one: 3 + 3 + 1.
    assert [p for p in seen if p.startswith("/paged")] == [
        "/paged?page=1&size=3",
        "/paged?page=2&size=3",
        "/paged?page=3&size=3",
    ]
    assert context.mock("reports").received_bodies == [report]


async def test_a_failed_page_fails_the_step_naming_the_source_and_page() -> None:
    seen: list[str] = []
    runner, url = await _served(_api(CUSTOMERS, seen))

    class Broken(RouteBuilder):
        def configure(self) -> None:
            (
                self.from_("direct:check")
                .route_id("broken-check")
                .reconcile(
                    http_source(f"{url}/link?auth=bearer&secret=t0ken"),
                    http_source(
                        f"{url}/broken?auth=bearer&secret=t0ken",
                        name="erp",
                        items="data",
                        page_param="page",
                    ),
                    key="id",
                )
            )

    try:
        context = Context(metrics=True)
        context.add_routes(Broken())
        async with context:
            exchange = await context.template().send("direct:check")
            text = context.metrics.render()[0].decode() if context.metrics else ""
    finally:
        await runner.cleanup()
    assert isinstance(exchange.exception, ReconcileError)
    assert "source 'erp': page 2 failed" in str(exchange.exception)
    assert "500" in str(exchange.exception)
    assert 'eip_reconcile_runs_failed_total{reconcile="broken-check"} 1.0' in text


async def test_repairs_go_into_a_route_and_the_report_to_a_file_and_metrics(
    tmp_path: Path,
) -> None:
    seen: list[str] = []
    right = [dict(c) for c in CUSTOMERS if c["id"] not in (5, 7)]
    right[0]["name"] = "renamed"  # id 1 differs
    right.append({"id": 99, "name": "only in the ERP"})
    runner, url = await _served(_api(CUSTOMERS, seen))
    erp_runner, erp_url = await _served(_api(right, []))
    report_file = tmp_path / "reports" / "crm-erp.json"

    class Healing(Check):
        def configure(self) -> None:
            (
                self.from_("direct:check")
                .route_id("crm-erp-check")
                .reconcile(
                    http_source(f"{url}/link?auth=bearer&secret=t0ken", name="crm"),
                    http_source(
                        f"{erp_url}/paged?auth=bearer&secret=t0ken",
                        items="data",
                        page_param="page",
                        size_param="size",
                        page_size=50,
                        name="erp",
                    ),
                    key="id",
                    report=report_file,
                    repair_to="direct:fix",
                    repair=["differs", "only_left", "only_right"],
                    samples=1,
                )
            )
            self.from_("direct:fix").route_id("fix").process(refuse_seven).to("mock:fixed")

    try:
        context = Context(metrics=True)
        context.add_routes(Healing(url))
        async with context:
            exchange = await context.template().send("direct:check")
            assert exchange.exception is None, exchange.exception
            text = context.metrics.render()[0].decode() if context.metrics else ""
            fixed = context.mock("fixed")
            bodies, headers = fixed.received_bodies, fixed.received_headers
    finally:
        await runner.cleanup()
        await erp_runner.cleanup()
    report: ReconcileReport = exchange.body
    assert report.counts == {
        "same": 4,
        "differs": 1,
        "only_left": 2,
        "only_right": 1,
        "duplicate": 0,
    }
    got = sorted((h[RECONCILE_VERDICT], h[RECONCILE_KEY], h[RECONCILE_FIELDS]) for h in headers)
    assert got == [("differs", 1, ["name"]), ("only_left", 5, []), ("only_right", 99, [])]
    assert {h[RECONCILE_NAME] for h in headers} == {"crm-erp-check"}
    assert {"id": 5, "name": "c5"} in bodies  # the left record, for the ERP to create
    assert {"id": 99, "name": "only in the ERP"} in bodies  # only_right: the right record
    # The repair of 7 failed in the repair route: counted and reported, the check succeeded.
    assert (report.repairs.sent, report.repairs.failed) == (3, 1)
    assert report.repairs.endpoint == "direct:fix"
    assert "only_left 7: customer 7 is locked" in report.repairs.errors[0]
    assert all(len(kept) <= 1 for kept in report.samples.values())

    written = json.loads(report_file.read_bytes())
    assert written["counts"] == report.counts
    assert written["consistency"] == report.consistency == 0.5
    assert written["name"] == "crm-erp-check"
    assert not list(report_file.parent.glob(".*.tmp"))

    name = 'reconcile="crm-erp-check"'
    assert f"eip_reconcile_runs_total{{{name}}} 1.0" in text
    assert f"eip_reconcile_consistency_ratio{{{name}}} {0.5}" in text
    assert f'eip_reconcile_keys{{{name},verdict="differs"}} 1.0' in text
    assert f'eip_reconcile_keys{{{name},verdict="only_left"}} 2.0' in text
    assert f'eip_reconcile_records{{{name},side="left"}} 7.0' in text
    assert f'eip_reconcile_field_differences{{field="name",{name}}} 1.0' in text
    assert f'eip_reconcile_repairs_total{{outcome="failed",{name}}} 1.0' in text
    assert f'eip_reconcile_repairs_total{{outcome="sent",{name}}} 3.0' in text


async def test_max_repairs_bounds_what_one_run_sends() -> None:
    sent: list[Repair] = []
    report = await reconcile(
        lambda: synthetic(100), rows([]), key="id", repair=sent.append, max_repairs=10
    )
    assert len(sent) == 10
    assert (report.repairs.sent, report.repairs.skipped) == (10, 90)


async def test_repairs_run_concurrently_when_asked() -> None:
    import asyncio

    running = peak = 0

    async def slow(repair: Repair) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1

    report = await reconcile(
        lambda: synthetic(40), rows([]), key="id", repair=slow, repair_concurrency=8
    )
    assert report.repairs.sent == 40
    assert peak == 8
    bounded = await reconcile(
        lambda: synthetic(40),
        rows([]),
        key="id",
        repair=slow,
        repair_concurrency=8,
        max_repairs=20,
    )
    assert (bounded.repairs.sent, bounded.repairs.skipped) == (20, 20)


async def test_invalid_options_fail_the_route_at_start_naming_the_step() -> None:
    class Wrong(RouteBuilder):
        def configure(self) -> None:
            (
                self.from_("direct:check")
                .route_id("wrong")
                .reconcile(rows([]), rows([]), key="id", repair=["same"])
            )

    context = Context()
    context.add_routes(Wrong())
    with pytest.raises(
        RouteDefinitionError, match=r"route 'wrong', step 1.*cannot repair \['same'\]"
    ):
        await context.start()
    await context.stop()


def test_the_step_describes_itself_for_route_listings() -> None:
    class Listed(RouteBuilder):
        def configure(self) -> None:
            (
                self.from_("direct:check")
                .route_id("listed")
                .reconcile(
                    callable_source(rows([]), name="crm"),
                    http_source("http://erp.example/api/customers"),
                    key="customer_number",
                    repair_to="direct:erp-upsert",
                )
            )

    [model] = Listed().build()
    assert model.steps[0].describe() == (
        "reconcile(crm vs customers, key='customer_number', repair_to=direct:erp-upsert)"
    )


async def test_an_unbound_http_source_says_it_belongs_in_a_route() -> None:
    with pytest.raises(ReconcileError, match="read by a route's reconcile step"):
        await reconcile(http_source("http://erp.example/api"), rows([]), key="id")
