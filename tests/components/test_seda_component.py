"""``seda:`` - bounded in-memory queues between routes (eip/components/seda.py)."""

from __future__ import annotations

import asyncio

import pytest

from eip import (
    EndpointError,
    Exchange,
    ExchangeTimeoutError,
    RouteBuilder,
    RouteDefinitionError,
    seda,
)
from eip.components.seda import SedaComponent


def routes(configure):
    class Routes(RouteBuilder):
        def configure(self) -> None:
            configure(self)

    return Routes()


def seda_queue(context, name: str) -> asyncio.Queue[Exchange]:
    component = context.component("seda")
    assert isinstance(component, SedaComponent)
    return component.queues[name]


async def spin(rounds: int = 20) -> None:
    """Let other tasks run a few loop iterations (no real time passes)."""
    for _ in range(rounds):
        await asyncio.sleep(0)


class Gate:
    """An async processor that blocks every exchange until ``open()``."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self._open = asyncio.Event()
        self.bodies: list[object] = []

    async def __call__(self, exchange: Exchange) -> None:
        self.bodies.append(exchange.body)
        self.entered.set()
        await self._open.wait()

    def open(self) -> None:
        self._open.set()


async def test_messages_flow_to_the_consumer_route(eip_context):
    eip_context.add_routes(routes(lambda b: b.from_("seda:q").route_id("c").to("mock:out")))
    await eip_context.start()
    out = eip_context.mock("out").expect_bodies(1, 2, 3)
    template = eip_context.template()
    for n in (1, 2, 3):
        exchange = await template.send("seda:q", n, {"n": n})
        assert exchange.exception is None
    await out.assert_satisfied(timeout=2)
    assert out.received_headers == [{"n": 1}, {"n": 2}, {"n": 3}]


async def test_seda_between_routes(eip_context):
    def configure(b: RouteBuilder) -> None:
        b.from_("direct:in").route_id("producer").to(seda("hop")).to("mock:sent")
        b.from_("seda:hop").route_id("consumer").transform(lambda ex: ex.body * 2).to("mock:out")

    eip_context.add_routes(routes(configure))
    await eip_context.start()
    out = eip_context.mock("out").expect_bodies(2, 4)
    await eip_context.template().send("direct:in", 1)
    await eip_context.template().send("direct:in", 2)
    await out.assert_satisfied(timeout=2)
    assert eip_context.mock("sent").received_bodies == [1, 2]  # sender body unchanged


async def test_in_only_send_does_not_wait_for_the_consumer(eip_context):
    gate = Gate()
    eip_context.add_routes(
        routes(lambda b: b.from_("seda:q").route_id("c").process(gate).to("mock:out")),
    )
    await eip_context.start()
    exchange = await eip_context.template().send("seda:q", "x")
    assert exchange.exception is None
    assert eip_context.mock("out").count == 0  # the sender is already back
    gate.open()
    await eip_context.mock("out").expect_count(1).assert_satisfied(timeout=2)


async def test_a_copy_is_queued(eip_context):
    gate = Gate()
    seen: list[Exchange] = []
    eip_context.add_routes(
        routes(
            lambda b: (
                b.from_("seda:q").route_id("c").process(gate).process(seen.append).to("mock:out")
            )
        ),
    )
    await eip_context.start()
    sent = Exchange("original", {"h": "original"})
    sent.properties["p"] = "original"
    await eip_context.template().send_exchange("seda:q", sent)

    # mutate the sender's exchange after the send, before the consumer looks at it
    sent.headers["h"] = "changed"
    sent.headers["extra"] = True
    sent.properties["p"] = "changed"
    sent.body = "changed"

    gate.open()
    out = eip_context.mock("out").expect_count(1)
    await out.assert_satisfied(timeout=2)
    assert out.received_bodies == ["original"]
    assert out.received_headers == [{"h": "original"}]
    assert seen[0] is not sent
    assert seen[0].properties["p"] == "original"


async def test_bounded_queue_blocks_the_producer_instead_of_growing(eip_context):
    gate = Gate()
    sizes: list[int] = []

    def record_size(_ex: Exchange) -> None:
        sizes.append(seda_queue(eip_context, "q").qsize())

    eip_context.add_routes(
        routes(
            lambda b: (
                b.from_("seda:q?size=2")
                .route_id("c")
                .process(gate)
                .process(record_size)
                .to("mock:out")
            )
        ),
    )
    await eip_context.start()
    template = eip_context.template()
    queue = seda_queue(eip_context, "q")
    assert queue.maxsize == 2

    # 1: taken by the (blocked) consumer
    await template.send("seda:q?size=2", 1)
    await asyncio.wait_for(gate.entered.wait(), 2)
    assert queue.qsize() == 0
    # 2 and 3 fill the queue, the sends return at once
    await template.send("seda:q?size=2", 2)
    await template.send("seda:q?size=2", 3)
    assert queue.qsize() == 2
    # 4 and 5 find the queue full: their senders wait
    blocked = [
        asyncio.create_task(template.send("seda:q?size=2", 4)),
        asyncio.create_task(template.send("seda:q?size=2", 5)),
    ]
    await spin()
    assert not any(task.done() for task in blocked)
    assert queue.qsize() == 2
    sizes.append(queue.qsize())

    gate.open()
    results = await asyncio.wait_for(asyncio.gather(*blocked), 5)
    assert all(ex.exception is None for ex in results)
    out = eip_context.mock("out").expect_bodies(1, 2, 3, 4, 5)
    await out.assert_satisfied(timeout=2)
    assert max(sizes) <= 2
    assert queue.qsize() == 0


async def test_full_queue_with_block_when_full_false_fails_at_once(eip_context):
    await eip_context.start()
    template = eip_context.template()
    uri = "seda:nowait?size=1&block_when_full=false"
    first = await template.send(uri, 1)
    assert first.exception is None
    second = await template.send(uri, 2)
    assert isinstance(second.exception, EndpointError)
    assert "full" in str(second.exception)
    assert "seda:nowait" in str(second.exception)
    assert seda_queue(eip_context, "nowait").qsize() == 1


async def test_full_queue_error_from_a_route_fails_the_exchange(eip_context):
    gate = Gate()

    def configure(b: RouteBuilder) -> None:
        b.from_("direct:in").route_id("in").to(seda("q", size=1, block_when_full=False))
        b.from_(seda("q", size=1)).route_id("c").process(gate).to("mock:out")

    eip_context.add_routes(routes(configure))
    await eip_context.start()
    template = eip_context.template()
    assert (await template.send("direct:in", 1)).exception is None
    await asyncio.wait_for(gate.entered.wait(), 2)
    assert (await template.send("direct:in", 2)).exception is None  # queued
    failed = await template.send("direct:in", 3)
    assert isinstance(failed.exception, EndpointError)
    assert failed.exception.route_id == "in"
    gate.open()
    await eip_context.mock("out").expect_bodies(1, 2).assert_satisfied(timeout=2, settle=0.02)


async def test_offer_timeout_fails_with_exchange_timeout_error(eip_context):
    await eip_context.start()
    template = eip_context.template()
    uri = "seda:slow?size=1&offer_timeout=0.05"
    assert (await template.send(uri, 1)).exception is None
    failed = await template.send(uri, 2)
    assert isinstance(failed.exception, ExchangeTimeoutError)
    assert "seda:slow" in str(failed.exception)
    assert seda_queue(eip_context, "slow").qsize() == 1


async def test_offer_timeout_succeeds_when_room_appears_in_time(eip_context):
    await eip_context.start()
    template = eip_context.template()
    uri = "seda:slow?size=1&offer_timeout=5"
    await template.send(uri, 1)
    pending = asyncio.create_task(template.send(uri, 2))
    await spin()
    assert not pending.done()
    queue = seda_queue(eip_context, "slow")
    assert queue.get_nowait().body == 1  # make room
    sent = await asyncio.wait_for(pending, 5)
    assert sent.exception is None
    assert queue.get_nowait().body == 2


async def test_concurrent_consumers_process_in_parallel(eip_context):
    active = 0
    peak = 0
    three_in = asyncio.Event()

    async def work(_ex: Exchange) -> None:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        if active >= 3:
            three_in.set()
        await asyncio.wait_for(three_in.wait(), 5)
        await asyncio.sleep(0)
        active -= 1

    eip_context.add_routes(
        routes(
            lambda b: (
                b.from_("seda:work?concurrent_consumers=3")
                .route_id("c")
                .process(work)
                .to("mock:out")
            )
        ),
    )
    await eip_context.start()
    template = eip_context.template()
    for n in range(9):
        await template.send("seda:work?concurrent_consumers=3", n)
    out = eip_context.mock("out").expect_bodies(*range(9), any_order=True)
    await out.assert_satisfied(timeout=5)
    assert peak == 3


async def test_a_single_consumer_processes_one_at_a_time(eip_context):
    active = 0
    peak = 0

    async def work(_ex: Exchange) -> None:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await spin(5)
        active -= 1

    eip_context.add_routes(
        routes(lambda b: b.from_("seda:one").route_id("c").process(work).to("mock:out")),
    )
    await eip_context.start()
    for n in range(5):
        await eip_context.template().send("seda:one", n)
    await eip_context.mock("out").expect_bodies(0, 1, 2, 3, 4).assert_satisfied(timeout=5)
    assert peak == 1


async def test_in_out_request_returns_the_consumer_reply(eip_context):
    eip_context.add_routes(
        routes(
            lambda b: (
                b.from_("seda:rpc")
                .route_id("c")
                .transform(lambda ex: ex.body.upper())
                .set_header("replied", True)
            )
        ),
    )
    await eip_context.start()
    template = eip_context.template()
    assert await template.request("seda:rpc", "hi") == "HI"
    exchange = await template.request_exchange("seda:rpc", "yo", {"h": 1})
    assert exchange.body == "YO"
    assert exchange.headers == {"h": 1, "replied": True}


async def test_in_out_request_propagates_the_consumer_exception(eip_context):
    def fail(_ex: Exchange) -> None:
        raise ValueError("consumer failed")

    eip_context.add_routes(routes(lambda b: b.from_("seda:rpc").route_id("c").process(fail)))
    await eip_context.start()
    with pytest.raises(ValueError, match="consumer failed"):
        await eip_context.template().request("seda:rpc", "x")


async def test_wait_for_completion_in_only_takes_the_reply(eip_context):
    async def slow_upper(ex: Exchange) -> None:
        await spin(3)
        ex.body = ex.body.upper()

    eip_context.add_routes(
        routes(lambda b: b.from_("seda:w").route_id("c").process(slow_upper).to("mock:out")),
    )
    await eip_context.start()
    exchange = await eip_context.template().send("seda:w?wait_for_completion=true", "abc")
    assert exchange.exception is None
    assert exchange.body == "ABC"
    assert eip_context.mock("out").count == 1  # the consumer finished before the send returned


async def test_wait_for_completion_propagates_the_consumer_exception(eip_context):
    async def fail(_ex: Exchange) -> None:
        await asyncio.sleep(0)
        raise KeyError("nope")

    def configure(b: RouteBuilder) -> None:
        b.from_("direct:in").route_id("in").to(seda("w", wait_for_completion=True)).to("mock:after")
        b.from_("seda:w").route_id("c").process(fail)

    eip_context.add_routes(routes(configure))
    await eip_context.start()
    exchange = await eip_context.template().send("direct:in", "x")
    assert isinstance(exchange.exception, KeyError)
    assert eip_context.mock("after").count == 0


async def test_mismatched_sizes_for_the_same_queue_fail_at_start(eip_context):
    def configure(b: RouteBuilder) -> None:
        b.from_("direct:in").route_id("in").to("seda:q?size=10")
        b.from_("seda:q?size=5").route_id("c").to("mock:out")

    eip_context.add_routes(routes(configure))
    with pytest.raises(RouteDefinitionError, match="size") as info:
        await eip_context.start()
    assert "seda:q" in str(info.value)
    assert eip_context.started is False


@pytest.mark.parametrize(
    ("uri", "option"),
    [
        ("seda:q?size=0", "size"),
        ("seda:q?concurrent_consumers=0", "concurrent_consumers"),
        ("seda:q?size=abc", "size"),
        ("seda:q?sise=3", "sise"),
    ],
)
async def test_invalid_options_fail_at_start(eip_context, uri, option):
    eip_context.add_routes(routes(lambda b: b.from_(uri).route_id("c").to("mock:out")))
    with pytest.raises(RouteDefinitionError, match=option):
        await eip_context.start()


async def test_shutdown_drains_the_queue(eip_context):
    async def slowish(_ex: Exchange) -> None:
        await spin(3)

    eip_context.add_routes(
        routes(lambda b: b.from_("seda:drain").route_id("c").process(slowish).to("mock:out")),
    )
    await eip_context.start()
    template = eip_context.template()
    for n in range(50):
        await template.send("seda:drain", n)
    out = eip_context.mock("out")
    assert seda_queue(eip_context, "drain").qsize() > 0  # a real backlog at stop time

    await eip_context.stop()

    assert out.count == 50
    assert out.received_bodies == list(range(50))
    assert seda_queue(eip_context, "drain").qsize() == 0


async def test_shutdown_drains_a_chain_of_queues(eip_context):
    async def slowish(_ex: Exchange) -> None:
        await spin(2)

    def configure(b: RouteBuilder) -> None:
        b.from_("seda:first").route_id("first").process(slowish).to("seda:second")
        b.from_("seda:second").route_id("second").process(slowish).to("mock:out")

    eip_context.add_routes(routes(configure))
    await eip_context.start()
    for n in range(20):
        await eip_context.template().send("seda:first", n)
    await eip_context.stop()
    assert eip_context.mock("out").received_bodies == list(range(20))
