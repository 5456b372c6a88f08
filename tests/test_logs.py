"""Logs for machines: ``eip --log-format json`` writes one JSON object per line, and the lines
about an exchange carry its route id, exchange id and message id (and trace ids when traced)."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from eip import Exchange
from eip.logs import JsonFormatter, exchange_fields

ROOT = Path(__file__).resolve().parent.parent

ROUTES = """
from eip import RouteBuilder


def refuse(exchange):
    raise ValueError("customer 42 is closed")


class Failing(RouteBuilder):
    def configure(self) -> None:
        (
            self.from_("timer:once?repeat_count=1&delay=0.1")
            .route_id("failing")
            .set_header("eip.message.id", "m-42")
            .process(refuse)
        )
"""


def test_json_lines_from_a_running_server(tmp_path: Path) -> None:
    routes = tmp_path / "failing_routes.py"
    routes.write_text(ROUTES, encoding="utf-8")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "eip.cli",
            "--log-format",
            "json",
            "run",
            str(routes),
            "--no-management",
        ],
        cwd=ROOT,
        env={**os.environ, "EIP_HTTP_PORT": "0"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        lines: list[dict[str, object]] = []
        assert process.stdout is not None
        while time.monotonic() < deadline:
            raw = process.stdout.readline()
            if not raw:
                break
            lines.append(json.loads(raw))  # every line is one JSON object
            if any(line.get("logger") == "eip.route.failures" for line in lines):
                break
    finally:
        process.send_signal(signal.SIGTERM)
        rest, _ = process.communicate(timeout=20)
    lines += [json.loads(raw) for raw in rest.splitlines() if raw.strip()]
    assert process.returncode == 0
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    failure = next(line for line in lines if line["logger"] == "eip.route.failures")
    assert failure["level"] == "ERROR"
    assert failure["route_id"] == "failing"
    assert failure["message_id"] == "m-42"
    assert str(failure["exchange_id"]) in str(failure["message"])
    assert "customer 42 is closed" in str(failure["message"])


def test_trace_ids_and_exceptions() -> None:
    exchange = Exchange(b"x", {"eip.message.id": 7})
    exchange.trace_context = NonRecordingSpan(
        SpanContext(trace_id=0xABC, span_id=0xDEF, is_remote=False, trace_flags=TraceFlags(1))
    )
    record = logging.LogRecord("eip.test", logging.WARNING, __file__, 1, "hello %s", ("you",), None)
    for name, value in exchange_fields(exchange, "r1").items():
        setattr(record, name, value)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record.exc_info = sys.exc_info()
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "hello you"
    assert line["route_id"] == "r1"
    assert line["exchange_id"] == exchange.id
    assert line["message_id"] == "7"
    assert line["trace_id"] == f"{0xABC:032x}"
    assert line["span_id"] == f"{0xDEF:016x}"
    assert "RuntimeError: boom" in line["exception"]
    assert line["time"].endswith("+00:00")
