"""Circuit breaker: closed -> open -> half-open -> closed/open, fallback, fail fast, redelivery."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from eip import (
    Context,
    Exchange,
    RedeliveryPolicy,
    RouteBuilder,
    RouteDefinitionError,
    default_error_handler,
)
from eip.dsl.builder import RouteDefinition, pipeline
from eip.processors.circuit_breaker import (
    FALLBACK_PROPERTY,
    CircuitBreaker,
    CircuitOpenError,
    CircuitState,
    circuit_breakers,
)
from eip.testing import ManualClock

CLOSED, OPEN, HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN


class Backend:
    """The protected endpoint's behaviour: fails while ``failing`` is set."""

    def __init__(self) -> None:
        self.failing: BaseException | None = None

    def __call__(self, exchange: Exchange) -> None:
        if self.failing is not None:
            raise self.failing
        exchange.body = f"backend:{exchange.body}"


def route(configure: Callable[[RouteDefinition], Any], redeliveries: int = 0) -> RouteBuilder:
    class R(RouteBuilder):
        def configure(self) -> None:
            if redeliveries:
                policy = RedeliveryPolicy(max_redeliveries=redeliveries, delay=0)
                self.error_handler(default_error_handler(policy))
            configure(self.from_("direct:in").route_id("r"))

    return R()


async def start(
    context: Context, fallback: bool = True, redeliveries: int = 0, **options: Any
) -> tuple[Backend, CircuitBreaker]:
    backend = Backend()
    context.mock("backend").whenever(backend)
    settings: dict[str, Any] = {"minimum_calls": 4, "window": 4, "open_for": 10.0, "name": "erp"}
    settings.update(options)
    fb = pipeline().process(_note_fallback).set_body("fallback").to("mock:fallback")
    context.add_routes(
        route(
            lambda r: r.circuit_breaker(
                pipeline().to("mock:backend"), fb if fallback else None, **settings
            ).to("mock:out"),
            redeliveries,
        )
    )
    await context.start()
    return backend, circuit_breakers(context)["erp"]


def _note_fallback(exchange: Exchange) -> None:
    error = exchange.properties.get("eip.exception")
    exchange.headers["why"] = exchange.properties[FALLBACK_PROPERTY]
    exchange.headers["error"] = type(error).__name__ if error is not None else None


async def send(context: Context, body: Any = "x") -> Exchange:
    return await context.template().send("direct:in", body)


async def open_breaker(context: Context, backend: Backend) -> None:
    for _ in range(2):
        await send(context)
    backend.failing = ConnectionError("down")
    for _ in range(2):
        await send(context)


async def test_opens_at_the_failure_rate_then_short_circuits_to_the_fallback(
    eip_context: Context,
) -> None:
    backend, breaker = await start(eip_context)
    await open_breaker(eip_context, backend)
    assert breaker.state is OPEN
    assert eip_context.mock("backend").count == 4
    fallback = eip_context.mock("fallback")
    assert [h["why"] for h in fallback.received_headers] == ["failure", "failure"]
    assert fallback.received_headers[0]["error"] == "ConnectionError"
    exchange = await send(eip_context)
    assert exchange.exception is None
    assert eip_context.mock("backend").count == 4  # not called while open
    assert fallback.received_headers[-1]["why"] == "open"
    assert eip_context.mock("out").received_bodies[-1] == "fallback"
    assert breaker.rejected == 1


async def test_stays_closed_below_minimum_calls_and_rate(eip_context: Context) -> None:
    backend, breaker = await start(eip_context, minimum_calls=4, window=4, failure_rate=0.8)
    backend.failing = ConnectionError("down")
    for _ in range(3):
        await send(eip_context)
    assert breaker.state is CLOSED  # only 3 calls
    backend.failing = None
    await send(eip_context)
    assert (breaker.state, breaker.failures, breaker.calls) == (CLOSED, 3, 4)  # 0.75 < 0.8
    await send(eip_context)  # the window slides: 2 failures of 4
    assert (breaker.failures, breaker.calls) == (2, 4)


async def test_half_open_probe_success_closes(
    eip_context: Context, manual_clock: ManualClock
) -> None:
    backend, breaker = await start(eip_context)
    await open_breaker(eip_context, backend)
    await manual_clock.advance(9.9)
    assert breaker.state is OPEN
    await manual_clock.advance(0.1)
    assert breaker.state is HALF_OPEN
    backend.failing = None
    exchange = await send(eip_context, "probe")
    assert exchange.exception is None
    assert eip_context.mock("out").received_bodies[-1] == "backend:probe"
    assert breaker.state is CLOSED
    assert (breaker.calls, breaker.failures) == (0, 0)  # a fresh window


async def test_half_open_probe_failure_opens_again(
    eip_context: Context, manual_clock: ManualClock
) -> None:
    backend, breaker = await start(eip_context)
    await open_breaker(eip_context, backend)
    await manual_clock.advance(10)
    await send(eip_context, "probe")
    assert breaker.state is OPEN
    assert eip_context.mock("backend").count == 5
    await send(eip_context)
    assert eip_context.mock("backend").count == 5
    await manual_clock.advance(10)
    assert breaker.state is HALF_OPEN


