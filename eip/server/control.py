"""The control API on the management port: what runs, how it fares, and why it fails.

JSON over HTTP, documented as OpenAPI at ``/management/openapi.json``:

- ``GET /routes``: every route with its id, description, status, from-URI (redacted),
  counters (exchanges total, failed, in flight; processing time mean and p99 over the last
  few minutes when the context has metrics on; a consumer's own, such as a ``cron:``
  route's ``schedule``: fired, overlaps skipped, misfires...) and its last failure;
- ``GET /routes/{id}``: the same, plus the route's model as a tree of steps, each with the
  id of its node in the route's picture (``node``) and, when metrics are on, each send's
  counters (``sends``: sent, failed, mean ms; :mod:`eip.runtime.step_counters`);
- ``GET /routes/{id}/failures``: the route's recent failed exchanges, newest first
  (:mod:`eip.runtime.failures`);
- ``GET /routes/{id}/inflight``: the exchanges in flight, oldest first, with their ages;
- ``POST /routes/{id}/stop``, ``/start``, ``/suspend``, ``/resume`` and ``/trigger`` (run a
  timer or cron route now), see :mod:`eip.runtime.operations`. An operation that does not fit
  the route's state (suspend a stopped route, resume one that is not suspended, trigger one
  that is not a timer) is 409, saying why.

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
from eip.dsl.model import RouteModel, StepDef
from eip.errors import redact_uri
from eip.runtime import operations
from eip.runtime.failures import FailureRecord
from eip.runtime.route import RouteStatus
from eip.runtime.step_counters import step_counters
from eip.server.graph import build_graph, node_id_for_step_path
from eip.server.graph_model import Chain, Fan, Leaf

if TYPE_CHECKING:
    from eip.components.http.server import HttpServer
    from eip.runtime.context import Context
    from eip.runtime.route import Route

__all__ = ["ControlApi", "route_summary", "send_counters", "step_tree"]

_encode = msgspec.json.Encoder().encode
WINDOW = 300.0  # seconds of processing times behind "mean" and "p99"


def _error(status: int, text: str) -> tuple[int, bytes]:
    return status, _encode({"error": text})


def step_tree(
    steps: list[StepDef],
    prefix: str = "",
    chain: Chain | None = None,
    sends: dict[str, dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """The steps as data: path (``3/when(...)/2``), kind, description, nested branches.

    With ``chain`` (the same steps in the route's graph), each step has ``node``, its node id
    in the route's picture (``crm-sync/3/when-1/2``), and, when ``sends`` has counters for
    that node, ``sends``."""
    tree = []
    items = chain.items if chain is not None else []
    for number, step in enumerate(steps, 1):
        path = f"{prefix}{number}"
        node: dict[str, Any] = {"path": path, "kind": step.kind, "describe": step.describe()}
        item = items[number - 1] if number <= len(items) else None
        lanes: list[tuple[str, Chain]] = []
        if item is not None:
            info = item.node if isinstance(item, Leaf) else item.head
            node["node"] = info.id
            if sends is not None and info.id in sends:
                node["sends"] = sends[info.id]
            if isinstance(item, Fan):
                lanes = item.branches  # a choice's lanes: its whens, then otherwise
        branches = []
        for index, (label, children) in enumerate(step.children()):
            lane = lanes[index][1] if index < len(lanes) else None
            branches.append(
                {"label": label, "steps": step_tree(children, f"{path}/{label}/", lane, sends)}
            )
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
    own = getattr(consumer, "counters", None)  # a consumer's own (cron: "schedule")
    if callable(own):
        counters.update(own())
    last = context.failures.last(route.id)
    suspended = route.status is RouteStatus.SUSPENDED
    return {
        "id": route.id,
        "description": model.description,
        "status": route.status.value,
        "from": redact_uri(route.source_uri),
        "ready": not suspended and route.waiting is None and (consumer is None or consumer.ready),
        "problem": "route suspended"
        if suspended
        else None
        if consumer is None
        else consumer.problem,
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
        # route id -> (model, compiler step path -> node id): the send counters' nodes
        self._send_nodes: dict[str, tuple[RouteModel, dict[str, str]]] = {}

    def install(self, http: HttpServer) -> None:
        http.add("/routes", ["GET"], _Handler(self._routes))
        http.add("/routes/{route_id}", ["GET"], _Handler(self._route))
        http.add("/routes/{route_id}/failures", ["GET"], _Handler(self._failures))
        http.add("/routes/{route_id}/inflight", ["GET"], _Handler(self._inflight))
        for action in ("stop", "start", "suspend", "resume", "trigger"):
            run = getattr(self, f"_{action}")
            http.add(f"/routes/{{route_id}}/{action}", ["POST"], _Handler(run, mutation=self))
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
        model = route.model
        summary = route_summary(self.context, route, self._windows)
        graph = build_graph(model)
        sends = send_counters(self.context, model, self._send_nodes)
        summary["steps"] = step_tree(model.steps, chain=Chain(graph.main.items[1:]), sends=sends)
        summary["on_exception"] = [
            {
                "describe": clause.describe(),
                "node": _head_id(graph.handlers[n]),
                "steps": step_tree(
                    clause.steps, chain=Chain(graph.handlers[n].items[1:]), sends=sends
                ),
            }
            for n, clause in enumerate(model.on_exceptions)
        ]
        return 200, _encode(summary)

    async def _failures(self, params: dict[str, str] | None) -> tuple[int, bytes]:
        route = self._find(params)
        if isinstance(route, tuple):
            return route
        return 200, _encode({"route": route.id, "failures": self.context.failures.of(route.id)})

    async def _inflight(self, params: dict[str, str] | None) -> tuple[int, bytes]:
        route = self._find(params)
        if isinstance(route, tuple):
            return route
        exchanges = operations.inflight_exchanges(route)
        return 200, _encode({"route": route.id, "inflight": route.inflight, "exchanges": exchanges})

    async def _operate(
        self, params: dict[str, str] | None, verb: str, run: Any
    ) -> tuple[int, bytes]:
        route = self._find(params)
        if isinstance(route, tuple):
            return route
        try:
            await run(self.context, route.id)
        except operations.RouteStateError as exc:
            return _error(409, str(exc))
        except Exception as exc:
            return _error(500, f"route {route.id!r} could not {verb}: {redact_uri(str(exc))}")
        return 200, _encode({"id": route.id, "status": route.status.value})

    async def _stop(self, params: dict[str, str] | None) -> tuple[int, bytes]:
        return await self._operate(params, "stop", operations.stop_route)

    async def _start(self, params: dict[str, str] | None) -> tuple[int, bytes]:
        return await self._operate(params, "start", operations.start_route)

    async def _suspend(self, params: dict[str, str] | None) -> tuple[int, bytes]:
        return await self._operate(params, "suspend", operations.suspend_route)

    async def _resume(self, params: dict[str, str] | None) -> tuple[int, bytes]:
        return await self._operate(params, "resume", operations.resume_route)

    async def _trigger(self, params: dict[str, str] | None) -> tuple[int, bytes]:
        route = self._find(params)
        if isinstance(route, tuple):
            return route
        try:
            exchange = operations.trigger_route(self.context, route.id)
        except operations.RouteStateError as exc:
            return _error(409, str(exc))
        body = {"id": route.id, "status": route.status.value, "exchange_id": exchange.id}
        return 202, _encode(body)

    async def _openapi(self, params: dict[str, str] | None) -> tuple[int, bytes]:
        from eip.server.control_openapi import document

        return 200, _encode(document())


def send_counters(
    context: Context, model: RouteModel, places: dict[str, tuple[RouteModel, dict[str, str]]]
) -> dict[str, dict[str, Any]] | None:
    """Node id -> the route's send counters (sent, failed, mean ms of the sends that waited),
    or None when the context counts nothing (metrics off). ``places`` caches, per route, where
    each compiler step path is drawn (the console keeps one too)."""
    if context.metrics is None:
        return None
    cached = places.get(model.route_id)
    if cached is None or cached[0] is not model:
        cached = places[model.route_id] = (model, {})
    where_nodes = cached[1]
    totals: dict[str, list[float]] = {}
    for where, counter in step_counters(context).of(model).items():
        node = where_nodes.get(where)
        if node is None:
            node = where_nodes[where] = node_id_for_step_path(model, where)
        total = totals.setdefault(node, [0, 0, 0, 0.0])
        total[0] += counter.sent
        total[1] += counter.failed
        total[2] += counter.waited
        total[3] += counter.seconds
    return {
        node: {
            "sent": int(sent),
            "failed": int(failed),
            "mean_ms": round(seconds / waited * 1000, 3) if waited else None,
        }
        for node, (sent, failed, waited, seconds) in totals.items()
    }


def _head_id(chain: Chain) -> str | None:
    head = chain.items[0] if chain.items else None
    return head.node.id if isinstance(head, Leaf) else None


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
