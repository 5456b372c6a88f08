"""The hash chain: ``verify`` names the first record that was edited, deleted or reordered, in
each store (real SQLite and JSON Lines files, PostgreSQL db ``test`` with unique tables), and
``query`` filters as ``eip audit show`` asks."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import re
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import msgspec
import pytest
from pytest_asyncio import fixture as async_fixture

from eip import Context, RouteBuilder, header
from eip.audit import (
    AuditQuery,
    AuditStore,
    JsonLinesAuditStore,
    PostgresAuditStore,
    SqliteAuditStore,
    open_store,
)
from eip.audit.record import GENESIS, Entry, content_of, format_time, line_of
from eip.audit.record import entry as make_entry
from eip.stores.base import StoreError
from tests.stores.backends import PG_DSN


def entry(n: int, route: str = "crm", key: str | None = None, outcome: str = "completed") -> Entry:
    return make_entry(
        route,
        f"ex-{n}",
        outcome,
        endpoints=["mock:erp"],
        key=key,
        principal="alice",
        message_id=f"msg-{n}",
    )


async def started(store: AuditStore) -> AuditStore:
    await store.start()
    return store


async def write(store: AuditStore, *batches: list[Entry]) -> None:
    for batch in batches:
        await store.append(batch)


# -- SQLite ---------------------------------------------------------------------------------
async def sqlite_with_five(tmp_path: Path) -> tuple[SqliteAuditStore, Path]:
    """Two batches, so two rows: records 1..2 and 3..5; record 3 has a key."""
    path = tmp_path / "audit.db"
    store = SqliteAuditStore(path)
    await store.start()
    await write(store, [entry(1), entry(2)], [entry(3, key="4711"), entry(4), entry(5)])
    return store, path


def rewrite_batch(path: Path, last: int, change: Callable[[list[bytes]], list[bytes]]) -> None:
    """Edit the records of one batch row as a tamperer with a text editor would."""
    with sqlite3.connect(path) as db:
        (text,) = db.execute("SELECT records FROM eip_audit WHERE last = ?", (last,)).fetchone()
        records = [bytes(raw) for raw in msgspec.json.decode(text, type=list[msgspec.Raw])]
        edited = b"[" + b",".join(change(records)) + b"]"
        db.execute("UPDATE eip_audit SET records = ? WHERE last = ?", (edited.decode(), last))


async def test_sqlite_chain_links_each_record_to_the_one_before(tmp_path: Path) -> None:
    store, path = await sqlite_with_five(tmp_path)
    try:
        records = await store.query(AuditQuery())
        report = await store.verify()
    finally:
        await store.stop()
    assert [r.seq for r in records] == [1, 2, 3, 4, 5]
    assert records[0].prev == GENESIS
    for before, after in itertools.pairwise(records):
        assert after.prev == before.hash
    for record in records:  # the hash is the SHA-256 of the canonical content
        assert hashlib.sha256(content_of(record)).hexdigest() == record.hash
        canonical = json.dumps(
            json.loads(content_of(record)),
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
        )
        assert canonical.encode() == content_of(record)  # what any JSON tool makes of it
    assert report.ok
    assert report.records == 5
    assert report.heads == {"main": (5, records[-1].hash)}
    with sqlite3.connect(path) as db:  # plain SQL: a row per batch, a view row per record
        assert db.execute("SELECT first, last FROM eip_audit ORDER BY last").fetchall() == [
            (1, 2),
            (3, 5),
        ]
        view = "SELECT seq, key, outcome, exchange FROM eip_audit_records WHERE key = '4711'"
        assert db.execute(view).fetchall() == [(3, "4711", "completed", "ex-3")]
        assert db.execute("SELECT key, seq FROM eip_audit_keys").fetchall() == [("4711", 3)]


def _swap_3_and_4(records: list[bytes]) -> list[bytes]:
    return [records[1], records[0], *records[2:]]


def _fail_3(records: list[bytes]) -> list[bytes]:
    return [records[0].replace(b'"completed"', b'"failed"'), *records[1:]]


@pytest.mark.parametrize(
    ("tamper", "expected"),
    [
        (
            _fail_3,
            "chain main, record 3 \\(exchange ex-3, route crm, .*\\): its content does not "
            "match its hash \\(edited\\)",
        ),
        (
            "DELETE FROM eip_audit WHERE last = 2",
            "records 1..2 of chain main are missing before record 3 \\(exchange ex-3.*\\) "
            "\\(deleted or moved\\)",
        ),
        (
            "DELETE FROM eip_audit WHERE last = 5",
            "chain main: records 3..5 are missing at the end \\(deleted; the chain head says 5, "
            "the last record is 2\\)",
        ),
        (
            _swap_3_and_4,
            "record 3 of chain main is missing before record 4 \\(exchange ex-4.*\\) "
            "\\(deleted or moved\\)",
        ),
        (
            "UPDATE eip_audit SET first = 4 WHERE last = 5",
            "batch row 4..5 holds records 3..5 \\(its first or last was edited\\)",
        ),
        (
            "UPDATE eip_audit SET time = '2020-01-01T00:00:00.000000Z' WHERE last = 5",
            "chain main, record 3 \\(.*\\): its batch row's time column says "
            "'2020-01-01T00:00:00.000000Z' but the sealed record says '.*' \\(edited\\)",
        ),
        (
            "DELETE FROM eip_audit_keys WHERE seq = 3",
            "chain main, record 3 \\(.*\\) has key '4711', but the key index does not list it "
            "under that key \\(edited\\)",
        ),
        (
            "INSERT INTO eip_audit_keys VALUES ('4711', 2)",
            "the key index lists record 2 under key '4711', which that record does not have "
            "\\(edited\\)",
        ),
    ],
    ids=[
        "edited",
        "deleted",
        "deleted-at-end",
        "reordered",
        "row-renumbered",
        "time-edited",
        "key-unlisted",
        "key-listed-wrongly",
    ],
)
async def test_sqlite_verify_names_the_first_broken_record(
    tmp_path: Path, tamper: str | Callable[[list[bytes]], list[bytes]], expected: str
) -> None:
    store, path = await sqlite_with_five(tmp_path)
    await store.stop()
    if isinstance(tamper, str):
        with sqlite3.connect(path) as other:
            other.executescript(tamper)
    else:
        rewrite_batch(path, 5, tamper)
    reader = await started(SqliteAuditStore(path, create=False))
    try:
        report = await reader.verify()
    finally:
        await reader.stop()
    assert report.broken is not None
    assert re.fullmatch(expected, str(report.broken)), str(report.broken)


async def test_sqlite_a_replaced_record_with_a_new_hash_breaks_the_next_link(
    tmp_path: Path,
) -> None:
    """An editor who also recomputes the edited record's hash is caught at the next record."""
    store, path = await sqlite_with_five(tmp_path)
    records = await store.query(AuditQuery())
    await store.stop()
    edited = content_of(records[2]).replace(b'"alice"', b'"mallory"')
    replaced = line_of(edited, hashlib.sha256(edited).hexdigest())
    rewrite_batch(path, 5, lambda batch: [replaced, *batch[1:]])
    reader = await started(SqliteAuditStore(path, create=False))
    try:
        report = await reader.verify()
    finally:
        await reader.stop()
    assert report.broken is not None
    assert report.broken.seq == 4
    assert "does not link to record 3" in str(report.broken)


