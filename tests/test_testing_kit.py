"""The test kit: advice, producer template, manual clock."""

from __future__ import annotations

import asyncio

import pytest

from eip import Context, Exchange, LifecycleError, RouteBuilder, otherwise, when
from eip.testing import ManualClock, advice


class Sync(RouteBuilder):
    def configure(self) -> None:
        (
            self.from_("seda:crm-events")
            .route_id("sync")
            .choice(
                when(lambda ex: ex.body == "vip").to("direct:erp-priority"),
                otherwise().to("direct:erp"),
            )
            .to("log:sync")
        )
        self.from_("direct:erp").route_id("erp").to("mock:erp-real")
        self.from_("direct:erp-priority").route_id("erp-priority").to("mock:erp-real")


async def test_replace_from_and_mock_endpoints_skip(eip_context: Context) -> None:
    eip_context.add_routes(Sync())
    advice(eip_context, "sync").replace_from("direct:test").mock_endpoints("direct:erp*", skip=True)
    await eip_context.start()
    template = eip_context.template()
    await template.send("direct:test", "vip")
    await template.send("direct:test", "std")
    assert eip_context.mock("direct:erp-priority").received_bodies == ["vip"]
    assert eip_context.mock("direct:erp").received_bodies == ["std"]
    assert eip_context.mock("erp-real").count == 0  # skipped the real endpoints


async def test_mock_endpoints_without_skip_still_sends(eip_context: Context) -> None:
    eip_context.add_routes(Sync())
    advice(eip_context, "sync").replace_from("direct:test").mock_endpoints("direct:*")
    await eip_context.start()
    await eip_context.template().send("direct:test", "std")
    assert eip_context.mock("direct:erp").count == 1
    assert eip_context.mock("erp-real").count == 1


async def test_intercept_send(eip_context: Context) -> None:
    seen: list[str] = []

    def spy(exchange: Exchange) -> None:
        seen.append(exchange.body)
        exchange.body = exchange.body.upper()

    eip_context.add_routes(Sync())
    advice(eip_context, "erp").intercept_send("mock:*", spy)
    await eip_context.start()
    await eip_context.template().send("direct:erp", "abc")
    assert seen == ["abc"]
    assert eip_context.mock("erp-real").received_bodies == ["ABC"]


async def test_advice_errors(eip_context: Context) -> None:
    eip_context.add_routes(Sync())
    with pytest.raises(LifecycleError, match="no route 'nope' to advise"):
        advice(eip_context, "nope")
    await eip_context.start()
    with pytest.raises(LifecycleError, match="before the context starts"):
        advice(eip_context, "sync")


async def test_template_send_and_request(eip_context: Context) -> None:
    class Echo(RouteBuilder):
        def configure(self) -> None:
            self.from_("direct:echo").route_id("echo").transform(lambda ex: f"echo {ex.body}")

    eip_context.add_routes(Echo())
    await eip_context.start()
    template = eip_context.template()
    assert await template.request("direct:echo", "hi") == "echo hi"
    exchange = await template.send("direct:echo", "x", {"h": 1})
    assert exchange.body == "echo x"
    assert exchange.headers == {"h": 1}
    assert exchange.exception is None


async def test_manual_clock_wakes_in_order() -> None:
    clock = ManualClock(start=100.0)
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append((name, clock.time()))

    tasks = [asyncio.create_task(sleeper(n, s)) for n, s in [("c", 3), ("a", 1), ("b", 2)]]
    await clock.wait_for_sleepers(3)
    await clock.advance(1.5)
    assert woke == [("a", 101.0)]
    await clock.advance(5)
    assert woke == [("a", 101.0), ("b", 102.0), ("c", 103.0)]
    assert clock.time() == 106.5
    await asyncio.gather(*tasks)
    with pytest.raises(TimeoutError):
        await clock.wait_for_sleepers(1, timeout=0.01)
