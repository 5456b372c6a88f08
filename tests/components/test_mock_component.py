"""``mock:`` - the recording endpoint with expectations (eip/components/mock.py)."""

from __future__ import annotations

import asyncio

import pytest

from eip import (
    Exchange,
    ExchangePattern,
    RedeliveryPolicy,
    RouteBuilder,
    default_error_handler,
    mock,
)
from eip.testing import MockEndpoint


def routes(configure):
    class Routes(RouteBuilder):
        def configure(self) -> None:
            configure(self)

    return Routes()


async def send_all(context, uri, *bodies, headers=None) -> list[Exchange]:
    template = context.template()
    return [await template.send(uri, b, dict(headers or {})) for b in bodies]


# -- receiving and counting --------------------------------------------------------------------


async def test_records_count_bodies_and_headers(eip_context):
    await eip_context.start()
    await send_all(eip_context, "mock:out", "a", "b", headers={"k": "v"})
    out = eip_context.mock("out")
    assert isinstance(out, MockEndpoint)
    assert out.count == 2
    assert out.received_bodies == ["a", "b"]
    assert out.received_headers == [{"k": "v"}, {"k": "v"}]
    assert out.uri == "mock:out"


async def test_context_mock_is_the_endpoint_routes_send_to(eip_context):
    out = eip_context.mock("out")  # before the route exists
    eip_context.add_routes(routes(lambda b: b.from_("direct:in").route_id("r").to("mock:out")))
    await eip_context.start()
    await eip_context.template().send("direct:in", 1)
    assert out.count == 1
    assert eip_context.mock("out") is out


async def test_expect_count_satisfied(eip_context):
    await eip_context.start()
    out = eip_context.mock("out").expect_count(3)
    await send_all(eip_context, "mock:out", 1, 2, 3)
    await out.assert_satisfied(timeout=1)


async def test_expect_count_waits_for_messages_that_arrive_later(eip_context):
    await eip_context.start()
    out = eip_context.mock("out").expect_count(2)

    async def later() -> None:
        for _ in range(5):
            await asyncio.sleep(0)
        await send_all(eip_context, "mock:out", 1, 2)

    task = asyncio.create_task(later())
    await out.assert_satisfied(timeout=5)
    await task
    assert out.count == 2


async def test_count_too_low_after_timeout_raises_a_clear_assertion(eip_context):
    await eip_context.start()
    out = eip_context.mock("out").expect_count(2)
    await send_all(eip_context, "mock:out", "only")
    with pytest.raises(AssertionError) as info:
        await out.assert_satisfied(timeout=0.05)
    message = str(info.value)
    assert message.startswith("mock:out is not satisfied")
    assert "expected 2 message(s), received 1" in message


async def test_count_too_high_raises(eip_context):
    await eip_context.start()
    out = eip_context.mock("out").expect_count(1)
    await send_all(eip_context, "mock:out", 1, 2)
    with pytest.raises(AssertionError, match=r"expected 1 message\(s\), received 2"):
        await out.assert_satisfied(timeout=0.05)


async def test_expect_count_zero(eip_context):
    await eip_context.start()
    out = eip_context.mock("out").expect_count(0)
    await out.assert_satisfied(timeout=0.05)
    await send_all(eip_context, "mock:out", 1)
    with pytest.raises(AssertionError, match="expected 0"):
        await out.assert_satisfied(timeout=0.05)


async def test_expect_min_count(eip_context):
    await eip_context.start()
    out = eip_context.mock("out").expect_min_count(2)
    await send_all(eip_context, "mock:out", 1)
    with pytest.raises(AssertionError, match=r"expected at least 2 message\(s\), received 1"):
        await out.assert_satisfied(timeout=0.05)
    await send_all(eip_context, "mock:out", 2, 3)
    await out.assert_satisfied(timeout=1)  # more than the minimum is fine


# -- bodies, headers, predicates --------------------------------------------------------------