async def test_sqlite_appends_after_a_restart_and_from_two_processes_stay_one_chain(
    tmp_path: Path,
) -> None:
    path = tmp_path / "audit.db"
    first, second = SqliteAuditStore(path), SqliteAuditStore(path)
    await first.start()
    await second.start()
    try:
        await asyncio.gather(
            *(
                s.append([entry(n)])
                for n in range(40)
                for s in (first, second)
                if n % 2 == (s is second)
            )
        )
    finally:
        await first.stop()
        await second.stop()
    again = await started(SqliteAuditStore(path))
    try:
        await again.append([entry(99)])
        report = await again.verify()
        assert report.ok
        assert report.records == 41
    finally:
        await again.stop()


async def test_sqlite_one_chain_per_table(tmp_path: Path) -> None:
    store, path = await sqlite_with_five(tmp_path)
    await store.stop()
    with pytest.raises(StoreError, match="holds chain 'main', not 'other'"):
        await SqliteAuditStore(path, chain="other").start()
    with pytest.raises(StoreError, match="no such file"):
        await SqliteAuditStore(tmp_path / "none.db", create=False).start()


async def test_sqlite_query_filters_by_route_key_outcome_and_time(tmp_path: Path) -> None:
    store = await started(SqliteAuditStore(tmp_path / "audit.db"))
    try:
        await store.append([entry(1, "crm", "4711"), entry(2, "erp", "4711")])
        between = format_time(time.time())
        await asyncio.sleep(0.01)
        await store.append(
            [entry(3, "crm", "4711", "failed"), entry(4, "crm", "42"), entry(5, "crm", None)]
        )

        async def exchanges(**query: object) -> list[str]:
            return [r.exchange for r in await store.query(AuditQuery(**query))]  # type: ignore[arg-type]

        assert await exchanges(route="crm", key="4711") == ["ex-1", "ex-3"]
        assert await exchanges(key="4711", since=between) == ["ex-3"]
        assert await exchanges(key="4711", until=between) == ["ex-1", "ex-2"]
        assert await exchanges(outcome="failed") == ["ex-3"]
        assert await exchanges(route="crm", limit=2) == ["ex-1", "ex-3"]
        assert await exchanges(route="nope") == []
    finally:
        await store.stop()


