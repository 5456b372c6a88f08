"""The audit trail of routes: one record per exchange, its outcome, key, principal, endpoints
and chosen fields, durable before the exchange completes (real SQLite files, a real HTTP
server)."""

from __future__ import annotations

import asyncio
import base64
import sqlite3
import sys
import textwrap
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

import eip.audit
from eip import (
    Context,
    Exchange,
    RedeliveryPolicy,
    RouteBuilder,
    RouteDefinitionError,
    body,
    dead_letter_channel,
    header,
    pipeline,
)
from eip.audit import AuditQuery, AuditRecord, SqliteAuditStore, configure_audit, open_store
from eip.audit.hook import Recorder
from eip.audit.record import entry
from eip.audit.trail import TRAIL
from eip.audit.writer import AuditWriter
from eip.config import Config, ConfigError
from eip.errors import LifecycleError
from eip.stores.base import StoreError
from tests.cli_support import ROOT


class Customer(msgspec.Struct):
    id: int
    status: str
    email: str


async def read(store_uri: str, **query: Any) -> list[AuditRecord]:
    store = open_store(store_uri, create=False)
    await store.start()
    try:
        return await store.query(AuditQuery(**query))
    finally:
        await store.stop()


def fail(exchange: Exchange) -> None:
    raise ValueError(f"customer {exchange.body} refused")


def test_the_audit_api_is_pinned() -> None:
    assert eip.audit.__all__ == [
        "AuditQuery",
        "AuditRecord",
        "AuditSettings",
        "AuditSpec",
        "AuditStore",
        "Break",
        "JsonLinesAuditStore",
        "PostgresAuditStore",
        "SqliteAuditStore",
        "VerifyReport",
        "configure_audit",
        "open_store",
    ]
    for name in eip.audit.__all__:
        assert getattr(eip.audit, name) is not None


async def test_each_outcome_is_recorded_with_its_endpoints_and_error_type(tmp_path: Path) -> None:
    store = f"sqlite:{tmp_path / 'audit.db'}"

    class Routes(RouteBuilder):
        def configure(self) -> None:
            (
                self.from_("direct:orders")
                .route_id("orders")
                .audit(key=header("customer_id"), store=store)
                .filter(lambda ex: ex.body != "skip")
                .to("mock:erp")
                .process(lambda ex: fail(ex) if ex.body == "bad" else None)
                .to("mock:done")
            )
            (
                self.from_("direct:dlc")
                .route_id("dlc")
                .audit(key=header("customer_id"), store=store)
                .error_handler(dead_letter_channel("mock:dead"))
                .to("mock:erp")
                .process(fail)
            )
            self.on_exception(KeyError).handled(True).to("mock:handled")
            (
                self.from_("direct:clause")
                .route_id("clause")
                .audit(store=store)
                .process(lambda ex: ex.body["missing"])
            )

    context = Context()
    context.add_routes(Routes())
    async with context:
        template = context.template()
        sent = {}
        for name, uri, payload in [
            ("completed", "direct:orders", "ok"),
            ("filtered", "direct:orders", "skip"),
            ("failed", "direct:orders", "bad"),
            ("dead-lettered", "direct:dlc", "bad"),
            ("handled", "direct:clause", {}),
        ]:
            exchange = await template.send(uri, payload, headers={"customer_id": 4711})
            sent[name] = exchange
        assert sent["failed"].exception is not None
        assert sent["dead-lettered"].exception is None  # the dead letter channel took it
        assert context.mock("dead").count == 1
        for exchange in sent.values():
            assert TRAIL not in exchange.properties  # the trail goes with the route

    records = await read(store)
    assert [(r.route, r.outcome) for r in records] == [
        ("orders", "completed"),
        ("orders", "filtered"),
        ("orders", "failed"),
        ("dlc", "dead-lettered"),
        ("clause", "handled"),
    ]
    by_outcome = {r.outcome: r for r in records}
    assert by_outcome["completed"].endpoints == ["mock:erp", "mock:done"]
    assert by_outcome["filtered"].endpoints == []
    assert by_outcome["failed"].endpoints == ["mock:erp"]
    assert by_outcome["failed"].error == "builtins.ValueError"
    assert by_outcome["dead-lettered"].endpoints == ["mock:erp", "mock:dead"]
    assert by_outcome["dead-lettered"].error == "builtins.ValueError"
    assert by_outcome["handled"].error == "builtins.KeyError"
    assert by_outcome["handled"].endpoints == ["mock:handled"]
    for name, record in by_outcome.items():
        assert record.exchange == sent[name].id
        assert record.principal == f"direct:{record.route}"  # no caller named: the source
        assert record.fields is None  # no body unless chosen
    assert {r.key for r in records if r.route != "clause"} == {"4711"}
    assert [r.seq for r in records] == [1, 2, 3, 4, 5]
    # No message text in the record: error messages may quote personal data.
    assert all("refused" not in msgspec.json.encode(r).decode() for r in records)


