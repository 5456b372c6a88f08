"""Throttler: delays on the context clock, per-key windows, reject mode, bounded keys."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from eip import Context, Exchange, RouteBuilder, RouteDefinitionError, header
from eip.dsl.builder import RouteDefinition
from eip.processors.throttle import Throttle, ThrottledError
from eip.testing import ManualClock


def route(configure: Callable[[RouteDefinition], Any]) -> RouteBuilder:
    class R(RouteBuilder):
        def configure(self) -> None:
            configure(self.from_("direct:in").route_id("r"))

    return R()


async def start(
    context: Context, clock: ManualClock, configure: Callable[[RouteDefinition], Any]
) -> list[tuple[Any, float]]:
    """Start the route; returns (body, seconds since start) for each exchange that passed."""
    began = clock.time()
    passed: list[tuple[Any, float]] = []

    def note(exchange: Exchange) -> None:
        passed.append((exchange.body, clock.time() - began))

    context.add_routes(route(lambda r: configure(r).process(note)))
    await context.start()
    return passed


async def send_all(context: Context, *messages: tuple[Any, dict[str, Any]]) -> list[Any]:
    template = context.template()
    tasks = [asyncio.create_task(template.send("direct:in", b, h)) for b, h in messages]
    await asyncio.sleep(0)
    return tasks


async def test_rate_2_per_second_delays_on_the_clock(
    eip_context: Context, manual_clock: ManualClock
) -> None:
    passed = await start(eip_context, manual_clock, lambda r: r.throttle(2, 1.0))
    tasks = await send_all(eip_context, *[(n, {}) for n in range(5)])
    await manual_clock.wait_for_sleepers(3)
    assert passed == [(0, 0), (1, 0)]
    await manual_clock.advance(1)
    assert passed[2:] == [(2, 1), (3, 1)]
    await manual_clock.advance(1)
    await asyncio.gather(*tasks)
    assert passed == [(0, 0), (1, 0), (2, 1), (3, 1), (4, 2)]


async def test_permits_return_per_seconds_after_they_were_taken(
    eip_context: Context, manual_clock: ManualClock
) -> None:
    passed = await start(eip_context, manual_clock, lambda r: r.throttle(2, 10.0))
    template = eip_context.template()
    await template.send("direct:in", "a")
    await manual_clock.advance(6)
    await template.send("direct:in", "b")
    task = asyncio.create_task(template.send("direct:in", "c"))
    await manual_clock.wait_for_sleepers(1)
    await manual_clock.advance(4)  # a's permit returns at t=10
    await task
    assert passed == [("a", 0), ("b", 6), ("c", 10)]


async def test_an_exchange_that_need_not_wait_stays_sync(
    eip_context: Context, manual_clock: ManualClock
) -> None:
    await start(eip_context, manual_clock, lambda r: r.throttle(5))
    assert eip_context.routes["r"].dispatch(Exchange("x")) is None


async def test_keys_have_independent_windows(
    eip_context: Context, manual_clock: ManualClock
) -> None:
    passed = await start(eip_context, manual_clock, lambda r: r.throttle(1, 1.0, key=header("k")))
    tasks = await send_all(
        eip_context, ("a1", {"k": "a"}), ("b1", {"k": "b"}), ("a2", {"k": "a"}), ("b2", {"k": "b"})
    )
    await manual_clock.wait_for_sleepers(2)
    assert passed == [("a1", 0), ("b1", 0)]
    await manual_clock.advance(1)
    await asyncio.gather(*tasks)
    assert passed == [("a1", 0), ("b1", 0), ("a2", 1), ("b2", 1)]


async def test_reject_mode_fails_fast_and_takes_no_permit(
    eip_context: Context, manual_clock: ManualClock
) -> None:
    passed = await start(eip_context, manual_clock, lambda r: r.throttle(2, 1.0, reject=True))
    template = eip_context.template()
    results = [await template.send("direct:in", n) for n in range(4)]
    errors = [type(ex.exception).__name__ if ex.exception else None for ex in results]
    assert errors == [None, None, "ThrottledError", "ThrottledError"]
    assert "more than 2 exchanges per 1.0s" in str(results[2].exception)
    await manual_clock.advance(1)
    assert (await template.send("direct:in", 4)).exception is None
    assert [body for body, _ in passed] == [0, 1, 4]


async def test_reject_names_the_key(eip_context: Context, manual_clock: ManualClock) -> None:
    await start(eip_context, manual_clock, lambda r: r.throttle(1, key=header("k"), reject=True))
    template = eip_context.template()
    await template.send("direct:in", 1, {"k": "acme"})
    exchange = await template.send("direct:in", 2, {"k": "acme"})
    assert isinstance(exchange.exception, ThrottledError)
    assert "for key 'acme'" in str(exchange.exception)


def test_least_recently_used_key_is_forgotten_beyond_max_keys() -> None:
    throttle = Throttle(1, 1.0, ManualClock(), key=lambda ex: ex.body, reject=True, max_keys=2)
    throttle.process(Exchange("a"))
    throttle.process(Exchange("b"))
    with pytest.raises(ThrottledError):
        throttle.process(Exchange("a"))  # a rejected use still makes "a" recently used
    throttle.process(Exchange("c"))  # forgets "b"
    assert throttle.keys == 2
    throttle.process(Exchange("b"))  # a fresh window for "b" (and "a" is forgotten)
    with pytest.raises(ThrottledError):
        throttle.process(Exchange("c"))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"rate": 0}, "rate must be an int >= 1"),
        ({"rate": 1, "per": 0}, "per must be > 0"),
        ({"rate": 1, "max_keys": 0}, "max_keys must be >= 1"),
    ],
)
async def test_invalid_options_fail_at_start(
    eip_context: Context, options: dict[str, Any], message: str
) -> None:
    eip_context.add_routes(route(lambda r: r.throttle(**options)))
    with pytest.raises(RouteDefinitionError, match=message):
        await eip_context.start()