# -- JSON Lines -----------------------------------------------------------------------------
async def jsonl_with_five(tmp_path: Path) -> Path:
    path = tmp_path / "audit.jsonl"
    store = await started(JsonLinesAuditStore(path))
    try:
        await write(store, [entry(1), entry(2)], [entry(3, key="4711"), entry(4), entry(5)])
    finally:
        await store.stop()
    return path


async def verify_jsonl(path: Path) -> str | None:
    store = await started(JsonLinesAuditStore(path, create=False))
    try:
        report = await store.verify()
    finally:
        await store.stop()
    return None if report.broken is None else str(report.broken)


async def test_jsonl_lines_are_canonical_records_a_siem_can_check(tmp_path: Path) -> None:
    path = await jsonl_with_five(tmp_path)
    lines = path.read_bytes().splitlines()
    assert len(lines) == 5
    previous = GENESIS
    for number, line in enumerate(lines, 1):
        record = json.loads(line)
        digest = record.pop("hash")
        assert list(record) == sorted(record)  # keys sorted, hash appended last
        canonical = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert hashlib.sha256(canonical.encode()).hexdigest() == digest
        assert (record["seq"], record["prev"]) == (number, previous)
        previous = digest
    assert await verify_jsonl(path) is None
    store = await started(JsonLinesAuditStore(path))  # a restart continues the chain
    try:
        await store.append([entry(6)])
        assert [r.exchange for r in await store.query(AuditQuery(key="4711"))] == ["ex-3"]
    finally:
        await store.stop()
    assert json.loads(path.read_bytes().splitlines()[-1])["prev"] == previous


async def test_jsonl_verify_catches_an_edited_a_deleted_and_a_swapped_line(
    tmp_path: Path,
) -> None:
    path = await jsonl_with_five(tmp_path)
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join([*lines[:2], lines[2].replace(b'"alice"', b'"eve"'), *lines[3:]]))
    assert (await verify_jsonl(path) or "").endswith("its content does not match its hash (edited)")
    path.write_bytes(b"".join([*lines[:1], *lines[2:]]))
    assert "record 2 of chain main is missing before record 3" in (await verify_jsonl(path) or "")
    path.write_bytes(b"".join([lines[0], lines[2], lines[1], *lines[3:]]))
    assert "record 2 of chain main is missing before record 3" in (await verify_jsonl(path) or "")
    path.write_bytes(b"".join([*lines[:2], lines[2].replace(b",", b", ", 1), *lines[3:]]))
    assert "line 3 (chain main, record 3) is not in canonical form" in (
        await verify_jsonl(path) or ""
    )


