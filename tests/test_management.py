"""The operations endpoints of ``eip run``: liveness, readiness, Prometheus metrics."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pytest_asyncio import fixture as async_fixture

from eip import Context, RouteBuilder
from eip.components.rabbitmq import rabbitmq
from eip.server.management import ManagementServer
from tests.rabbitmq.vhosts import BrokerVhost, broker_vhost

__all__ = ["broker_vhost"]  # a fixture, used by name


class Routes(RouteBuilder):
    def __init__(self, queue: str | None = None, url: str = "") -> None:
        super().__init__()
        self.queue = queue
        self.url = url  # the broker URL ("" for the default), e.g. a test's own vhost

    def configure(self) -> None:
        self.from_("direct:orders").route_id("orders").set_body("ok")
        self.from_("direct:broken").route_id("broken").process(lambda ex: 1 / 0)
        if self.queue is not None:
            events = rabbitmq("", queue=self.queue, auto_delete=True, url=self.url)
            self.from_(events).route_id("events")


@async_fixture
async def ops() -> AsyncIterator[Any]:
    started: list[tuple[Context, ManagementServer]] = []

    async def start(queue: str | None = None, url: str = "") -> tuple[Context, str]:
        context = Context(shutdown_timeout=5, metrics=True)
        context.add_routes(Routes(queue, url))
        server = ManagementServer(context, "127.0.0.1", 0)
        await server.start()
        started.append((context, server))
        await context.start()
        return context, server.base_url

    try:
        yield start
    finally:
        for context, server in started:
            await context.stop()
            await server.stop()


async def test_live_and_ready(ops: Any) -> None:
    context, url = await ops()
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"{url}/health/live")).json() == {"status": "live"}
        ready = await client.get(f"{url}/health/ready")
        assert ready.status_code == 200
        await context.stop_route("orders")
        not_ready = await client.get(f"{url}/health/ready")
        assert not_ready.status_code == 503
        assert not_ready.json()["routes"] == {"orders": "route is stopped"}
        await context.start_route("orders")
        assert (await client.get(f"{url}/health/ready")).status_code == 200


async def test_metrics_count_exchanges_per_route(ops: Any) -> None:
    context, url = await ops()
    template = context.template()
    for _ in range(3):
        await template.send("direct:orders", "x")
    await template.send("direct:broken", "x")
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{url}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {
        (s.name, s.labels.get("route")): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }
    assert samples[("eip_exchanges_total", "orders")] == 3
    assert samples[("eip_exchanges_failed_total", "broken")] == 1
    assert samples[("eip_exchange_duration_seconds_count", "orders")] == 3
    assert samples[("eip_exchanges_inflight", "orders")] == 0
    assert samples[("eip_route_up", "orders")] == 1
    assert samples[("eip_context_ready", None)] == 1


@pytest.mark.rabbitmq
async def test_ready_goes_false_when_a_consumer_loses_its_connection(
    ops: Any, broker_vhost: BrokerVhost
) -> None:
    """The broker closes the connections of the test's own vhost (never the shared ``/``)."""
    queue = f"ops-{uuid.uuid4().hex[:8]}"
    _, url = await ops(queue, broker_vhost.url)
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"{url}/health/ready")).status_code == 200
        # The outage lasts as long as the reconnect (a few ms, while rabbitmqctl is still
        # running): sample the endpoint all along, not after the command returned.
        answers: list[tuple[int, Any]] = []
        sampling = True

        async def sample() -> None:
            while sampling:
                answer = await client.get(f"{url}/health/ready")
                answers.append((answer.status_code, answer.json()))

        sampler = asyncio.create_task(sample())
        await asyncio.wait_for(broker_vhost.close_connections("ops test"), 60)
        for _ in range(500):  # the link reconnects by itself, then readiness comes back
            if answers and answers[-1][0] == 200 and any(a[0] == 503 for a in answers):
                break
            await asyncio.sleep(0.01)
        sampling = False
        await sampler
        down = [body for status, body in answers if status == 503]
        assert down, "readiness never went false after the broker closed the connection"
        # The route and the shared connection both say why: the broker's own reason.
        assert "CONNECTION_FORCED - ops test" in down[0]["routes"]["events"]
        assert any(
            name.startswith("rabbitmq amqp://guest:***@") and "CONNECTION_FORCED" in reason
            for name, reason in down[0]["routes"].items()
        )
        assert (await client.get(f"{url}/health/ready")).status_code == 200