async def test_chosen_body_fields_are_kept_from_structs_dicts_and_json_bytes(
    tmp_path: Path,
) -> None:
    store = f"sqlite:{tmp_path / 'audit.db'}"

    class Routes(RouteBuilder):
        def configure(self) -> None:
            (
                self.from_("direct:fields")
                .route_id("fields")
                .audit(key=body("id"), fields=["id", "status", "address.city"], store=store)
                .to("mock:out")
            )

    context = Context()
    context.add_routes(Routes())
    async with context:
        template = context.template()
        await template.send("direct:fields", Customer(1, "active", "a@example.com"))
        await template.send(
            "direct:fields", {"id": 2, "status": "gone", "address": {"city": "Bonn"}}
        )
        await template.send("direct:fields", b'{"id": 3, "status": "new", "email": "c@x"}')
        await template.send("direct:fields", b"not json")

    records = await read(store)
    assert [r.fields for r in records] == [
        {"id": 1, "status": "active", "address.city": None},
        {"id": 2, "status": "gone", "address.city": "Bonn"},
        {"id": 3, "status": "new", "address.city": None},
        {"id": None, "status": None, "address.city": None},
    ]
    assert [r.key for r in records] == ["1", "2", None, None]  # body("id") of bytes is None
    assert all("@" not in msgspec.json.encode(r).decode() for r in records)  # no e-mail kept


async def test_the_principal_is_the_authenticated_http_caller_else_the_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = f"sqlite:{tmp_path / 'audit.db'}"
    monkeypatch.setenv("AUDIT_TEST_USERS", "alice:wonderland,bob:builder")
    monkeypatch.setenv("AUDIT_TEST_KEYS", "key-1")

    class Routes(RouteBuilder):
        def configure(self) -> None:
            (
                self.from_("http:/audit/basic?auth=basic&credentials_env=AUDIT_TEST_USERS")
                .route_id("basic")
                .audit(key=header("x-customer"), store=store)
                .set_body("ok")
            )
            (
                self.from_("http:/audit/key?auth=api_key&credentials_env=AUDIT_TEST_KEYS")
                .route_id("keyed")
                .audit(store=store)
                .set_body("ok")
            )

    context = Context(shutdown_timeout=5)
    context.component("http").configure(port=0, host="127.0.0.1")  # type: ignore[attr-defined]
    context.add_routes(Routes())
    async with context, httpx.AsyncClient(timeout=10) as client:
        base = str(context.component("http").server.base_url)  # type: ignore[attr-defined]
        basic = "Basic " + base64.b64encode(b"bob:builder").decode()
        answer = await client.post(
            f"{base}/audit/basic",
            content=b"{}",
            headers={"authorization": basic, "x-customer": "4711"},
        )
        assert answer.status_code == 200
        denied = await client.post(f"{base}/audit/basic", content=b"{}")
        assert denied.status_code == 401  # never reached the route: no record
        keyed = await client.post(
            f"{base}/audit/key", content=b"{}", headers={"x-api-key": "key-1"}
        )
        assert keyed.status_code == 200

    records = await read(store)
    assert [(r.route, r.principal, r.key, r.outcome) for r in records] == [
        ("basic", "bob", "4711", "completed"),
        ("keyed", "http:/audit/key", None, "completed"),  # an API key names nobody
    ]


