"""``eip get``, ``eip route`` and ``eip reload``: the CLI side of a running server's control API.

Each command is one HTTP call to the management port (``--url``, default
``http://127.0.0.1:8081``; the token for changes from ``$EIP_MANAGEMENT_TOKEN``), printed as a
readable table, or as the API's JSON with ``--json``. A server that is down, or an answer that
is an error, is one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import datetime
import json
import os
import sys
import urllib.error
import urllib.request
from typing import Any

__all__ = ["RemoteError", "call", "render"]

DEFAULT_URL = "http://127.0.0.1:8081"


class RemoteError(Exception):
    """The server could not be reached, or answered with an error."""


def call(url: str, method: str, path: str, timeout: float = 10.0) -> Any:
    """One request to the management API; the decoded JSON answer."""
    request = urllib.request.Request(f"{url.rstrip('/')}{path}", method=method)
    token = os.environ.get("EIP_MANAGEMENT_TOKEN", "")
    if token and method != "GET":
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as error:
        try:
            text = json.loads(error.read()).get("error") or error.reason
        except (ValueError, AttributeError):
            text = error.reason
        raise RemoteError(f"{method} {path}: {error.code} {text}") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise RemoteError(f"no eip server answers at {url} ({reason})") from None


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(line.rstrip() for line in lines)


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _routes(answer: dict[str, Any]) -> str:
    rows = []
    for route in answer["routes"]:
        counters = route["counters"]
        processing = counters.get("processing") or {}
        last = route.get("last_failure")
        rows.append(
            [
                route["id"],
                route["status"],
                str(counters["exchanges_total"]),
                str(counters["exchanges_failed"]),
                str(counters["inflight"]),
                "-" if processing.get("p99_ms") is None else f"{processing['p99_ms']:g}",
                "-" if last is None else f"{_when(last['time'])} {last['exception_type']}",
            ]
        )
    headers = ["ROUTE", "STATUS", "TOTAL", "FAILED", "INFLIGHT", "P99 MS", "LAST FAILURE"]
    return _table(headers, rows)


def _route(route: dict[str, Any]) -> str:
    lines = [
        f"route {route['id']}  ({route['status']}{'' if route['ready'] else ', not ready'})",
        f"  from {route['from']}",
    ]
    if route.get("description"):
        lines.append(f"  # {route['description']}")
    if route.get("problem"):
        lines.append(f"  problem: {route['problem']}")

    def walk(steps: list[dict[str, Any]], indent: str) -> None:
        for step in steps:
            sends = step.get("sends")
            counted = "" if sends is None else f"  [{_sends(sends)}]"
            lines.append(f"{indent}{step['path']}. {step['describe']}{counted}")
            for branch in step.get("branches", ()):
                lines.append(f"{indent}   {branch['label']}:")
                walk(branch["steps"], indent + "      ")

    walk(route.get("steps", []), "  ")
    return "\n".join(lines)


def _sends(sends: dict[str, Any]) -> str:
    mean = sends.get("mean_ms")
    text = f"sent {sends['sent']}, failed {sends['failed']}"
    return text if mean is None else f"{text}, mean {mean:g} ms"


def _failures(answer: dict[str, Any]) -> str:
    rows = [
        [
            _when(f["time"]),
            f["exchange_id"],
            f["message_id"] or "-",
            f["failed_at"] or "-",
            f"{f['exception_type'].rsplit('.', 1)[-1]}: {f['message']}"[:100],
        ]
        for f in answer["failures"]
    ]
    if not rows:
        return f"no failures recorded for route {answer['route']}"
    return _table(["TIME", "EXCHANGE", "MESSAGE ID", "FAILED AT", "ERROR"], rows)


def _inflight(answer: dict[str, Any]) -> str:
    exchanges = answer["exchanges"]
    head = f"route {answer['route']}: {answer['inflight']} in flight"
    if not exchanges:
        return head
    rows = [
        [e["exchange_id"], e["message_id"] or "-", f"{e['age_seconds']:.1f}", e["redelivery"] or ""]
        for e in exchanges
    ]
    return head + "\n" + _table(["EXCHANGE", "MESSAGE ID", "AGE S", "WAITING FOR"], rows)


def _reload(answer: dict[str, Any]) -> str:
    lines = [f"reloaded in {answer.get('seconds', 0):.2f}s"]
    for name in ("added", "changed", "removed"):
        ids = answer.get(name) or []
        lines.append(f"  {name + ':':<10} {', '.join(ids) if ids else '-'}")
    lines.append(f"  {'unchanged:':<10} {len(answer.get('unchanged') or [])} route(s)")
    for route_id, count in (answer.get("aborted") or {}).items():
        lines.append(f"  route {route_id}: {count} exchange(s) aborted, to be redelivered")
    return "\n".join(lines)


def _status(answer: dict[str, Any]) -> str:
    fired = answer.get("exchange_id")
    if fired is not None:
        return f"route {answer['id']}: triggered (exchange {fired}), {answer['status']}"
    return f"route {answer['id']}: {answer['status']}"


def render(kind: str, answer: Any) -> str:
    """The readable form of an answer of kind ``routes``, ``route``, ``failures``,
    ``inflight``, ``reload`` or ``status``."""
    if kind == "routes":
        return _routes(answer)
    if kind == "route":
        return _route(answer)
    if kind == "failures":
        return _failures(answer)
    if kind == "inflight":
        return _inflight(answer)
    if kind == "reload":
        return _reload(answer)
    return _status(answer)


def run(url: str, kind: str, method: str, path: str, as_json: bool, timeout: float = 10.0) -> int:
    """Call, print, and return the exit code (1 with one line on stderr on any error)."""
    try:
        answer = call(url, method, path, timeout)
    except RemoteError as error:
        print(f"eip: error: {error}", file=sys.stderr)
        return 1
    print(json.dumps(answer, indent=2) if as_json else render(kind, answer))
    return 0
