"""What an audit store is, and how a store is named in text (config, DSL, command line).

An :class:`AuditStore` appends a batch of entries as one durable unit (sealing them onto its
chain inside the same transaction), reads records back by route, key and time, and walks its
chains for :mod:`eip.audit.verify`. Its errors are :class:`~eip.stores.base.StoreError`, as
for the other stores, naming the store. Three stores ship:

=====================================  ==========================  ===========================
Store, and how it is named             Survives                    Shared between
=====================================  ==========================  ===========================
``SqliteAuditStore``: ``sqlite:PATH``   process crash (``FULL``:    processes on one host (one
                                        power loss too)             chain, appends take turns)
``PostgresAuditStore``:                 the server's durability     any number of instances
``postgresql://user@host/db``
``JsonLinesAuditStore``: ``jsonl:PATH`` process crash (``fsync``:   one writer per file (a
                                        power loss too)             lock says so)
=====================================  ==========================  ===========================
"""

from __future__ import annotations

import abc
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eip.audit.record import AuditRecord, Entry
from eip.audit.verify import VerifyReport
from eip.redaction import redact_uri

__all__ = [
    "DEFAULT_CHAIN",
    "DEFAULT_TABLE",
    "AuditQuery",
    "AuditStore",
    "default_store_uri",
    "open_store",
]

DEFAULT_CHAIN = "main"
DEFAULT_TABLE = "eip_audit"


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """Which records ``eip audit show`` wants; None matches anything. Times are record time
    text (UTC, ``2026-11-05T12:00:00.000000Z``); ``since`` is inclusive, ``until`` not."""

    route: str | None = None
    key: str | None = None
    outcome: str | None = None
    since: str | None = None
    until: str | None = None
    limit: int | None = 1000

    def matches(self, record: AuditRecord) -> bool:
        return (
            (self.route is None or record.route == self.route)
            and (self.key is None or record.key == self.key)
            and (self.outcome is None or record.outcome == self.outcome)
            and (self.since is None or record.time >= self.since)
            and (self.until is None or record.time < self.until)
        )


class AuditStore(abc.ABC):
    """Where audit records go. ``append`` returns once the batch is durable."""

    #: The chain this store appends to.
    chain: str = DEFAULT_CHAIN

    @property
    @abc.abstractmethod
    def name(self) -> str:
        """How messages name this store (``sqlite:data/audit.db``; no credentials)."""

    @abc.abstractmethod
    async def start(self) -> None:
        """Open the store (creating tables or the file); called before the first append."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Close the store."""

    @abc.abstractmethod
    async def append(self, entries: Sequence[Entry]) -> None:
        """Seal ``entries`` onto the chain and write them as one durable unit: all or none."""

    @abc.abstractmethod
    async def query(self, query: AuditQuery) -> list[AuditRecord]:
        """Records that match, oldest first, at most ``query.limit``."""

    @abc.abstractmethod
    async def verify(self) -> VerifyReport:
        """Walk every chain in the store (see :mod:`eip.audit.verify`)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, chain={self.chain!r})"


def default_store_uri() -> str:
    """``sqlite:<data>/audit.db``, ``<data>`` being ``$EIP_DATA_DIR`` (default ``./data``)."""
    return f"sqlite:{Path(os.environ.get('EIP_DATA_DIR', 'data')) / 'audit.db'}"


_OPTIONS = {
    "sqlite": ("table", "chain", "synchronous", "create"),
    "jsonl": ("chain", "fsync", "create"),
    "postgresql": ("table", "chain", "pool", "create"),
}


def open_store(uri: str, **options: Any) -> AuditStore:
    """The store that ``uri`` names: ``sqlite:PATH``, ``jsonl:PATH`` or a PostgreSQL DSN
    (``postgresql://...``). ``options`` go to its constructor (``table``, ``chain``, ...). A
    name that is none of these, or an option that its kind of store does not take, is a
    ValueError that says what is valid."""
    scheme, sep, rest = uri.partition(":")
    kind = "postgresql" if scheme in ("postgresql", "postgres") else scheme
    if not sep or not rest or kind not in _OPTIONS:
        raise ValueError(
            f"audit store {redact_uri(uri)!r}: write sqlite:PATH, jsonl:PATH or "
            "postgresql://user@host/db"
        )
    options = {k: v for k, v in options.items() if v is not None}
    wrong = sorted(set(options) - set(_OPTIONS[kind]))
    if wrong:
        raise ValueError(
            f"audit store option '{wrong[0]}' does not apply to {kind} stores (they take "
            f"{', '.join(_OPTIONS[kind])})"
        )
    if kind == "postgresql":
        from eip.audit.postgres_store import PostgresAuditStore

        return PostgresAuditStore(uri, **options)
    if rest.startswith("//"):  # sqlite:///abs/path, as in SQLAlchemy URLs
        rest = rest[2:]
    if kind == "sqlite":
        from eip.audit.sqlite_store import SqliteAuditStore

        return SqliteAuditStore(rest, **options)
    from eip.audit.jsonl_store import JsonLinesAuditStore

    return JsonLinesAuditStore(rest, **options)