async def test_an_exchange_completes_only_after_its_record_is_committed(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    seen_at_completion: list[int] = []

    def count_rows(exchange: Exchange) -> None:
        with sqlite3.connect(path) as other:  # another connection: sees committed rows only
            seen_at_completion.append(
                other.execute("SELECT count(*) FROM eip_audit_records").fetchone()[0]
            )

    class Routes(RouteBuilder):
        def configure(self) -> None:
            (
                self.from_("direct:durable")
                .route_id("durable")
                .audit(store=f"sqlite:{path}")
                .process(lambda ex: ex.on_completion(count_rows, count_rows))
                .to("mock:out")
            )

    context = Context()
    context.add_routes(Routes())
    async with context:
        route = context.routes["durable"]
        exchange = Exchange("one")
        pending = route.dispatch(exchange)
        assert pending is not None  # a sync route waits for its commit when audited
        assert seen_at_completion == []
        await pending
        done = exchange.done()
        if done is not None:
            await done
        results = await asyncio.gather(
            *(context.template().send("direct:durable", n) for n in range(50))
        )
    assert all(r.exception is None for r in results)
    assert seen_at_completion[0] == 1
    # Every exchange saw its own record (and those of the batch it shared a commit with).
    assert len(seen_at_completion) == 51
    assert sorted(seen_at_completion)[1] >= 2


async def test_concurrent_exchanges_share_commits(tmp_path: Path) -> None:
    class Routes(RouteBuilder):
        def configure(self) -> None:
            self.from_("direct:many").route_id("many").audit(store=f"sqlite:{tmp_path / 'a.db'}")

    context = Context()
    context.add_routes(Routes())
    async with context:
        writer = context.routes["many"].services[0]
        assert isinstance(writer, AuditWriter)
        template = context.template()
        results = await asyncio.gather(*(template.send("direct:many", n) for n in range(300)))
        assert all(r.exception is None for r in results)
        assert writer.records == 300
        assert writer.batches < 30  # group commit: many records per transaction
    assert len(await read(f"sqlite:{tmp_path / 'a.db'}", limit=None)) == 300


async def test_a_cancelled_waiter_does_not_cancel_the_commit_of_the_others(
    tmp_path: Path,
) -> None:
    class Routes(RouteBuilder):
        def configure(self) -> None:
            self.from_("direct:shared").route_id("shared").audit(
                store=f"sqlite:{tmp_path / 'a.db'}"
            )

    context = Context()
    context.add_routes(Routes())
    async with context:
        dispatch = context.routes["shared"].dispatch
        first, second = Exchange("first"), Exchange("second")
        pending = [dispatch(first), dispatch(second)]
        assert pending[0] is pending[1]  # one commit for the batch, nothing per exchange
        cancelled = asyncio.create_task(_wait(pending[0]))
        kept = asyncio.create_task(_wait(pending[1]))
        await asyncio.sleep(0)
        cancelled.cancel()
        assert await kept == "committed"
        with pytest.raises(asyncio.CancelledError):
            await cancelled  # once the commit is done, not before
    assert [r.exchange for r in await read(f"sqlite:{tmp_path / 'a.db'}")] == [
        first.id,
        second.id,
    ]


async def _wait(pending: Any) -> str:
    await pending
    return "committed"


async def test_a_route_removed_and_added_again_goes_on_with_the_chain(tmp_path: Path) -> None:
    store = f"sqlite:{tmp_path / 'audit.db'}"

    class Routes(RouteBuilder):
        def configure(self) -> None:
            self.from_("direct:again").route_id("again").audit(store=store).to("mock:x")

    context = Context()
    context.add_routes(Routes())
    async with context:
        await context.template().send("direct:again", 1)
        model = context.routes["again"].model
        await context.remove_route("again")  # its writer stops: it wrote what it had
        await context.add_route(model)  # the same writer starts again
        await context.template().send("direct:again", 2)
    records = await read(store)
    assert [(r.seq, r.outcome) for r in records] == [(1, "completed"), (2, "completed")]
    assert records[1].prev == records[0].hash


CRASH_SCRIPT = """
import asyncio, os, sys
from eip import Context, RouteBuilder, header

class Routes(RouteBuilder):
    def configure(self):
        (self.from_("direct:crash").route_id("crash")
             .audit(key=header("id"), store="sqlite:" + sys.argv[1])
             .process(lambda ex: ex.on_completion(lambda done: os._exit(3))))

async def main():
    context = Context()
    context.add_routes(Routes())
    await context.start()
    await context.template().send("direct:crash", "x", headers={"id": "c-1"})

asyncio.run(main())
"""


async def test_a_process_killed_as_the_exchange_completes_keeps_its_record(
    tmp_path: Path,
) -> None:
    """The unit of work runs only after the commit: a process that dies right there (before
    an ack could go out) has the record on disk."""
    path = tmp_path / "audit.db"
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        textwrap.dedent(CRASH_SCRIPT),
        str(path),
        cwd=ROOT,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(child.communicate(), 60)
    assert child.returncode == 3, stderr.decode()
    records = await read(f"sqlite:{path}")
    assert [(r.route, r.key, r.outcome) for r in records] == [("crash", "c-1", "completed")]
    store = open_store(f"sqlite:{path}", create=False)
    await store.start()
    try:
        assert (await store.verify()).ok
    finally:
        await store.stop()


async def test_a_store_that_cannot_write_fails_the_exchange(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"

    class Routes(RouteBuilder):
        def configure(self) -> None:
            self.from_("direct:lost").route_id("lost").audit(store=f"sqlite:{path}").to("mock:x")

    context = Context()
    context.add_routes(Routes())
    async with context:
        template = context.template()
        assert (await template.send("direct:lost", "first")).exception is None
        with sqlite3.connect(path) as other:
            other.execute("DROP TABLE eip_audit")  # a real fault: the table is gone
        failed = await template.send("direct:lost", "second")
        assert isinstance(failed.exception, StoreError)
        assert "no such table" in str(failed.exception)
        assert context.mock("x").count == 2  # it was routed, but it must not complete


async def test_a_sub_route_that_audits_keeps_its_own_record(tmp_path: Path) -> None:
    store = f"sqlite:{tmp_path / 'audit.db'}"

    class Routes(RouteBuilder):
        def configure(self) -> None:
            (
                self.from_("direct:parent")
                .route_id("parent")
                .audit(store=store)
                .to("direct:child")
                .to("mock:after")
            )
            (
                self.from_("direct:child")
                .route_id("child")
                .audit(store=store)
                .filter(lambda ex: False)
                .to("mock:never")
            )

    context = Context()
    context.add_routes(Routes())
    async with context:
        await context.template().send("direct:parent", "x")
    records = await read(store)
    assert [(r.route, r.outcome, r.endpoints) for r in records] == [
        ("child", "filtered", []),
        ("parent", "completed", ["direct:child", "mock:after"]),
    ]
    assert records[0].exchange == records[1].exchange
    assert [r.principal for r in records] == ["direct:child", "direct:parent"]


async def test_a_redelivered_send_is_listed_once(tmp_path: Path) -> None:
    store = f"sqlite:{tmp_path / 'audit.db'}"
    policy = RedeliveryPolicy(max_redeliveries=3, delay=0)

    class Routes(RouteBuilder):
        def configure(self) -> None:
            self.error_handler(dead_letter_channel("mock:dead", redelivery=policy))
            (
                self.from_("direct:flaky")
                .route_id("flaky")
                .audit(store=store)
                .to("mock:first")
                .to("mock:flaky")
                .to("mock:flaky")  # a second send of the route's own: listed once too
            )

    context = Context()
    context.add_routes(Routes())
    async with context:
        context.mock("flaky").fail_times(2, lambda: ConnectionError("not yet"))
        assert (await context.template().send("direct:flaky", "x")).exception is None
        assert context.mock("flaky").count == 4  # 2 failed + 1 delivered, then the second step
    (record,) = await read(store)
    assert (record.outcome, record.endpoints) == ("completed", ["mock:first", "mock:flaky"])


async def test_the_parts_of_a_split_leave_one_entry_per_endpoint(tmp_path: Path) -> None:
    store = f"sqlite:{tmp_path / 'audit.db'}"

    class Routes(RouteBuilder):
        def configure(self) -> None:
            (
                self.from_("direct:batch")
                .route_id("batch")
                .audit(store=store)
                .split(body(), pipeline().to("mock:part").to("mock:copy"))
                .to("mock:done")
            )

    context = Context()
    context.add_routes(Routes())
    async with context:
        await context.template().send("direct:batch", list(range(500)))
        assert context.mock("part").count == 500
    (record,) = await read(store)
    assert record.endpoints == ["mock:part", "mock:copy", "mock:done"]  # once each, in order


async def test_the_config_audits_the_routes_it_names(tmp_path: Path) -> None:
    store = f"sqlite:{tmp_path / 'audit.db'}"

    class Routes(RouteBuilder):
        def configure(self) -> None:
            self.from_("direct:crm-a").route_id("crm-a").to("mock:a")
            self.from_("direct:erp-b").route_id("erp-b").to("mock:b")
            self.from_("direct:own").route_id("own").audit(fields=["id"]).to("mock:c")

    config = Config(
        {"audit": {"routes": "crm-*", "store": store, "key": "header:cid", "table": "trail"}}
    )
    context = Context()
    settings = configure_audit(context, config)
    assert settings is not None
    assert settings.routes == ("crm-*",)
    context.add_routes(Routes())
    async with context:
        template = context.template()
        for uri in ("direct:crm-a", "direct:erp-b", "direct:own"):
            await template.send(uri, {"id": 7}, headers={"cid": "c-9"})
    store_ = SqliteAuditStore(tmp_path / "audit.db", table="trail", create=False)
    await store_.start()
    try:
        records = await store_.query(AuditQuery())
    finally:
        await store_.stop()
    # crm-a by the pattern (with the config's key); own by its .audit() (config's store).
    assert [(r.route, r.key, r.fields) for r in records] == [
        ("crm-a", "c-9", None),
        ("own", None, {"id": 7}),
    ]


def test_the_config_names_what_is_wrong() -> None:
    for table, expected in [
        ({"stores": "x"}, "unknown audit setting 'stores'"),
        ({"key": "cookie:x"}, "write header:NAME, body:PATH or property:NAME"),
        ({"fields": "id,,a..b"}, "invalid body field path 'a..b'"),
        ({"fsync": "maybe"}, "fsync is true or false"),
    ]:
        with pytest.raises(ConfigError, match=expected):
            configure_audit(Context(), Config({"audit": table}, source="eip.toml"))
    assert configure_audit(Context(), Config({})) is None


class BadAudit(RouteBuilder):
    def __init__(self, store: str) -> None:
        super().__init__()
        self.store = store

    def configure(self) -> None:
        self.from_("direct:bad").route_id("bad").audit(store=self.store, table="t").to("mock:x")


class BadField(RouteBuilder):
    def configure(self) -> None:
        self.from_("direct:bad").route_id("bad").audit(fields=["a."])


@pytest.mark.parametrize(
    ("store", "expected"),
    [
        ("nosuch:x.db", "write sqlite:PATH, jsonl:PATH or postgresql"),
        ("jsonl:a.jsonl", "option 'table' does not apply to jsonl stores"),
    ],
)
def test_invalid_audit_settings_fail_at_compile_naming_the_route(store: str, expected: str) -> None:
    context = Context()
    context.add_routes(BadAudit(store))
    with pytest.raises(RouteDefinitionError, match=expected) as caught:
        context.validate()
    assert caught.value.route_id == "bad"
    assert caught.value.step == "audit"


def test_an_invalid_field_path_fails_where_the_route_is_declared() -> None:
    with pytest.raises(RouteDefinitionError, match=r"invalid body field path 'a\.'"):
        Context().add_routes(BadField())


async def test_routes_without_an_audit_are_compiled_as_before() -> None:
    class Routes(RouteBuilder):
        def configure(self) -> None:
            self.from_("direct:plain").route_id("plain").filter(lambda ex: True).to("mock:x")

    context = Context()
    context.add_routes(Routes())
    async with context:
        route = context.routes["plain"]
        assert not isinstance(getattr(route.dispatch, "__self__", None), Recorder)  # no wrapper
        assert route.services == []
        assert route.dispatch(Exchange("x")) is None  # still completes synchronously
        assert "_at = ex.properties" not in route.pipeline.run.eip_source  # type: ignore[attr-defined]


async def test_a_stopped_writer_refuses_records(tmp_path: Path) -> None:
    writer = AuditWriter(open_store(f"sqlite:{tmp_path / 'a.db'}"))
    await writer.start()
    await writer.append(entry("r", "x-1", "completed"))
    await writer.stop()
    with pytest.raises(LifecycleError, match="not started: no record of exchange x-2 of route r"):
        await writer.append(entry("r", "x-2", "completed"))
    assert [r.exchange for r in await read(f"sqlite:{tmp_path / 'a.db'}")] == ["x-1"]


async def test_an_exchange_leaves_the_audited_route_with_the_properties_it_came_with(
    tmp_path: Path,
) -> None:
    """The trail goes when the route ends: an exchange that came without properties has none
    again (a consumer's clean-success path looks at that), one with its own keeps them."""

    class Routes(RouteBuilder):
        def configure(self) -> None:
            self.from_("direct:p").route_id("p").audit(store=f"sqlite:{tmp_path / 'a.db'}").to(
                "mock:out"
            )

    context = Context()
    context.add_routes(Routes())
    async with context:
        route = context.routes["p"]
        bare, own = Exchange("bare"), Exchange("own")
        own.properties["mine"] = 1
        for exchange in (bare, own):
            pending = route.dispatch(exchange)
            assert pending is not None
            await pending
        assert bare._properties is None
        assert own._properties == {"mine": 1}
    records = await read(f"sqlite:{tmp_path / 'a.db'}", limit=None)
    assert [r.endpoints for r in records] == [["mock:out"], ["mock:out"]]
