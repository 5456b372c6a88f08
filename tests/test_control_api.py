"""The control API on the management port, against a real server on 127.0.0.1: routes and
their counters, the step tree with each send's counters, the failure history, stop/start
behind a bearer token, clear 404/405 answers, and the OpenAPI document."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate
from pytest_asyncio import fixture as async_fixture

from eip import Context, RouteBuilder, otherwise, when
from eip.server.graph import nodes
from eip.server.management import ManagementServer

TOKEN = "s3cret-token"


class Routes(RouteBuilder):
    def configure(self) -> None:
        (
            self.from_("direct:orders")
            .route_id("orders")
            .description("orders from the CRM")
            .choice(
                when(lambda ex: ex.body == "vip").set_body("gold"),
                otherwise().set_body("ok"),
            )
        )

        def refuse(exchange: Any) -> None:
            raise ValueError(f"customer {exchange.body!r} is closed")

        self.from_("direct:broken").route_id("broken").process(refuse)


@async_fixture
async def ops() -> AsyncIterator[Any]:
    started: list[tuple[Context, ManagementServer]] = []

    async def start(token: str | None = None) -> tuple[Context, httpx.AsyncClient]:
        context = Context(shutdown_timeout=5, metrics=True)
        context.add_routes(Routes())
        server = ManagementServer(context, "127.0.0.1", 0, token=token or "")
        await server.start()
        started.append((context, server))
        await context.start()
        return context, httpx.AsyncClient(base_url=server.base_url, timeout=5)

    try:
        yield start
    finally:
        for context, server in started:
            await context.stop()
            await server.stop()


async def test_routes_with_counters_and_last_failure(ops: Any) -> None:
    context, client = await ops()
    template = context.template()
    for body in ("a", "vip", "b"):
        await template.send("direct:orders", body)
    await template.send("direct:broken", "acme", {"password": "hunter2", "eip.message.id": "m-1"})
    answer = await client.get("/routes")
    assert answer.status_code == 200
    routes = {r["id"]: r for r in answer.json()["routes"]}
    assert set(routes) == {"orders", "broken"}
    orders = routes["orders"]
    assert orders["status"] == "started"
    assert orders["description"] == "orders from the CRM"
    assert orders["from"] == "direct:orders"
    assert orders["counters"]["exchanges_total"] == 3
    assert orders["counters"]["exchanges_failed"] == 0
    assert orders["counters"]["inflight"] == 0
    assert orders["counters"]["processing"]["count"] == 3
    assert orders["counters"]["processing"]["mean_ms"] >= 0
    assert orders["last_failure"] is None
    broken = routes["broken"]
    assert broken["counters"]["exchanges_failed"] == 1
    assert broken["last_failure"]["exception_type"] == "builtins.ValueError"
    assert broken["last_failure"]["message"] == "customer 'acme' is closed"


async def test_route_detail_has_the_step_tree(ops: Any) -> None:
    _, client = await ops()
    answer = await client.get("/routes/orders")
    assert answer.status_code == 200
    steps = answer.json()["steps"]
    assert [s["kind"] for s in steps] == ["choice"]
    labels = [b["label"] for b in steps[0]["branches"]]
    assert len(labels) == 2
    assert steps[0]["branches"][0]["steps"][0]["path"].startswith("1/")


async def test_failure_history_is_redacted_and_capped(ops: Any) -> None:
    context, client = await ops()
    template = context.template()
    credentials = {"api_key": "k-123", "Proxy-Authorization": "Basic cDpx", "Cookie": "s=abc"}
    await template.send("direct:broken", b"\xff\xfe" + b"x" * 5000, dict(credentials))
    await template.send("direct:broken", "second", {"eip.message.id": "m-2"})
    answer = await client.get("/routes/broken/failures")
    assert answer.status_code == 200
    failures = answer.json()["failures"]
    assert [f["message_id"] for f in failures] == ["m-2", None]  # newest first
    old = failures[1]
    for name in credentials:
        assert old["headers"][name] == "***"
    for secret in ("k-123", "cDpx", "s=abc"):
        assert secret not in answer.text
    assert old["body_truncated"] is True
    assert old["body"].startswith("\\xff\\xfe")
    assert len(old["body"].encode()) <= 2048 + 8
    assert old["exception_type"] == "builtins.ValueError"
    assert old["failed_at"]


async def test_nothing_is_recorded_for_successes(ops: Any) -> None:
    context, client = await ops()
    for _ in range(20):
        await context.template().send("direct:orders", "x")
    assert (await client.get("/routes/orders/failures")).json()["failures"] == []


async def test_mutations_need_the_token(ops: Any) -> None:
    context, client = await ops()
    refused = await client.post("/routes/orders/stop")
    assert refused.status_code == 403
    assert "EIP_MANAGEMENT_TOKEN" in refused.json()["error"]
    assert context.routes["orders"].status.value == "started"

    context, client = await ops(TOKEN)
    assert (await client.post("/routes/orders/stop")).status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert (await client.post("/routes/orders/stop", headers=wrong)).status_code == 401
    good = {"Authorization": f"Bearer {TOKEN}"}
    stopped = await client.post("/routes/orders/stop", headers=good)
    assert stopped.status_code == 200
    assert stopped.json() == {"id": "orders", "status": "stopped"}
    assert context.routes["orders"].status.value == "stopped"
    assert (await client.get("/health/ready")).status_code == 503
    started = await client.post("/routes/orders/start", headers=good)
    assert started.json()["status"] == "started"
    assert (await client.get("/health/ready")).status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "status", "words"),
    [
        ("GET", "/routes/nope", 404, "no route 'nope'"),
        ("GET", "/routes/nope/failures", 404, "routes: broken, orders"),
        ("DELETE", "/routes/orders", 405, ""),
        ("GET", "/routes/orders/stop", 405, ""),
        ("GET", "/no/such/thing", 404, ""),
    ],
)
async def test_bad_ids_and_verbs(ops: Any, method: str, path: str, status: int, words: str) -> None:
    _, client = await ops(TOKEN)
    answer = await client.request(method, path)
    assert answer.status_code == status
    assert answer.headers["content-type"] == "application/json"
    assert words in answer.text


async def test_openapi_document_is_valid(ops: Any) -> None:
    _, client = await ops()
    answer = await client.get("/management/openapi.json")
    assert answer.status_code == 200
    document = answer.json()
    validate(document)
    assert "/routes/{route_id}/failures" in document["paths"]
    for action in ("stop", "start", "suspend", "resume", "trigger"):
        assert "bearer" in str(document["paths"][f"/routes/{{route_id}}/{action}"]["post"])
    assert "409" in document["paths"]["/routes/{route_id}/resume"]["post"]["responses"]
    assert "200" in document["paths"]["/routes/{route_id}/inflight"]["get"]["responses"]
    assert "422" in document["paths"]["/reload"]["post"]["responses"]


class Sends(RouteBuilder):
    def configure(self) -> None:
        async def wait(exchange: Any) -> None:
            await asyncio.sleep(0.005)

        self.from_("direct:slow-erp").route_id("erp").process(wait)
        (
            self.from_("direct:in")
            .route_id("sends")
            .choice(
                when(lambda ex: ex.body == "eu").to("mock:eu"),
                otherwise().to("mock:other"),
            )
            .to("direct:slow-erp")
            .filter(lambda ex: ex.body == "fail")
            .to("direct:nobody")
        )


async def _sends_context(metrics: bool) -> tuple[Context, ManagementServer, httpx.AsyncClient]:
    context = Context(shutdown_timeout=5, metrics=metrics)
    context.add_routes(Sends())
    server = ManagementServer(context, "127.0.0.1", 0, token="")
    await server.start()
    await context.start()
    return context, server, httpx.AsyncClient(base_url=server.base_url, timeout=5)


def _flat(steps: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out = {}
    for step in steps:
        out[step["node"]] = step
        for branch in step.get("branches", ()):
            out.update(_flat(branch["steps"]))
    return out


async def test_step_tree_counts_each_send() -> None:
    context, server, client = await _sends_context(metrics=True)
    try:
        template = context.template()
        tree = _flat((await client.get("/routes/sends")).json()["steps"])
        assert tree["sends/1/when-1/1"]["sends"] == {"sent": 0, "failed": 0, "mean_ms": None}
        for body in ("eu", "us", "eu", "eu", "fail"):
            await template.send("direct:in", body)
        tree = _flat((await client.get("/routes/sends")).json()["steps"])
        # node ids are those of the console's picture of the route
        assert set(tree) <= {info.id for info in nodes(context.routes["sends"].model)}
        assert tree["sends/1/when-1/1"]["sends"]["sent"] == 3
        assert tree["sends/1/otherwise/1"]["sends"]["sent"] == 2
        erp = tree["sends/2"]["sends"]
        assert (erp["sent"], erp["failed"]) == (5, 0)
        assert erp["mean_ms"] >= 4  # a send that waited is timed: the called route sleeps 5 ms
        assert tree["sends/4"]["sends"] == {"sent": 0, "failed": 1, "mean_ms": None}
        assert "sends" not in tree["sends/1"]  # a choice sends nothing itself
        assert tree["sends/3"]["kind"] == "filter"
    finally:
        await context.stop()
        await server.stop()


async def test_without_metrics_nothing_is_counted() -> None:
    context, server, client = await _sends_context(metrics=False)
    try:
        await context.template().send("direct:in", "eu")
        tree = _flat((await client.get("/routes/sends")).json()["steps"])
        assert tree["sends/1/when-1/1"]["kind"] == "to"
        assert all("sends" not in step for step in tree.values())
        pipeline = context.routes["sends"].pipeline.run
        assert "sent" not in pipeline.eip_source  # type: ignore[attr-defined]
    finally:
        await context.stop()
        await server.stop()