async def test_without_fallback_an_open_breaker_fails_fast(
    eip_context: Context, manual_clock: ManualClock
) -> None:
    backend, breaker = await start(eip_context, fallback=False)
    for _ in range(4):
        backend.failing = ConnectionError("down")
        exchange = await send(eip_context)
        assert isinstance(exchange.exception, ConnectionError)
    assert breaker.state is OPEN
    await manual_clock.advance(4)
    exchange = await send(eip_context)
    assert isinstance(exchange.exception, CircuitOpenError)
    assert "circuit breaker 'erp' is open: failing fast for another 6.0s" in str(exchange.exception)
    assert eip_context.mock("backend").count == 4


async def test_half_open_lets_only_the_probes_through(
    eip_context: Context, manual_clock: ManualClock
) -> None:
    backend, breaker = await start(eip_context, fallback=False, half_open_calls=2)
    await open_breaker(eip_context, backend)
    await manual_clock.advance(10)
    backend.failing = None
    gate = asyncio.Event()

    async def slow(exchange: Exchange) -> None:
        await gate.wait()

    eip_context.mock("backend").whenever(slow)
    probes = [asyncio.create_task(send(eip_context)) for _ in range(2)]
    await asyncio.sleep(0)
    third = await send(eip_context)
    assert isinstance(third.exception, CircuitOpenError)
    assert "is half_open" in str(third.exception)
    assert breaker.state is HALF_OPEN
    gate.set()
    assert [(await p).exception for p in probes] == [None, None]
    assert breaker.state is CLOSED


async def test_errors_not_recorded_pass_through_and_count_as_success(
    eip_context: Context,
) -> None:
    backend, breaker = await start(eip_context, record=(ConnectionError,))
    backend.failing = ValueError("bad input")
    for _ in range(5):
        exchange = await send(eip_context)
        assert isinstance(exchange.exception, ValueError)
    assert (breaker.state, breaker.failures) == (CLOSED, 0)
    assert eip_context.mock("fallback").count == 0


async def test_route_redelivery_does_not_hammer_an_open_breaker(eip_context: Context) -> None:
    backend, breaker = await start(
        eip_context, fallback=False, redeliveries=5, minimum_calls=2, window=2, failure_rate=1.0
    )
    backend.failing = ConnectionError("down")
    exchange = await send(eip_context)
    assert isinstance(exchange.exception, CircuitOpenError)
    assert eip_context.mock("backend").count == 2  # then the breaker was open
    assert exchange.headers["eip.redelivery.count"] == 5
    assert breaker.rejected == 4


async def test_state_is_exposed_by_name(eip_context: Context) -> None:
    _, breaker = await start(eip_context)
    assert breaker.state.value == "closed"
    assert list(circuit_breakers(eip_context)) == ["erp"]
    assert repr(breaker) == "CircuitBreaker('erp', state=closed)"


async def test_invalid_options_fail_at_start(eip_context: Context) -> None:
    eip_context.add_routes(
        route(lambda r: r.circuit_breaker("mock:x", minimum_calls=30, window=20))
    )
    with pytest.raises(RouteDefinitionError, match="minimum_calls <= window"):
        await eip_context.start()


async def test_a_call_that_started_before_the_breaker_opened_does_not_count() -> None:
    clock = ManualClock()
    slow: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def protected(exchange: Exchange) -> Any:
        if exchange.body == "slow":
            return slow
        raise ConnectionError("down")

    breaker = CircuitBreaker(
        "unit", protected, None, clock, minimum_calls=1, window=1, failure_rate=1.0, open_for=10
    )
    pending = breaker.process(Exchange("slow"))
    with pytest.raises(ConnectionError):
        breaker.process(Exchange("fast"))
    assert breaker.state is OPEN
    await clock.advance(5)
    slow.set_exception(ConnectionError("late"))
    with pytest.raises(ConnectionError):
        await pending
    await clock.advance(5)
    assert breaker.state is HALF_OPEN  # the late failure did not re-open it at t=5


async def test_nested_steps_of_the_protected_part_skip_the_dead_letter_channel(
    eip_context: Context,
) -> None:
    from eip import dead_letter_channel, when

    class R(RouteBuilder):
        def configure(self) -> None:
            self.error_handler(dead_letter_channel("mock:dlq"))
            (
                self.from_("direct:in")
                .route_id("r")
                .circuit_breaker(
                    pipeline().choice(when(lambda ex: True).to("mock:backend")),
                    "mock:fallback",
                    name="nested",
                )
            )

    backend = Backend()
    backend.failing = ConnectionError("down")
    eip_context.mock("backend").whenever(backend)
    eip_context.add_routes(R())
    await eip_context.start()
    exchange = await send(eip_context)
    assert exchange.exception is None
    assert eip_context.mock("fallback").count == 1  # the breaker saw the failure ...
    assert eip_context.mock("dlq").count == 0  # ... not the route's dead letter channel
    assert circuit_breakers(eip_context)["nested"].failures == 1
