"""The control API on the management port: what runs, how it fares, and why it fails.

JSON over HTTP, documented as OpenAPI at ``/management/openapi.json``:

- ``GET /routes``: every route with its id, description, status, from-URI (redacted),
  counters (exchanges total, failed, in flight; processing time mean and p99 over the last
  few minutes when the context has metrics on) and its last failure;
- ``GET /routes/{id}``: the same, plus the route's model as a tree of steps;
- ``GET /routes/{id}/failures``: the route's recent failed exchanges, newest first
  (:mod:`eip.runtime.failures`);
- ``POST /routes/{id}/stop`` and ``POST /routes/{id}/start``.

**Mutations need a bearer token**, ``EIP_MANAGEMENT_TOKEN`` (or ``token=``): without one
configured they answer 403 saying how to enable them; with one, a missing or wrong token gets
401 (compared in constant time). Reads stay open, as ``/metrics`` is. An unknown route is 404
and a wrong method 405, each with a JSON body that says so.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from typing import TYPE_CHECKING, Any

import msgspec

from eip.components.http.asgi import Receive, Scope, Send, respond
from eip.dsl.model import StepDef
from eip.errors import redact_uri
from eip.runtime.failures import FailureRecord

if TYPE_CHECKING:
    from eip.components.http.server import HttpServer
    from eip.runtime.context import Context
    from eip.runtime.route import Route

__all__ = ["ControlApi", "route_summary", "step_tree"]

_encode = msgspec.json.Encoder().encode
WINDOW = 300.0  # seconds of processing times behind "mean" and "p99"


def _error(status: int, text: str) -> tuple[int, bytes]:
    return status, _encode({"error": text})


def step_tree(steps: list[StepDef], prefix: str = "") -> list[dict[str, Any]]:
    """The steps as data: path (``3/when 1/2``), kind, description, nested branches."""
    tree = []
    for number, step in enumerate(steps, 1):
        path = f"{prefix}{number}"
        node: dict[str, Any] = {"path": path, "kind": step.kind, "describe": step.describe()}
        branches = [
            {"label": label, "steps": step_tree(children, f"{path}/{label}/")}
            for label, children in step.children()
        ]
        if branches:
            node["branches"] = branches
        tree.append(node)
    return tree


class _Window:
    """Processing-time snapshots of one route's histogram, to answer for the recent past."""

    def __init__(self) -> None:
        self.snapshots: list[tuple[float, list[int], float]] = []

    def stats(self, counts: list[int], total: float, bounds: tuple[float, ...]) -> dict[str, Any]:
        now = time.monotonic()
        if not self.snapshots:  # the first look: the baseline is the start (all zeros)
            self.snapshots.append((now, [0] * len(counts), 0.0))
        kept = [s for s in self.snapshots if now - s[0] <= WINDOW]
        self.snapshots = kept or self.snapshots[-1:]
        _, old_counts, old_total = self.snapshots[0]
        if now - self.snapshots[-1][0] >= 10:
            self.snapshots.append((now, list(counts), total))
        recent = [a - b for a, b in zip(counts, old_counts, strict=True)]
        n = sum(recent)
        if n == 0:
            return {"window_seconds": WINDOW, "count": 0, "mean_ms": None, "p99_ms": None}
        rank, seen, p99 = 0.99 * n, 0, float("inf")
        for index, count in enumerate(recent):
            seen += count
            if seen >= rank:
                p99 = bounds[index] if index < len(bounds) else float("inf")
                break
        return {
            "window_seconds": WINDOW,
            "count": n,
            "mean_ms": round((total - old_total) / n * 1000, 3),
            "p99_ms": None if p99 == float("inf") else round(p99 * 1000, 3),  # bucket bound
        }


def route_summary(context: Context, route: Route, windows: dict[str, _Window]) -> dict[str, Any]:
    model = route.model
    counters: dict[str, Any] = {
        "exchanges_total": route.exchanges_total,
        "exchanges_failed": route.exchanges_failed,
        "inflight": route.inflight,
    }
    timings = context.metrics.timings(route.id) if context.metrics is not None else None
    if timings is not None:
        window = windows.setdefault(route.id, _Window())
        counters["processing"] = window.stats(timings.counts, timings.sum, timings.bounds)
    consumer = route.consumer
    last = context.failures.last(route.id)
    return {
        "id": route.id,
        "description": model.description,
        "status": route.status.value,
        "from": redact_uri(route.source_uri),
        "ready": route.waiting is None and (consumer is None or consumer.ready),
        "problem": None if consumer is None else consumer.problem,
        "waiting": route.waiting,  # supervised start: why it waits to start, or None
        "counters": counters,
        "last_failure": None if last is None else _brief(last),
    }