async def test_expect_bodies_in_order(eip_context):
    await eip_context.start()
    out = eip_context.mock("out").expect_bodies("a", {"b": 1}, 3)
    await send_all(eip_context, "mock:out", "a", {"b": 1}, 3)
    await out.assert_satisfied(timeout=1)


async def test_expect_bodies_wrong_order_fails(eip_context):
    await eip_context.start()
    out = eip_context.mock("out").expect_bodies("a", "b")
    await send_all(eip_context, "mock:out", "b", "a")
    with pytest.raises(AssertionError) as info:
        await out.assert_satisfied(timeout=0.05)
    assert "expected bodies ['a', 'b'], got ['b', 'a']" in str(info.value)


async def test_expect_bodies_implies_the_count(eip_context):
    await eip_context.start()
    out = eip_context.mock("out").expect_bodies("a", "b")
    await send_all(eip_context, "mock:out", "a")
    with pytest.raises(AssertionError, match=r"expected 2 message\(s\), received 1"):
        await out.assert_satisfied(timeout=0.05)


async def test_expect_bodies_any_order(eip_context):
    await eip_context.start()
    out = eip_context.mock("out").expect_bodies("a", "b", "c", any_order=True)
    await send_all(eip_context, "mock:out", "c", "a", "b")
    await out.assert_satisfied(timeout=1)


async def test_expect_bodies_any_order_still_checks_content(eip_context):
    await eip_context.start()
    out = eip_context.mock("out").expect_bodies("a", "a", "b", any_order=True)
    await send_all(eip_context, "mock:out", "a", "b", "b")
    with pytest.raises(AssertionError, match="in any order"):
        await out.assert_satisfied(timeout=0.05)


async def test_expect_header(eip_context):
    await eip_context.start()
    out = eip_context.mock("out").expect_header("source", "web")
    await send_all(eip_context, "mock:out", 1, 2, headers={"source": "web"})
    await out.assert_satisfied(timeout=1)

    await send_all(eip_context, "mock:out", 3, headers={"source": "app"})
    with pytest.raises(AssertionError) as info:
        await out.assert_satisfied(timeout=0.05)
    assert "message 3 fails header 'source' == 'web'" in str(info.value)


async def test_expect_header_none_requires_the_header_to_exist(eip_context):
    await eip_context.start()
    out = eip_context.mock("out").expect_header("h", None)
    await send_all(eip_context, "mock:out", 1)  # no header at all
    with pytest.raises(AssertionError, match="fails header 'h' == None"):
        await out.assert_satisfied(timeout=0.05)


async def test_expect_predicate_with_description(eip_context):
    await eip_context.start()
    out = eip_context.mock("out").expect(lambda ex: ex.body > 0, "positive body")
    await send_all(eip_context, "mock:out", 1, 2)
    await out.assert_satisfied(timeout=1)
    await send_all(eip_context, "mock:out", -1)
    with pytest.raises(AssertionError, match="message 3 fails positive body"):
        await out.assert_satisfied(timeout=0.05)


async def test_expect_predicate_uses_the_function_name_by_default(eip_context):
    def is_even(ex: Exchange) -> bool:
        return bool(ex.body % 2 == 0)

    await eip_context.start()
    out = eip_context.mock("out").expect(is_even)
    await send_all(eip_context, "mock:out", 2, 3)
    with pytest.raises(AssertionError, match="message 2 fails is_even"):
        await out.assert_satisfied(timeout=0.05)


async def test_all_problems_are_reported_together(eip_context):
    await eip_context.start()
    out = (
        eip_context.mock("out")
        .expect_count(3)
        .expect_header("k", "v")
        .expect(lambda ex: ex.body == "x", "body is x")
    )
    await send_all(eip_context, "mock:out", "y")
    with pytest.raises(AssertionError) as info:
        await out.assert_satisfied(timeout=0.05)
    message = str(info.value)
    assert "expected 3 message(s), received 1" in message
    assert "fails header 'k' == 'v'" in message
    assert "fails body is x" in message


