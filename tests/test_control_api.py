"""The control API on the management port, against a real server on 127.0.0.1: routes and
their counters, the step tree, the failure history, stop/start behind a bearer token, clear
404/405 answers, and the OpenAPI document."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate
from pytest_asyncio import fixture as async_fixture

from eip import Context, RouteBuilder, otherwise, when
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
    await template.send("direct:broken", b"\xff\xfe" + b"x" * 5000, {"api_key": "k-123"})
    await template.send("direct:broken", "second", {"eip.message.id": "m-2"})
    answer = await client.get("/routes/broken/failures")
    assert answer.status_code == 200
    failures = answer.json()["failures"]
    assert [f["message_id"] for f in failures] == ["m-2", None]  # newest first
    old = failures[1]
    assert old["headers"]["api_key"] == "***"
    assert "k-123" not in answer.text
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