def _brief(record: FailureRecord) -> dict[str, Any]:
    return {
        "time": record.time,
        "exception_type": record.exception_type,
        "message": record.message,
        "failed_at": record.failed_at,
        "exchange_id": record.exchange_id,
    }


class ControlApi:
    """Registers the control endpoints on the management server."""

    def __init__(self, context: Context, token: str | None = None) -> None:
        self.context = context
        configured = token if token is not None else os.environ.get("EIP_MANAGEMENT_TOKEN", "")
        self._token_digest = hashlib.sha256(configured.encode()).digest() if configured else None
        self._windows: dict[str, _Window] = {}

    def install(self, http: HttpServer) -> None:
        http.add("/routes", ["GET"], _Handler(self._routes))
        http.add("/routes/{route_id}", ["GET"], _Handler(self._route))
        http.add("/routes/{route_id}/failures", ["GET"], _Handler(self._failures))
        http.add("/routes/{route_id}/stop", ["POST"], _Handler(self._stop, mutation=self))
        http.add("/routes/{route_id}/start", ["POST"], _Handler(self._start, mutation=self))
        http.add("/management/openapi.json", ["GET"], _Handler(self._openapi))

    # -- auth ------------------------------------------------------------------------------
    def refuse(self, scope: Scope) -> tuple[int, bytes] | None:
        """None when the request may change things, else the answer that says why not."""
        if self._token_digest is None:
            return _error(
                403,
                "changes are disabled: start the server with EIP_MANAGEMENT_TOKEN set, "
                "then send 'Authorization: Bearer <token>'",
            )
        given = b""
        for name, value in scope.get("headers", ()):
            if name == b"authorization" and value[:7].lower() == b"bearer ":
                given = value[7:].strip()
        if not hmac.compare_digest(hashlib.sha256(given).digest(), self._token_digest):
            return _error(401, "a valid 'Authorization: Bearer <token>' header is required")
        return None

    # -- handlers ----------------------------------------------------------------------------
    def _find(self, params: dict[str, str] | None) -> Route | tuple[int, bytes]:
        route_id = (params or {}).get("route_id", "")
        route = self.context.routes.get(route_id)
        if route is None:
            known = ", ".join(sorted(self.context.routes)) or "none"
            return _error(404, f"no route {route_id!r} (routes: {known})")
        return route

    async def _routes(self, params: dict[str, str] | None) -> tuple[int, bytes]:
        routes = [
            route_summary(self.context, route, self._windows)
            for route in self.context.routes.values()
        ]
        return 200, _encode({"routes": routes})

    async def _route(self, params: dict[str, str] | None) -> tuple[int, bytes]:
        route = self._find(params)
        if isinstance(route, tuple):
            return route
        summary = route_summary(self.context, route, self._windows)
        summary["steps"] = step_tree(route.model.steps)
        summary["on_exception"] = [
            {"describe": clause.describe(), "steps": step_tree(clause.steps)}
            for clause in route.model.on_exceptions
        ]
        return 200, _encode(summary)

    async def _failures(self, params: dict[str, str] | None) -> tuple[int, bytes]:
        route = self._find(params)
        if isinstance(route, tuple):
            return route
        return 200, _encode({"route": route.id, "failures": self.context.failures.of(route.id)})

    async def _stop(self, params: dict[str, str] | None) -> tuple[int, bytes]:
        route = self._find(params)
        if isinstance(route, tuple):
            return route
        await self.context.stop_route(route.id)
        return 200, _encode({"id": route.id, "status": route.status.value})

    async def _start(self, params: dict[str, str] | None) -> tuple[int, bytes]:
        route = self._find(params)
        if isinstance(route, tuple):
            return route
        try:
            await self.context.start_route(route.id)
        except Exception as exc:
            return _error(500, f"route {route.id!r} could not start: {redact_uri(str(exc))}")
        return 200, _encode({"id": route.id, "status": route.status.value})

    async def _openapi(self, params: dict[str, str] | None) -> tuple[int, bytes]:
        from eip.server.control_openapi import document

        return 200, _encode(document())


class _Handler:
    def __init__(self, run: Any, mutation: ControlApi | None = None) -> None:
        self._run = run
        self._mutation = mutation

    async def handle(
        self, scope: Scope, receive: Receive, send: Send, params: dict[str, str] | None
    ) -> None:
        if self._mutation is not None:
            refused = self._mutation.refuse(scope)
            if refused is not None:
                await respond(send, *refused)
                return
        status, body = await self._run(params)
        await respond(send, status, body)