async def test_jsonl_has_one_writer_per_file(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    first = await started(JsonLinesAuditStore(path))
    try:
        with pytest.raises(StoreError, match="another writer holds the file"):
            await JsonLinesAuditStore(path).start()
    finally:
        await first.stop()


# -- PostgreSQL -----------------------------------------------------------------------------
@async_fixture
async def pg_table() -> AsyncIterator[str]:
    table = f"audit_{uuid.uuid4().hex[:12]}"
    yield table
    conn = await asyncpg.connect(PG_DSN)
    try:
        await conn.execute(f'DROP TABLE IF EXISTS "{table}", "{table}_head"')
    finally:
        await conn.close()


async def test_postgres_instances_sharing_a_chain_append_in_turns(pg_table: str) -> None:
    """Four writers, one chain: the head row lock makes their batches take turns."""
    stores = [PostgresAuditStore(PG_DSN, table=pg_table) for _ in range(4)]
    for store in stores:
        await store.start()
    try:
        await asyncio.gather(
            *(
                store.append([entry(100 * i + n), entry(100 * i + n + 50)])
                for i, store in enumerate(stores)
                for n in range(10)
            )
        )
        report = await stores[0].verify()
        assert report.ok, report.broken
        assert report.records == 80
        assert report.heads["main"][0] == 80
        records = await stores[1].query(AuditQuery(limit=None))
        assert sorted(r.seq for r in records) == list(range(1, 81))
    finally:
        for store in stores:
            await store.stop()


async def test_postgres_chains_per_instance_and_verify_catches_edits(pg_table: str) -> None:
    one = await started(PostgresAuditStore(PG_DSN, table=pg_table, chain="instance-1"))
    two = await started(open_store(PG_DSN, table=pg_table, chain="instance-2"))
    try:
        await one.append([entry(1, key="4711"), entry(2)])
        await two.append([entry(3, key="4711")])
        await one.append([entry(4)])
        report = await one.verify()
        assert report.ok
        assert report.heads.keys() == {"instance-1", "instance-2"}
        found = await two.query(AuditQuery(key="4711"))
        assert {(r.chain, r.exchange) for r in found} == {
            ("instance-1", "ex-1"),
            ("instance-2", "ex-3"),
        }
        conn = await asyncpg.connect(PG_DSN)
        try:
            where = "WHERE chain = 'instance-1' AND seq = 2"
            await conn.execute(f"UPDATE \"{pg_table}\" SET outcome = 'failed' {where}")
            broken = await one.verify()
            assert broken.broken is not None
            assert str(broken.broken).startswith("chain instance-1, record 2 (exchange ex-2")
            assert "its outcome column says 'failed' but the sealed record says 'completed'" in str(
                broken.broken
            )
            await conn.execute(
                f"UPDATE \"{pg_table}\" SET outcome = 'completed' WHERE chain = 'instance-1'"
            )
            await conn.execute(f"DELETE FROM \"{pg_table}\" WHERE chain = 'instance-1' AND seq = 1")
            deleted = await one.verify()
            assert deleted.broken is not None
            assert "record 1 of chain instance-1 is missing before record 2" in str(deleted.broken)
        finally:
            await conn.close()
    finally:
        await one.stop()
        await two.stop()


async def test_postgres_behind_an_audited_route(pg_table: str) -> None:
    class Routes(RouteBuilder):
        def configure(self) -> None:
            (
                self.from_("direct:pg")
                .route_id("pg-audited")
                .audit(key=header("customer"), store=PG_DSN, table=pg_table, chain="instance-a")
                .to("mock:erp")
            )

    context = Context()
    context.add_routes(Routes())
    async with context:
        template = context.template()
        sent = await asyncio.gather(
            *(template.send("direct:pg", n, headers={"customer": f"c-{n % 3}"}) for n in range(30))
        )
        assert all(exchange.exception is None for exchange in sent)
    store = await started(PostgresAuditStore(PG_DSN, table=pg_table, chain="instance-a"))
    try:
        report = await store.verify()
        assert report.ok, report.broken
        assert report.heads["instance-a"][0] == 30
        found = await store.query(AuditQuery(key="c-1", route="pg-audited"))
        assert len(found) == 10
        assert {r.endpoints[0] for r in found} == {"mock:erp"}
        assert {r.exchange for r in found} <= {e.id for e in sent}
    finally:
        await store.stop()
