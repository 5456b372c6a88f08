"""The PostgreSQL audit store (asyncpg): one table that several instances share.

Rows are as in the SQLite store, keyed by ``(chain, seq)``; ``<table>_head`` holds one row per
chain with its last number and hash.

**How a shared chain stays one line.** An append is one transaction that first locks its
chain's head row (``SELECT ... FOR UPDATE``), seals the batch after that head, copies the rows
in and moves the head. A second instance appending to the same chain waits on that row lock
until the first commits, then reads the new head: appends take turns, one batch at a time,
and the chain never forks. The lock is held for one batch's insert (group commit keeps the
number of batches small), so instances sharing a chain cost each other little; give each
instance its own chain (``chain="erp-sync-1"``) to remove even that wait. ``eip audit
verify`` walks every chain in the table.

Needs the ``postgres`` extra (``pip install eip[postgres]``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib import import_module
from typing import Any

from eip.audit.record import GENESIS, AuditRecord, Entry, decode_record, seal
from eip.audit.store import DEFAULT_CHAIN, DEFAULT_TABLE, AuditQuery, AuditStore
from eip.audit.verify import ChainWalk, StoredRow, VerifyReport
from eip.redaction import redact_uri
from eip.stores._common import validate_identifier
from eip.stores.base import StoreError

__all__ = ["PostgresAuditStore"]

_COLUMNS = ("time", "route", "key", "outcome")
_FETCH = 5000  # rows per round trip while verifying


def _quote(identifier: str) -> str:
    return ".".join(f'"{part}"' for part in identifier.split("."))


class PostgresAuditStore(AuditStore):
    """Audit records in a PostgreSQL table; pass a ``dsn`` or an asyncpg ``pool``."""

    def __init__(
        self,
        dsn: str | None = None,
        *,
        table: str = DEFAULT_TABLE,
        chain: str = DEFAULT_CHAIN,
        pool: Any = None,
        create: bool = True,
    ) -> None:
        try:
            self._asyncpg = import_module("asyncpg")
        except ImportError as exc:
            raise ImportError("PostgresAuditStore needs asyncpg: install eip[postgres]") from exc
        if dsn is None and pool is None:
            raise ValueError("give a dsn or a pool")
        self.dsn = dsn
        self.table = validate_identifier(table)
        self.chain = chain
        self.create = create
        self._pool: Any = pool
        self._owns_pool = pool is None
        t, h = _quote(self.table), _quote(f"{self.table}_head")
        self._t, self._h = t, h
        self._sql_lock_head = f"SELECT seq, hash FROM {h} WHERE chain = $1 FOR UPDATE"
        self._sql_set_head = f"UPDATE {h} SET seq = $2, hash = $3 WHERE chain = $1"

    @property
    def name(self) -> str:
        where = redact_uri(self.dsn) if self.dsn else "a given pool"
        suffix = "" if self.table == DEFAULT_TABLE else f" (table {self.table})"
        return f"{where}{suffix}"

    async def start(self) -> None:
        with self._mapped():
            if self._pool is None:
                self._pool = await self._asyncpg.create_pool(self.dsn, min_size=1, max_size=4)
            async with self._pool.acquire() as conn, conn.transaction():
                if self.create:
                    # Concurrent CREATE TABLE IF NOT EXISTS races across sessions: take turns.
                    await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", self.table)
                    for statement in self._schema():
                        await conn.execute(statement)
                    await conn.execute(
                        f"INSERT INTO {self._h} (chain, seq, hash) VALUES ($1, 0, $2) "
                        "ON CONFLICT (chain) DO NOTHING",
                        self.chain,
                        GENESIS,
                    )
                else:
                    found = await conn.fetchval("SELECT to_regclass($1)", self.table)
                    if found is None:
                        raise StoreError(f"audit store {self.name}: no table {self.table!r}")

    def _schema(self) -> list[str]:
        t, h = self._t, self._h
        index = _quote(f"{self.table}_by_key".rsplit(".", 1)[-1])
        return [
            f"CREATE TABLE IF NOT EXISTS {t} (chain TEXT NOT NULL, seq BIGINT NOT NULL, "
            "time TEXT NOT NULL, route TEXT NOT NULL, key TEXT, outcome TEXT NOT NULL, "
            "record TEXT NOT NULL, hash TEXT NOT NULL, PRIMARY KEY (chain, seq))",
            f"CREATE INDEX IF NOT EXISTS {index} ON {t} (key)",
            f"CREATE TABLE IF NOT EXISTS {h} (chain TEXT PRIMARY KEY, seq BIGINT NOT NULL, "
            "hash TEXT NOT NULL)",
        ]

    async def stop(self) -> None:
        if self._owns_pool and self._pool is not None:
            pool, self._pool = self._pool, None
            with self._mapped():
                await pool.close()

    @property
    def pool(self) -> Any:
        if self._pool is None:
            raise StoreError(f"audit store {self.name} is not started")
        return self._pool

    async def append(self, entries: Sequence[Entry]) -> None:
        with self._mapped():
            async with self.pool.acquire() as conn, conn.transaction():
                head = await conn.fetchrow(self._sql_lock_head, self.chain)
                if head is None:
                    raise StoreError(
                        f"audit store {self.name}: chain {self.chain!r} has no head row (was it "
                        "deleted? run 'eip audit verify')"
                    )
                sealed = seal(entries, self.chain, head["seq"], head["hash"])
                rows = [
                    (c.chain, c.seq, c.time, c.route, c.key, c.outcome, data.decode(), digest)
                    for c, data, digest in sealed
                ]
                schema, _, name = self.table.rpartition(".")
                await conn.copy_records_to_table(
                    name,
                    schema_name=schema or None,
                    records=rows,
                    columns=("chain", "seq", *_COLUMNS, "record", "hash"),
                )
                last, _, digest = sealed[-1]
                await conn.execute(self._sql_set_head, self.chain, last.seq, digest)

    async def query(self, query: AuditQuery) -> list[AuditRecord]:
        terms, params = [], []
        for column, value, op in (
            ("route", query.route, "="),
            ("key", query.key, "="),
            ("outcome", query.outcome, "="),
            ("time", query.since, ">="),
            ("time", query.until, "<"),
        ):
            if value is not None:
                params.append(value)
                terms.append(f"{column} {op} ${len(params)}")
        sql = f"SELECT record, hash FROM {self._t}"
        if terms:
            sql += " WHERE " + " AND ".join(terms)
        sql += " ORDER BY time, chain, seq"
        if query.limit is not None:
            sql += f" LIMIT {int(query.limit)}"
        with self._mapped():
            rows = await self.pool.fetch(sql, *params)
        found = []
        for row in rows:
            record = decode_record(row["record"])
            record.hash = row["hash"]
            found.append(record)
        return found

    async def verify(self) -> VerifyReport:
        walk = ChainWalk()
        columns = ", ".join(("chain", "seq", *_COLUMNS, "record", "hash"))
        sql = f"SELECT {columns} FROM {self._t} ORDER BY chain, seq"
        with self._mapped():
            async with self.pool.acquire() as conn, conn.transaction(readonly=True):
                async for row in conn.cursor(sql, prefetch=_FETCH):
                    if not walk.add(_row(row)):
                        break
                heads = {
                    r["chain"]: (r["seq"], r["hash"])
                    for r in await conn.fetch(f"SELECT chain, seq, hash FROM {self._h}")
                    if r["seq"] > 0 or walk.report.heads.get(r["chain"])
                }
        return walk.finish(heads)

    @contextmanager
    def _mapped(self) -> Iterator[None]:
        pg = self._asyncpg
        try:
            yield
        except StoreError:
            raise
        except (pg.PostgresError, pg.InterfaceError, OSError, TimeoutError) as exc:
            raise StoreError(f"audit store {self.name}: {type(exc).__name__}: {exc}") from exc


def _row(row: Any) -> StoredRow:
    return StoredRow(
        f"chain {row['chain']}, row {row['seq']}",
        row["record"].encode(),
        row["hash"],
        row["seq"],
        {name: row[name] for name in _COLUMNS},
    )