async def test_settle_catches_late_extras(eip_context):
    await eip_context.start()
    out = eip_context.mock("out").expect_count(1)
    await send_all(eip_context, "mock:out", "first")

    async def late_extra() -> None:
        for _ in range(5):
            await asyncio.sleep(0)
        await send_all(eip_context, "mock:out", "extra")

    task = asyncio.create_task(late_extra())
    with pytest.raises(AssertionError, match=r"expected 1 message\(s\), received 2"):
        await out.assert_satisfied(timeout=1, settle=0.05)
    await task


async def test_without_settle_the_check_happens_when_the_count_is_reached(eip_context):
    await eip_context.start()
    out = eip_context.mock("out").expect_count(1)
    await send_all(eip_context, "mock:out", "first")

    async def late_extra() -> None:
        for _ in range(5):
            await asyncio.sleep(0)
        await send_all(eip_context, "mock:out", "extra")

    task = asyncio.create_task(late_extra())
    await out.assert_satisfied(timeout=1)  # passes: the extra is not there yet
    await task
    assert out.count == 2


# -- snapshots and retention ------------------------------------------------------------------


async def test_snapshots_are_copies(eip_context):
    def configure(b: RouteBuilder) -> None:
        (
            b.from_("direct:in")
            .route_id("r")
            .set_property("p", "at-mock")
            .to("mock:snap")
            .set_header("k", "changed")
            .set_header("added", True)
            .set_property("p", "later")
            .transform(lambda ex: "changed body")
        )

    eip_context.add_routes(routes(configure))
    await eip_context.start()
    exchange = await eip_context.template().send("direct:in", "original", {"k": "original"})
    assert exchange.body == "changed body"

    snap = eip_context.mock("snap")
    [recorded] = snap.received
    assert recorded is not exchange
    assert recorded.message is not exchange.message
    assert recorded.body == "original"
    assert recorded.headers == {"k": "original"}
    assert recorded.properties == {"p": "at-mock"}
    assert recorded.route_id == "r"
    assert recorded.id == exchange.id  # the snapshot names the exchange it recorded


async def test_snapshots_keep_the_pattern(eip_context):
    await eip_context.start()
    await eip_context.template().request("mock:out", 1)
    await eip_context.template().send("mock:out", 2)
    assert [ex.pattern for ex in eip_context.mock("out").received] == [
        ExchangePattern.IN_OUT,
        ExchangePattern.IN_ONLY,
    ]


async def test_retain_zero_only_counts(eip_context):
    await eip_context.start()
    await send_all(eip_context, "mock:count-only?retain=0", *range(10))
    out = eip_context.mock("count-only")
    assert out.count == 10
    assert out.received == []
    assert out.received_bodies == []
    out.expect_count(10)
    await out.assert_satisfied(timeout=1)


async def test_retain_n_keeps_the_last_n(eip_context):
    await eip_context.start()
    await send_all(eip_context, mock("last", retain=3), *range(10))
    out = eip_context.mock("last")
    assert out.count == 10
    assert out.received_bodies == [7, 8, 9]


async def test_retain_via_uri_applies_to_an_existing_endpoint(eip_context):
    out = eip_context.mock("x")
    eip_context.add_routes(
        routes(lambda b: b.from_("direct:in").route_id("r").to("mock:x?retain=1"))
    )
    await eip_context.start()
    for n in range(3):
        await eip_context.template().send("direct:in", n)
    assert out.count == 3
    assert out.received_bodies == [2]


# -- behaviours ---------------------------------------------------------------------------------


async def test_whenever_sets_a_reply(eip_context):
    await eip_context.start()
    eip_context.mock("svc").whenever(lambda ex: setattr(ex, "body", f"reply to {ex.body}"))
    assert await eip_context.template().request("mock:svc", "ping") == "reply to ping"
    # the snapshot is taken on arrival, before the behaviour ran
    assert eip_context.mock("svc").received_bodies == ["ping"]


async def test_whenever_async_behaviour(eip_context):
    async def reply(ex: Exchange) -> None:
        await asyncio.sleep(0)
        ex.body = ex.body.upper()

    eip_context.add_routes(
        routes(lambda b: b.from_("direct:in").route_id("r").to("mock:svc").to("mock:after"))
    )
    eip_context.mock("svc").whenever(reply)
    await eip_context.start()
    assert await eip_context.template().request("direct:in", "abc") == "ABC"
    assert eip_context.mock("after").received_bodies == ["ABC"]


