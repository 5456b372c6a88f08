"""Operations endpoints of ``eip run``: liveness, readiness and Prometheus metrics.

On their own port (``--management-port``, ``$EIP_MANAGEMENT_PORT``, default 8081), apart from
the routes' HTTP server, so a load balancer's or Kubernetes' probes never compete with traffic
and the metrics are never exposed on a public API port by accident.

- ``GET /health/live``: 200 while the process serves requests at all.
- ``GET /health/ready``: 200 when every auto-started route is started, every consumer is
  connected and no component reports a problem (a RabbitMQ connection that dropped or that
  the broker blocked, a producer whose channel is being reopened), else 503 with the routes
  (and shared connections) that are not ready and why; a route that waits to start under
  supervision says ``waiting to start (attempt 3, next in 4s): <the last error>``.
- ``GET /metrics``: Prometheus text format (see :mod:`eip.runtime.metrics`).
- the control API (``/routes``...): see :mod:`eip.server.control`.
- ``GET /console``: the live console, see :mod:`eip.server.console`.
- ``POST /reload``: reload the route files, draining what changes (see
  :mod:`eip.runtime.reload`); token-protected as the control API's changes are.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from eip.components.http.server import HttpServer, Receive, Scope, Send, respond
from eip.components.http.server import ServerSettings as _Settings
from eip.runtime.route import RouteStatus

if TYPE_CHECKING:
    from eip.runtime.context import Context
    from eip.runtime.reload import Reloader
    from eip.server.control import ControlApi

__all__ = ["ManagementServer", "readiness"]

_encode = msgspec.json.Encoder().encode


def readiness(context: Context) -> tuple[bool, dict[str, str]]:
    """Whether the context is ready, and for each route that is not, why."""
    problems: dict[str, str] = {}
    for route in context.routes.values():
        waiting = route.waiting  # supervised start: why it waits, attempts, next try
        if waiting is not None:
            problems[route.id] = waiting
        elif route.model.auto_startup and route.status is not RouteStatus.STARTED:
            problems[route.id] = f"route is {route.status.value}"
        elif route.consumer is not None and not route.consumer.ready:
            problems[route.id] = route.consumer.problem or "consumer not connected"
    for component in context.components():
        problems.update(component.problems())
    return context.ready and not problems, problems


class _Live:
    async def handle(self, scope: Scope, receive: Receive, send: Send, params: Any) -> None:
        await respond(send, 200, b'{"status":"live"}')


class _Ready:
    def __init__(self, context: Context) -> None:
        self.context = context

    async def handle(self, scope: Scope, receive: Receive, send: Send, params: Any) -> None:
        ready, problems = readiness(self.context)
        if ready:
            await respond(send, 200, b'{"status":"ready"}')
        else:
            if not self.context.started:
                problems.setdefault("context", "not started")
            await respond(send, 503, _encode({"status": "not ready", "routes": problems}))


class _Metrics:
    def __init__(self, context: Context) -> None:
        self.context = context

    async def handle(self, scope: Scope, receive: Receive, send: Send, params: Any) -> None:
        metrics = self.context.metrics
        if metrics is None:
            await respond(send, 404, b'{"error":"metrics are off for this context"}')
            return
        body, content_type = metrics.render()
        headers = [
            (b"content-type", content_type.encode()),
            (b"content-length", str(len(body)).encode()),
        ]
        await respond(send, 200, body, headers)


class _Reload:
    """``POST /reload``: reload the route files (token-protected like every change): 200 with
    what changed, 422 with the error when the new files are invalid (nothing changed), 409
    when this server cannot reload (not started by ``eip run`` from route files)."""

    def __init__(self, control: ControlApi, reloader: Reloader | None) -> None:
        self.control = control
        self.reloader = reloader

    async def handle(self, scope: Scope, receive: Receive, send: Send, params: Any) -> None:
        refused = self.control.refuse(scope)
        if refused is not None:
            await respond(send, *refused)
            return
        if self.reloader is None:
            body = {
                "ok": False,
                "error": "this server cannot reload: it was not started by 'eip run' from "
                "route files",
            }
            await respond(send, 409, _encode(body))
            return
        report = await self.reloader.reload()
        await respond(send, 200 if report.ok else 422, _encode(report.as_dict()))


class ManagementServer:
    """The operations endpoints on their own small HTTP server."""

    def __init__(
        self,
        context: Context,
        host: str = "0.0.0.0",
        port: int = 8081,
        *,
        token: str | None = None,
        reloader: Reloader | None = None,
    ) -> None:
        from eip.server.console import Console
        from eip.server.control import ControlApi

        self.context = context
        settings = _Settings(host=host, port=port, openapi_path="", max_concurrency=100)
        self.http = HttpServer(settings, host, port)
        self.http.add("/health/live", ["GET"], _Live())
        self.http.add("/health/ready", ["GET"], _Ready(context))
        self.http.add("/metrics", ["GET"], _Metrics(context))
        control = ControlApi(context, token)
        control.install(self.http)
        self.http.add("/reload", ["POST"], _Reload(control, reloader))
        Console(context).install(self.http)

    @property
    def base_url(self) -> str:
        return self.http.base_url

    async def start(self) -> None:
        await self.http.start()

    async def stop(self) -> None:
        await self.http.stop()
