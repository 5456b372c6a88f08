"""``verify`` for the SQLite store: walk its batch rows in order, and check what is kept beside
them (see :mod:`eip.audit.sqlite_store` for the tables).

Besides the chain itself (:class:`~eip.audit.verify.ChainWalk`), a batch row must hold what
its columns say (records ``first`` to ``last``, sealed at ``time``), every record must be in
the canonical form that was hashed, and the key index must list exactly the records that have
a key, under that key: an index row taken out would hide a record from ``show --key``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import msgspec

from eip.audit.record import AuditRecord, content_of, decode_record, line_of
from eip.audit.verify import Break, ChainWalk, StoredRow, VerifyReport

__all__ = ["verify_tables"]

_raws = msgspec.json.Decoder(list[msgspec.Raw])


def verify_tables(db: sqlite3.Connection, table: str) -> VerifyReport:
    """Walk ``table``'s chain; the report names the first thing that does not hold."""
    walk = ChainWalk()
    keys = _KeyIndex(db.execute(f"SELECT seq, key FROM {table}_keys ORDER BY seq"))
    batches = db.execute(f"SELECT last, first, time, records FROM {table} ORDER BY last")
    for last, first, sealed_at, records in batches:
        broken = _batch(walk, keys, last, first, sealed_at, records)
        if broken is not None:
            walk.report.broken = broken
            return walk.report
        if walk.report.broken is not None:
            return walk.report
    head = db.execute(f"SELECT chain, seq, hash FROM {table}_head")
    report = walk.finish({chain: (seq, digest) for chain, seq, digest in head})
    if report.broken is None:  # records deleted at the end first: that says more
        report.broken = keys.rest()
    return report


def _batch(
    walk: ChainWalk, keys: _KeyIndex, last: int, first: int, sealed_at: str, records: str
) -> Break | None:
    where = f"batch row {first}..{last}"
    try:
        raws = _raws.decode(records)
    except msgspec.DecodeError as exc:
        return Break("?", first, None, f"{where} is not a JSON array of records ({exc}; edited)")
    seqs: list[int] = []
    for number, raw in enumerate(raws, 1):
        data = bytes(raw)
        try:
            record = decode_record(data)
        except msgspec.DecodeError as exc:
            return Break("?", None, None, f"record {number} of {where} is not a record ({exc})")
        content = content_of(record)
        if line_of(content, record.hash) != data:
            return _at(record, f"{_name(record)} in {where} is not in canonical form (edited)")
        if not walk.add(StoredRow(where, content, record.hash)):
            return None  # the walk says what broke
        if record.time != sealed_at:
            return _at(
                record,
                f"{_name(record)}: its batch row's time column says {sealed_at!r} but the sealed "
                f"record says {record.time!r} (edited)",
            )
        broken = keys.check(record)
        if broken is not None:
            return broken
        seqs.append(record.seq)
    if not seqs or (seqs[0], seqs[-1]) != (first, last):
        held = f"records {seqs[0]}..{seqs[-1]}" if seqs else "no records"
        return Break("?", first, None, f"{where} holds {held} (its first or last was edited)")
    return None


class _KeyIndex:
    """The key index rows, in record order, matched against the records as they are walked."""

    def __init__(self, rows: sqlite3.Cursor) -> None:
        self._rows: Iterator[tuple[int, str]] = iter(rows)
        self._next = next(self._rows, None)

    def check(self, record: AuditRecord) -> Break | None:
        listed = self._next
        if listed is not None and listed[0] < record.seq:
            return _listed_wrongly(listed, record.chain)
        if record.key is None:
            if listed is not None and listed[0] == record.seq:
                return _listed_wrongly(listed, record.chain)
            return None
        if listed != (record.seq, record.key):
            return _at(
                record,
                f"{_name(record)} has key {record.key!r}, but the key index does not list it "
                "under that key (edited)",
            )
        self._next = next(self._rows, None)
        return None

    def rest(self) -> Break | None:
        """A key index row left after the last record."""
        return None if self._next is None else _listed_wrongly(self._next, "?")


def _listed_wrongly(listed: tuple[int, str], chain: str) -> Break:
    seq, key = listed
    return Break(
        chain,
        seq,
        None,
        f"the key index lists record {seq} under key {key!r}, which that record does not have "
        "(edited)",
    )


def _name(record: AuditRecord) -> str:
    return (
        f"chain {record.chain}, record {record.seq} (exchange {record.exchange}, route "
        f"{record.route}, {record.time})"
    )


def _at(record: AuditRecord, reason: str) -> Break:
    return Break(record.chain, record.seq, record.exchange, reason)
