"""A tamper-evident audit trail: one record per exchange of the routes that ask for it.

A route asks with ``.audit(...)``; all routes (or those matching glob patterns) with the
config's ``[audit]`` table (:func:`configure_audit`)::

    (self.from_("http:/crm/webhook?auth=basic&credentials_env=WEBHOOK_USERS")
         .route_id("crm-webhook")
         .audit(key=header("customer_id"), fields=["id", "status"],
                store="sqlite:data/audit.db")
         ...)

**What a record holds**: ``time`` (UTC, when the record was sealed, within milliseconds of
the exchange finishing the route), ``route``,
``exchange`` (its id), ``message_id``, ``key`` (the business key expression's value, as
text), ``principal`` (the caller that HTTP or SOAP authentication named, header
``eip.http.principal``; else the route's source endpoint: its queue, folder or path),
``outcome`` (``completed``, ``failed``, ``dead-lettered``, ``filtered`` or ``handled``),
``endpoints`` (each endpoint a ``to`` step sent it to, once, in the order of the first send,
redacted; the dead letter channel's too), ``error`` (the failure's type, never its message,
which may quote data), ``fields`` (only the body fields chosen; none by default), and the
chain: ``chain``, ``seq``, ``prev`` and ``hash`` (:mod:`eip.audit.record`).

**Durable before completion**: records are written in batches off the hot path (group
commit: :mod:`eip.audit.writer`), but an exchange completes (is acked, answered, moved) only
after its record is committed, so at-least-once holds for the audit too: a crash loses no
record of a completed exchange, and may leave a record of one that is then redelivered.

**Tamper-evident**: each record holds the SHA-256 of the record before it and of its own
canonical content, so ``eip audit verify`` names the first record that was edited, deleted or
reordered (:mod:`eip.audit.verify`); ``eip audit show --route R --key K --since T`` reads them.

**Stores** (:mod:`eip.audit.store`): SQLite (the default; a row per batch, a view with a row
per record), PostgreSQL (a row per record; several instances share one table, each chain's
appends serialized on its head row), JSON Lines (a line per record, for a SIEM).

**Cost**: routes that do not audit are compiled as before and pay nothing. An audited route
pays for its record on the event loop (the trail, the record's fields; ~1-2 µs) and, in the
writer's thread, for sealing and writing it, shared by the batch; an exchange that would have
completed synchronously now waits for its batch's commit (see ``benchmarks/README.md``).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from eip.audit.config import AuditSettings, configure_audit
    from eip.audit.jsonl_store import JsonLinesAuditStore
    from eip.audit.postgres_store import PostgresAuditStore
    from eip.audit.record import AuditRecord
    from eip.audit.spec import AuditSpec
    from eip.audit.sqlite_store import SqliteAuditStore
    from eip.audit.store import AuditQuery, AuditStore, open_store
    from eip.audit.verify import Break, VerifyReport

__all__ = [
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

_HOMES = {
    "AuditQuery": "eip.audit.store",
    "AuditRecord": "eip.audit.record",
    "AuditSettings": "eip.audit.config",
    "AuditSpec": "eip.audit.spec",
    "AuditStore": "eip.audit.store",
    "Break": "eip.audit.verify",
    "JsonLinesAuditStore": "eip.audit.jsonl_store",
    "PostgresAuditStore": "eip.audit.postgres_store",
    "SqliteAuditStore": "eip.audit.sqlite_store",
    "VerifyReport": "eip.audit.verify",
    "configure_audit": "eip.audit.config",
    "open_store": "eip.audit.store",
}


def __getattr__(name: str) -> Any:
    """Load a part on first use: the compiler imports :mod:`eip.audit.spec` for every route,
    and routes that keep no audit should not pay for the stores."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'eip.audit' has no attribute {name!r}")
    value = getattr(import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
