"""Walk a hash chain and name the first record that breaks it.

A store hands over its rows in chain order (:class:`StoredRow`: the bytes the hash was taken
of, the stored hash, the columns it keeps beside the record for searching); this module checks,
for each record:

- its content still hashes to its stored hash: else it was **edited**;
- its number follows the one before: a gap means records were **deleted**, a step back means
  they were **reordered** (or copied);
- its ``prev`` is the hash of the record before it: else a record before it was replaced;
- the searchable columns agree with the sealed record: else a column was edited.

At the end, each chain's last record is compared with the chain head that the store keeps
(SQLite and PostgreSQL keep one per chain): records deleted at the end leave the head ahead
of the last record. A chain rewritten as a whole, with every hash and the head recomputed,
verifies again: to catch that, keep the head hash that ``eip audit verify`` prints somewhere
the writer cannot change (a ticket, a SIEM, a signed mail) and compare it later.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from eip.audit.record import GENESIS, AuditRecord, decode_record

__all__ = ["Break", "ChainWalk", "StoredRow", "VerifyReport"]


@dataclass(frozen=True, slots=True)
class StoredRow:
    """One stored record as its store read it back."""

    #: How the store names its place, for records that cannot be read (``line 17``).
    where: str
    #: The bytes the hash was taken of.
    content: bytes
    #: The hash stored with it.
    hash: str
    #: The number the store files it under (SQL: the ``seq`` column), None if only sealed.
    seq: int | None = None
    #: Columns kept beside the record for searching: name -> stored value.
    columns: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Break:
    """The first record at which a chain does not verify."""

    chain: str
    #: The record's number in its chain (as sealed, or as filed when unreadable).
    seq: int | None
    exchange: str | None
    reason: str

    def __str__(self) -> str:
        return self.reason


@dataclass(slots=True)
class VerifyReport:
    """What a walk found: records checked, each chain's last record and hash, the break."""

    records: int = 0
    #: chain -> (last record's number, its hash), as walked.
    heads: dict[str, tuple[int, str]] = field(default_factory=dict)
    broken: Break | None = None

    @property
    def ok(self) -> bool:
        return self.broken is None


class ChainWalk:
    """Feed rows in order with :meth:`add` (False once broken), then call :meth:`finish`."""

    def __init__(self) -> None:
        self.report = VerifyReport()

    def add(self, row: StoredRow) -> bool:
        if self.report.broken is not None:
            return False
        broken = self._check(row)
        if broken is not None:
            self.report.broken = broken
            return False
        return True

    def add_all(self, rows: Iterable[StoredRow]) -> bool:
        return all(self.add(row) for row in rows)

    def finish(self, heads: Mapping[str, tuple[int, str]] | None = None) -> VerifyReport:
        """Compare each chain's last record with the head its store keeps (when it keeps
        one); a chain head without records, or records without a head, are breaks too."""
        report = self.report
        if report.broken is not None or heads is None:
            return report
        for chain, (seq, digest) in sorted(heads.items()):
            last, last_hash = report.heads.get(chain, (0, GENESIS))
            if seq > last:
                report.broken = Break(
                    chain,
                    last + 1,
                    None,
                    f"chain {chain}: {_span(last + 1, seq)} {'is' if seq == last + 1 else 'are'} "
                    f"missing at the end (deleted; the chain head says {seq}, the last record is "
                    f"{last})",
                )
                return report
            if seq < last:
                report.broken = Break(
                    chain,
                    seq,
                    None,
                    f"chain {chain}: the chain head says {seq} but the records go up to {last} "
                    "(the head was edited)",
                )
                return report
            if digest != last_hash:
                report.broken = Break(
                    chain,
                    seq,
                    None,
                    f"chain {chain}: the chain head's hash differs from record {seq}'s (the head "
                    "or the last record was replaced)",
                )
                return report
        for chain in sorted(set(report.heads) - set(heads)):
            report.broken = Break(chain, None, None, f"chain {chain} has no chain head (edited)")
            return report
        return report

    def _check(self, row: StoredRow) -> Break | None:
        try:
            record = decode_record(row.content)
        except msgspec.DecodeError as exc:
            return Break("?", row.seq, None, f"{row.where} is not a readable record ({exc})")
        name = _name(record)
        report = self.report
        if hashlib.sha256(row.content).hexdigest() != row.hash:
            return _at(record, f"{name}: its content does not match its hash (edited)")
        last, prev = report.heads.get(record.chain, (0, GENESIS))
        if row.seq is not None and row.seq != record.seq:
            return _at(record, f"{name} is filed as record {row.seq} (edited or reordered)")
        if record.seq > last + 1:
            first, until = last + 1, record.seq - 1
            verb = "is" if first == until else "are"
            return Break(
                record.chain,
                first,
                None,
                f"{_span(first, until)} of chain {record.chain} {verb} missing before record "
                f"{record.seq} {_about(record)} (deleted or moved)",
            )
        if record.seq <= last:
            return _at(record, f"{name} comes after record {last} (reordered or copied)")
        if record.prev != prev:
            return _at(
                record,
                f"{name} does not link to record {last} (that record was replaced, or records "
                "were reordered)",
            )
        for column, stored in row.columns.items():
            sealed = getattr(record, column)
            if stored != sealed:
                return _at(
                    record,
                    f"{name}: its {column} column says {stored!r} but the sealed record says "
                    f"{sealed!r} (edited)",
                )
        report.records += 1
        report.heads[record.chain] = (record.seq, row.hash)
        return None


def _name(record: AuditRecord) -> str:
    return f"chain {record.chain}, record {record.seq} {_about(record)}"


def _about(record: AuditRecord) -> str:
    return f"(exchange {record.exchange}, route {record.route}, {record.time})"


def _at(record: AuditRecord, reason: str) -> Break:
    return Break(record.chain, record.seq, record.exchange, reason)


def _span(first: int, last: int) -> str:
    return f"record {first}" if first == last else f"records {first}..{last}"