async def test_whenever_raising_fails_the_exchange(eip_context):
    def down(_ex: Exchange) -> None:
        raise ConnectionError("service down")

    eip_context.add_routes(
        routes(lambda b: b.from_("direct:in").route_id("r").to("mock:svc").to("mock:after"))
    )
    eip_context.mock("svc").whenever(down)
    await eip_context.start()
    exchange = await eip_context.template().send("direct:in", 1)
    assert isinstance(exchange.exception, ConnectionError)
    assert eip_context.mock("svc").count == 1  # recorded even though it failed
    assert eip_context.mock("after").count == 0


async def test_fail_times_fails_then_accepts(eip_context):
    await eip_context.start()
    eip_context.mock("flaky").fail_times(2, lambda: ConnectionError("flaky"))
    results = await send_all(eip_context, "mock:flaky", 1, 2, 3, 4)
    assert [type(ex.exception) for ex in results] == [
        ConnectionError,
        ConnectionError,
        type(None),
        type(None),
    ]
    assert eip_context.mock("flaky").count == 4


async def test_fail_times_raises_a_fresh_error_each_time(eip_context):
    await eip_context.start()
    eip_context.mock("flaky").fail_times(2, lambda: ValueError("again"))
    first, second = await send_all(eip_context, "mock:flaky", 1, 2)
    assert isinstance(first.exception, ValueError)
    assert isinstance(second.exception, ValueError)
    assert first.exception is not second.exception


async def test_fail_times_with_redelivery_eventually_succeeds(eip_context):
    def configure(b: RouteBuilder) -> None:
        (
            b.from_("direct:in")
            .route_id("r")
            .error_handler(default_error_handler(RedeliveryPolicy(max_redeliveries=3, delay=0)))
            .to("mock:flaky")
            .to("mock:after")
        )

    eip_context.add_routes(routes(configure))
    flaky = eip_context.mock("flaky").fail_times(2, lambda: ConnectionError("flaky"))
    await eip_context.start()
    exchange = await eip_context.template().send("direct:in", "x")
    assert exchange.exception is None
    assert flaky.count == 3  # two failures, one success
    assert eip_context.mock("after").received_bodies == ["x"]


# -- reset and waiting -------------------------------------------------------------------------


async def test_reset_clears_received_and_expectations(eip_context):
    await eip_context.start()
    out = (
        eip_context.mock("out")
        .expect_count(5)
        .expect_min_count(5)
        .expect_header("k", "v")
        .expect(lambda ex: False, "never")
    )
    out.expect_bodies("x", "y", any_order=True)
    await send_all(eip_context, "mock:out", 1, 2)

    out.reset()

    assert out.count == 0
    assert out.received == []
    await out.assert_satisfied(timeout=0.05)  # no expectations left
    out.expect_bodies("fresh")
    await send_all(eip_context, "mock:out", "fresh")
    await out.assert_satisfied(timeout=1)


async def test_wait_for_returns_when_enough_arrived(eip_context):
    await eip_context.start()
    out = eip_context.mock("out")

    async def later() -> None:
        for _ in range(5):
            await asyncio.sleep(0)
        await send_all(eip_context, "mock:out", 1, 2, 3)

    task = asyncio.create_task(later())
    await out.wait_for(3, timeout=5)
    assert out.count == 3
    await task


async def test_wait_for_gives_up_after_the_timeout_without_raising(eip_context):
    await eip_context.start()
    out = eip_context.mock("out")
    await out.wait_for(1, timeout=0.02)
    assert out.count == 0


def test_mock_endpoint_can_be_used_on_its_own():
    endpoint = MockEndpoint("solo", retain=2)
    for n in range(3):
        assert endpoint.process(Exchange(n)) is None
    assert endpoint.count == 3
    assert endpoint.received_bodies == [1, 2]
