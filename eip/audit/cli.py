"""``eip audit verify`` and ``eip audit show``: check and read an audit store.

The store is ``--store`` (``sqlite:PATH``, ``jsonl:PATH``, ``postgresql://...``), else the
config's ``audit.store``, else ``sqlite:$EIP_DATA_DIR/audit.db``; it is opened for reading
(nothing is created). ``verify`` exits 0 when every chain is intact (and prints each chain's
head hash, worth keeping elsewhere), 1 when it names the first broken record. ``show`` prints
the records that match as a table, or as a JSON array with ``--json``.

Times (``--since``, ``--until``): ``2026-11-04``, ``2026-11-04T09:30`` (local time unless it
ends in ``Z`` or an offset), ``today``, ``yesterday``, ``now``, or a span back from now
(``30m``, ``24h``, ``7d``). Records keep UTC.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import re
import sys
import time
from collections.abc import Callable
from typing import Any

import msgspec

from eip.audit.record import OUTCOMES, AuditRecord, format_time
from eip.audit.store import AuditQuery, AuditStore, default_store_uri, open_store
from eip.audit.verify import VerifyReport
from eip.config import Config
from eip.stores.base import StoreError

__all__ = ["add_audit_parser", "parse_time", "run_audit"]

_SPAN = re.compile(r"(\d+)\s*([smhdw])")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def add_audit_parser(sub: Any, config_option: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add ``eip audit verify|show`` to the command's subparsers."""
    audit = sub.add_parser(
        "audit",
        help="verify or show the audit trail",
        description="Check an audit store's hash chains (verify) or read its records (show).",
    )
    actions = audit.add_subparsers(
        dest="audit_command", required=True, metavar="ACTION", help="verify or show"
    )
    verify = actions.add_parser(
        "verify",
        help="walk every chain and name the first broken record (exit 1)",
        description="Recompute each record's hash and each link to the record before it; "
        "name the first record that was edited, deleted or reordered.",
    )
    show = actions.add_parser("show", help="print the records that match, oldest first")
    show.add_argument("--route", help="route id")
    show.add_argument("--key", help="business key (as text)")
    show.add_argument("--outcome", choices=OUTCOMES, help="only this outcome")
    show.add_argument("--since", type=parse_time, metavar="TIME", help="from this time on")
    show.add_argument("--until", type=parse_time, metavar="TIME", help="before this time")
    show.add_argument("--limit", type=int, default=1000, help="at most this many (1000)")
    for parser in (verify, show):
        parser.add_argument(
            "--store",
            help="sqlite:PATH, jsonl:PATH or postgresql://... (default: audit.store in the "
            "config, else sqlite:$EIP_DATA_DIR/audit.db)",
        )
        parser.add_argument("--table", help="the store's table (default eip_audit)")
        parser.add_argument("--json", action="store_true", help="print JSON")
        config_option(parser)


def run_audit(args: argparse.Namespace, config: Config) -> int:
    """Run ``eip audit ACTION``; the exit code."""
    uri = args.store or config.get("audit.store") or default_store_uri()
    table = args.table or config.get("audit.table")
    options: dict[str, Any] = {"create": False}
    if table and not uri.startswith("jsonl:"):
        options["table"] = table
    try:
        store = open_store(uri, **options)
    except (StoreError, ValueError) as exc:
        print(f"eip: error: {exc}", file=sys.stderr)
        return 2
    try:
        if args.audit_command == "verify":
            return asyncio.run(_verify(store, args.json))
        query = AuditQuery(args.route, args.key, args.outcome, args.since, args.until, args.limit)
        return asyncio.run(_show(store, query, args.json))
    except StoreError as exc:
        print(f"eip: error: {exc}", file=sys.stderr)
        return 1


async def _verify(store: AuditStore, as_json: bool) -> int:
    await store.start()
    try:
        report = await store.verify()
    finally:
        await store.stop()
    if as_json:
        print(msgspec.json.encode(_report_data(store, report)).decode())
    elif report.broken is not None:
        print(
            f"eip: error: audit store {store.name} is broken: {report.broken} "
            f"({report.records:,} record(s) before it verified)",
            file=sys.stderr,
        )
    else:
        chains = len(report.heads)
        print(f"ok: {report.records:,} record(s) in {chains} chain(s) intact ({store.name})")
        for chain, (seq, digest) in sorted(report.heads.items()):
            print(f"  chain {chain}: last record {seq}, sha256 {digest}")
    return 0 if report.ok else 1


def _report_data(store: AuditStore, report: VerifyReport) -> dict[str, Any]:
    broken = report.broken
    return {
        "store": store.name,
        "ok": report.ok,
        "records": report.records,
        "heads": {c: {"seq": s, "hash": h} for c, (s, h) in sorted(report.heads.items())},
        "broken": None
        if broken is None
        else {
            "chain": broken.chain,
            "seq": broken.seq,
            "exchange": broken.exchange,
            "reason": broken.reason,
        },
    }


async def _show(store: AuditStore, query: AuditQuery, as_json: bool) -> int:
    await store.start()
    try:
        records = await store.query(query)
    finally:
        await store.stop()
    if as_json:
        print(msgspec.json.encode(records).decode())
        return 0
    if not records:
        print("no records match", file=sys.stderr)
        return 0
    print(_table(records))
    return 0


def _table(records: list[AuditRecord]) -> str:
    headers = ["time", "route", "outcome", "key", "principal", "endpoints", "exchange"]
    rows = [
        [
            r.time,
            r.route,
            r.outcome + (f" ({r.error})" if r.error else ""),
            r.key or "",
            r.principal or "",
            ", ".join(r.endpoints),
            r.exchange,
        ]
        + ([msgspec.json.encode(r.fields).decode()] if r.fields is not None else [])
        for r in records
    ]
    if any(r.fields is not None for r in records):
        headers.append("fields")
    widths = [
        max(len(h), *(len(row[i]) for row in rows if i < len(row))) for i, h in enumerate(headers)
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)).rstrip())
    return "\n".join(lines)


def parse_time(text: str) -> str:
    """A time as written on the command line, as record time text (UTC)."""
    value = text.strip().lower()
    now = time.time()
    if value == "now":
        return format_time(now)
    if value in ("today", "yesterday"):
        midnight = dt.datetime.combine(dt.date.today(), dt.time()).astimezone()
        if value == "yesterday":
            midnight -= dt.timedelta(days=1)
        return format_time(midnight.timestamp())
    span = _SPAN.fullmatch(value)
    if span:
        return format_time(now - int(span.group(1)) * _SECONDS[span.group(2)])
    try:
        when = dt.datetime.fromisoformat(text.strip().replace("z", "Z"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid time {text!r}: write 2026-11-04, 2026-11-04T09:30, today, yesterday, "
            "now, or 30m, 24h, 7d"
        ) from None
    if when.tzinfo is None:
        when = when.astimezone()  # local time
    return format_time(when.timestamp())
