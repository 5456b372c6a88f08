"""Redelivery, dead letter channel and on_exception, driven on the manual clock."""

from __future__ import annotations

import asyncio
import logging

import msgspec
import pytest

from eip import (
    Context,
    RedeliveryPolicy,
    RouteBuilder,
    dead_letter_channel,
    default_error_handler,
    otherwise,
    when,
)
from eip import headers as H
from eip.dataformats import json
from eip.dsl.builder import pipeline
from eip.errors import ExchangeError, MappingError, PartFailedError
from eip.message import Exchange
from eip.testing import ManualClock


class Flaky:
    """Fails the first ``failures`` calls, recording the clock time of every call."""

    def __init__(self, clock: ManualClock, failures: int, error: type[Exception] = ValueError):
        self.clock = clock
        self.failures = failures
        self.error = error
        self.calls: list[float] = []

    def __call__(self, exchange: Exchange) -> None:
        self.calls.append(self.clock.time())
        if len(self.calls) <= self.failures:
            raise self.error(f"failure {len(self.calls)}")


async def test_redelivered_with_exponential_backoff_then_dead_lettered(
    eip_context: Context, manual_clock: ManualClock
) -> None:
    flaky = Flaky(manual_clock, failures=10)
    policy = RedeliveryPolicy(max_redeliveries=3, delay=1.0, backoff_multiplier=2.0)

    class R(RouteBuilder):
        def configure(self) -> None:
            self.error_handler(dead_letter_channel("mock:dead", redelivery=policy))
            self.from_("direct:in").route_id("r").set_header("step", "before").process(flaky).to(
                "mock:after"
            )

    eip_context.add_routes(R())
    await eip_context.start()
    start = manual_clock.time()
    sending = asyncio.create_task(eip_context.template().send("direct:in", {"id": 7}))
    await manual_clock.wait_for_sleepers(1)
    await manual_clock.advance(1.0)
    await manual_clock.wait_for_sleepers(1)
    await manual_clock.advance(2.0)
    await manual_clock.wait_for_sleepers(1)
    await manual_clock.advance(4.0)
    exchange = await asyncio.wait_for(sending, 5)

    assert [round(t - start, 6) for t in flaky.calls] == [0.0, 1.0, 3.0, 7.0]
    assert exchange.exception is None  # dead-lettered counts as handled
    dead = eip_context.mock("dead")
    dead.expect_count(1)
    await dead.assert_satisfied(timeout=1)
    headers = dead.received[0].headers
    assert headers[H.EXCEPTION_TYPE] == "builtins.ValueError"
    assert headers[H.EXCEPTION_MESSAGE] == "failure 4"
    assert headers[H.REDELIVERY_COUNT] == 3
    assert headers[H.FAILURE_ROUTE] == "r"
    assert headers[H.FAILURE_ENDPOINT].startswith("process(")
    assert dead.received[0].body == {"id": 7}
    assert eip_context.mock("after").count == 0


async def test_redelivery_succeeds_and_routing_continues(
    eip_context: Context, manual_clock: ManualClock
) -> None:
    class R(RouteBuilder):
        def configure(self) -> None:
            self.error_handler(
                default_error_handler(RedeliveryPolicy(max_redeliveries=2, delay=0.5))
            )
            self.from_("direct:in").route_id("r").to("mock:erp").to("mock:after")

    eip_context.add_routes(R())
    await eip_context.start()
    eip_context.mock("erp").fail_times(2, lambda: ConnectionError("erp down"))
    sending = asyncio.create_task(eip_context.template().send("direct:in", "x"))
    for _ in range(2):
        await manual_clock.wait_for_sleepers(1)
        await manual_clock.advance(0.5)
    exchange = await asyncio.wait_for(sending, 5)
    assert exchange.exception is None
    assert eip_context.mock("erp").count == 3
    after = eip_context.mock("after")
    assert after.count == 1
    assert after.received[0].headers[H.REDELIVERED] is True
    assert after.received[0].headers[H.REDELIVERY_COUNT] == 2


async def test_failing_endpoint_named_in_dead_letter_headers(eip_context: Context) -> None:
    class R(RouteBuilder):
        def configure(self) -> None:
            self.error_handler(dead_letter_channel("mock:dead"))
            self.from_("direct:in").route_id("r").to("mock:erp?retain=5")

    eip_context.add_routes(R())
    await eip_context.start()
    eip_context.mock("erp").fail_times(1, lambda: RuntimeError("503"))
    await eip_context.template().send("direct:in", "x")
    dead = eip_context.mock("dead").received[0]
    assert dead.headers[H.FAILURE_ENDPOINT] == "mock:erp?retain=5"
    assert dead.headers[H.REDELIVERY_COUNT] == 0


async def test_default_handler_propagates_to_caller(eip_context: Context) -> None:
    def boom(exchange: Exchange) -> None:
        raise KeyError("missing")

    class R(RouteBuilder):
        def configure(self) -> None:
            self.from_("direct:in").route_id("r").process(boom).to("mock:after")

    eip_context.add_routes(R())
    await eip_context.start()
    exchange = await eip_context.template().send("direct:in", "x")
    assert isinstance(exchange.exception, KeyError)
    with pytest.raises(KeyError):
        await eip_context.template().request("direct:in", "x")
    assert eip_context.mock("after").count == 0
    assert eip_context.routes["r"].exchanges_failed == 2


async def test_use_original_message(eip_context: Context) -> None:
    class R(RouteBuilder):
        def configure(self) -> None:
            self.error_handler(dead_letter_channel("mock:dead", use_original_message=True))
            (
                self.from_("direct:in")
                .route_id("r")
                .set_header("added", True)
                .transform(lambda ex: ex.body.upper())
                .to("mock:erp")
            )

    eip_context.add_routes(R())
    await eip_context.start()
    eip_context.mock("erp").fail_times(1, lambda: ValueError("no"))
    await eip_context.template().send("direct:in", "original", {"h": 1})
    dead = eip_context.mock("dead").received[0]
    assert dead.body == "original"
    assert "added" not in dead.headers
    assert dead.headers["h"] == 1
    assert dead.headers[H.EXCEPTION_MESSAGE] == "no"


async def test_on_exception_handled_runs_clause_steps_and_stops(eip_context: Context) -> None:
    class R(RouteBuilder):
        def configure(self) -> None:
            self.on_exception(ValueError).handled().set_body("rejected").to("mock:rejected")
            self.from_("direct:in").route_id("r").to("mock:check").to("mock:after")

    eip_context.add_routes(R())
    await eip_context.start()
    eip_context.mock("check").fail_times(1, lambda: ValueError("bad record"))
    reply = await eip_context.template().request("direct:in", "x")
    assert reply == "rejected"
    rejected = eip_context.mock("rejected")
    assert rejected.received_bodies == ["rejected"]
    assert rejected.received[0].headers[H.EXCEPTION_MESSAGE] == "bad record"
    assert eip_context.mock("after").count == 0


async def test_on_exception_continued_goes_on_with_next_step(eip_context: Context) -> None:
    class R(RouteBuilder):
        def configure(self) -> None:
            self.on_exception(LookupError).continued()
            self.from_("direct:in").route_id("r").to("mock:optional").to("mock:after")

    eip_context.add_routes(R())
    await eip_context.start()
    eip_context.mock("optional").fail_times(1, lambda: KeyError("k"))
    exchange = await eip_context.template().send("direct:in", "x")
    assert exchange.exception is None
    assert eip_context.mock("after").received_bodies == ["x"]


async def test_on_exception_not_handled_still_fails(eip_context: Context) -> None:
    class R(RouteBuilder):
        def configure(self) -> None:
            self.error_handler(dead_letter_channel("mock:dead"))
            self.on_exception(ValueError).to("mock:noted")
            self.from_("direct:in").route_id("r").to("mock:x")

    eip_context.add_routes(R())
    await eip_context.start()
    eip_context.mock("x").fail_times(1, lambda: ValueError("v"))
    exchange = await eip_context.template().send("direct:in", "x")
    assert isinstance(exchange.exception, ValueError)
    assert eip_context.mock("noted").count == 1
    assert eip_context.mock("dead").count == 0  # a matching clause takes precedence (Camel)


async def test_closest_exception_type_wins(eip_context: Context, manual_clock: ManualClock) -> None:
    class Base(Exception):
        pass

    class Specific(Base):
        pass

    class R(RouteBuilder):
        def configure(self) -> None:
            self.on_exception(Exception).handled().to("mock:generic")
            self.on_exception(Base).handled().to("mock:base")
            self.on_exception(Specific).handled().redelivery(max_redeliveries=1, delay=1).to(
                "mock:specific"
            )
            self.from_("direct:in").route_id("r").to("mock:x")

    eip_context.add_routes(R())
    await eip_context.start()
    eip_context.mock("x").whenever(lambda ex: (_ for _ in ()).throw(ex.body()))
    sending = asyncio.create_task(eip_context.template().send("direct:in", Specific))
    await manual_clock.wait_for_sleepers(1)
    await manual_clock.advance(1)
    await asyncio.wait_for(sending, 5)
    await eip_context.template().send("direct:in", Base)
    await eip_context.template().send("direct:in", OSError)
    assert eip_context.mock("x").count == 4  # Specific once redelivered
    assert eip_context.mock("specific").count == 1
    assert eip_context.mock("base").count == 1
    assert eip_context.mock("generic").count == 1


async def test_error_in_branch_redelivers_only_the_failing_step(
    eip_context: Context, manual_clock: ManualClock
) -> None:
    class R(RouteBuilder):
        def configure(self) -> None:
            self.error_handler(
                dead_letter_channel("mock:dead", redelivery=RedeliveryPolicy(max_redeliveries=2))
            )
            (
                self.from_("direct:in")
                .route_id("r")
                .to("mock:first")
                .choice(when(lambda ex: True).to("mock:branch"), otherwise().to("mock:never"))
                .to("mock:last")
            )

    eip_context.add_routes(R())
    await eip_context.start()
    eip_context.mock("branch").fail_times(5, lambda: ValueError("x"))
    sending = asyncio.create_task(eip_context.template().send("direct:in", 1))
    for _ in range(2):
        await manual_clock.wait_for_sleepers(1)
        await manual_clock.advance(1)
    await asyncio.wait_for(sending, 5)
    assert eip_context.mock("first").count == 1
    assert eip_context.mock("branch").count == 3
    assert eip_context.mock("dead").count == 1  # dead-lettered once, not once per pipeline
    assert eip_context.mock("last").count == 0


async def test_sub_route_failure_is_not_redelivered_twice(
    eip_context: Context, manual_clock: ManualClock
) -> None:
    class R(RouteBuilder):
        def configure(self) -> None:
            self.error_handler(
                dead_letter_channel("mock:dead", redelivery=RedeliveryPolicy(max_redeliveries=1))
            )
            self.from_("direct:in").route_id("caller").to("direct:sub").to("mock:after")

    class Sub(RouteBuilder):
        def configure(self) -> None:
            self.error_handler(default_error_handler(RedeliveryPolicy(max_redeliveries=2)))
            self.from_("direct:sub").route_id("sub").to("mock:erp")

    eip_context.add_routes(R(), Sub())
    await eip_context.start()
    eip_context.mock("erp").fail_times(10, lambda: ExchangeError("erp rejected"))
    sending = asyncio.create_task(eip_context.template().send("direct:in", 1))
    for _ in range(2):
        await manual_clock.wait_for_sleepers(1)
        await manual_clock.advance(1)
    exchange = await asyncio.wait_for(sending, 5)
    assert exchange.exception is None
    assert eip_context.mock("erp").count == 3  # 1 + 2 redeliveries in the sub-route only
    dead = eip_context.mock("dead").received[0]
    assert dead.headers[H.FAILURE_ROUTE] == "sub"
    assert dead.headers[H.FAILURE_ENDPOINT] == "mock:erp"
    error = dead.properties[H.EXCEPTION_PROPERTY]
    assert error.route_id == "sub"
    assert "endpoint=mock:erp" in str(error)


async def test_dead_letter_failure_fails_the_exchange(eip_context: Context) -> None:
    class R(RouteBuilder):
        def configure(self) -> None:
            self.error_handler(dead_letter_channel("mock:dead"))
            self.from_("direct:in").route_id("r").to("mock:x")

    eip_context.add_routes(R())
    await eip_context.start()
    eip_context.mock("x").fail_times(1, lambda: ValueError("first"))
    eip_context.mock("dead").fail_times(1, lambda: OSError("dlq down"))
    exchange = await eip_context.template().send("direct:in", 1)
    assert isinstance(exchange.exception, OSError)
    assert isinstance(exchange.exception.__cause__, ValueError)


def test_redelivery_policy_delays_and_validation() -> None:
    policy = RedeliveryPolicy(max_redeliveries=5, delay=1, backoff_multiplier=3, max_delay=10)
    assert [policy.delay_for(n) for n in range(1, 5)] == [1, 3, 9, 10]
    jittered = RedeliveryPolicy(delay=10, jitter=0.2)
    samples = [jittered.delay_for(1) for _ in range(200)]
    assert all(8 <= s <= 12 for s in samples)
    assert len(set(samples)) > 1
    with pytest.raises(ValueError, match="backoff_multiplier"):
        RedeliveryPolicy(backoff_multiplier=0.5)
    with pytest.raises(ValueError, match="jitter"):
        RedeliveryPolicy(jitter=2)


# -- error handling runs once ------------------------------------------------------------------
@pytest.mark.parametrize("parallel", [False, True], ids=["sequential", "parallel"])
async def test_a_failing_split_part_runs_its_clause_once(
    eip_context: Context, manual_clock: ManualClock, parallel: bool
) -> None:
    clause_runs: list[object] = []
    splits: list[object] = []
    attempts: list[object] = []

    def fail_on_two(exchange: Exchange) -> None:
        attempts.append(exchange.body)
        if exchange.body == 2:
            raise ValueError("part 2 is bad")

    def parts(exchange: Exchange) -> list[int]:
        splits.append(exchange.body)
        return list(exchange.body)

    class R(RouteBuilder):
        def configure(self) -> None:
            self.error_handler(
                default_error_handler(RedeliveryPolicy(max_redeliveries=1, delay=1.0))
            )
            self.on_exception(ValueError).process(lambda ex: clause_runs.append(ex.body))
            self.from_("direct:in").route_id("r").split(
                parts, pipeline().process(fail_on_two).to("mock:part"), parallel=parallel
            ).to("mock:after")

    eip_context.add_routes(R())
    await eip_context.start()
    sending = asyncio.create_task(eip_context.template().send("direct:in", [1, 2, 3]))
    await manual_clock.wait_for_sleepers(1)
    await manual_clock.advance(1.0)
    exchange = await asyncio.wait_for(sending, 5)
    assert isinstance(exchange.exception, PartFailedError)
    assert isinstance(exchange.exception.__cause__, ValueError)
    assert clause_runs == [2]  # once, for the part; not again for the whole exchange
    assert splits == [[1, 2, 3]]  # the split as a whole is not redelivered
    assert sorted(attempts, key=str) == [1, 2, 2, 3]  # the failing part is, once
    assert eip_context.mock("after").count == 0


async def test_a_sub_route_failure_runs_the_builder_clause_once(eip_context: Context) -> None:
    clause_runs: list[str] = []

    class R(RouteBuilder):
        def configure(self) -> None:
            self.on_exception(KeyError).process(lambda ex: clause_runs.append(ex.route_id or ""))
            self.from_("direct:in").route_id("caller").to("direct:sub").to("mock:after")
            self.from_("direct:sub").route_id("sub").to("mock:erp")

    eip_context.add_routes(R())
    await eip_context.start()
    eip_context.mock("erp").fail_times(1, lambda: KeyError("no such customer"))
    exchange = await eip_context.template().send("direct:in", 1)
    assert isinstance(exchange.exception, KeyError)
    assert len(clause_runs) == 1
    assert eip_context.mock("after").count == 0


async def test_the_clause_of_another_builder_still_runs_for_a_sub_route_failure(
    eip_context: Context,
) -> None:
    runs: list[str] = []

    class Caller(RouteBuilder):
        def configure(self) -> None:
            self.on_exception(KeyError).handled().process(lambda ex: runs.append("caller"))
            self.from_("direct:in").route_id("caller").to("direct:sub").to("mock:after")

    class Sub(RouteBuilder):
        def configure(self) -> None:
            self.on_exception(KeyError).process(lambda ex: runs.append("sub"))
            self.from_("direct:sub").route_id("sub").to("mock:erp")

    eip_context.add_routes(Caller(), Sub())
    await eip_context.start()
    eip_context.mock("erp").fail_times(1, lambda: KeyError("no such customer"))
    exchange = await eip_context.template().send("direct:in", 1)
    assert exchange.exception is None  # the caller's own clause handled it
    assert runs == ["sub", "caller"]


async def test_a_failing_clause_step_in_a_branch_runs_the_clause_once(
    eip_context: Context,
) -> None:
    runs: list[object] = []

    def note_then_fail(exchange: Exchange) -> None:
        runs.append(exchange.body)
        raise RuntimeError("the clause's own step failed")

    class R(RouteBuilder):
        def configure(self) -> None:
            self.on_exception(Exception).handled().process(note_then_fail)
            (
                self.from_("direct:in")
                .route_id("r")
                .choice(when(lambda ex: True).to("mock:x"), otherwise().to("mock:never"))
            )

    eip_context.add_routes(R())
    await eip_context.start()
    eip_context.mock("x").fail_times(1, lambda: ValueError("first"))
    exchange = await eip_context.template().send("direct:in", "x")
    assert runs == ["x"]
    assert isinstance(exchange.exception, RuntimeError)
    assert isinstance(exchange.exception.__cause__, ValueError)


class Record(msgspec.Struct):
    id: int


async def test_each_redelivery_logs_one_warning_line(
    eip_context: Context, manual_clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    class R(RouteBuilder):
        def configure(self) -> None:
            policy = RedeliveryPolicy(max_redeliveries=3, delay=1.0, backoff_multiplier=2.0)
            self.error_handler(dead_letter_channel("mock:dead", redelivery=policy))
            self.from_("direct:in").route_id("orders").to("mock:erp")

    eip_context.add_routes(R())
    await eip_context.start()
    eip_context.mock("erp").fail_times(9, lambda: ConnectionError("erp down\n  at line 2"))
    with caplog.at_level(logging.WARNING, logger="eip.error_handler"):
        sending = asyncio.create_task(eip_context.template().send("direct:in", "x"))
        for delay in (1.0, 2.0, 4.0):
            await manual_clock.wait_for_sleepers(1)
            await manual_clock.advance(delay)
        exchange = await asyncio.wait_for(sending, 5)
    lines = [r.getMessage() for r in caplog.records if r.name == "eip.error_handler"]
    assert lines[:3] == [
        f"route orders, step mock:erp: redelivery attempt {n} of 3 in {delay:.2f}s for "
        f"exchange {exchange.id} after ConnectionError: erp down"
        for n, delay in ((1, 1.0), (2, 2.0), (3, 4.0))
    ]
    assert len(lines) == 4  # and the dead letter line
    assert "dead-lettered to mock:dead" in lines[3]
    assert eip_context.mock("erp").count == 4


async def test_a_deterministic_failure_goes_to_the_dead_letter_at_once(
    eip_context: Context, caplog: pytest.LogCaptureFixture
) -> None:
    class R(RouteBuilder):
        def configure(self) -> None:
            policy = RedeliveryPolicy(max_redeliveries=3, delay=10)
            self.error_handler(dead_letter_channel("mock:dead", redelivery=policy))
            self.from_("direct:in").route_id("r").to("mock:seen").unmarshal(json(Record))

    eip_context.add_routes(R())
    await eip_context.start()
    with caplog.at_level(logging.INFO, logger="eip.error_handler"):
        # The manual clock never moves: a redelivery would wait for ever.
        await asyncio.wait_for(eip_context.template().send("direct:in", b'{"id": "x"}'), 5)
    dead = eip_context.mock("dead").received
    assert len(dead) == 1
    assert dead[0].headers[H.REDELIVERY_COUNT] == 0
    assert dead[0].headers[H.EXCEPTION_TYPE] == "eip.errors.UnmarshalError"
    (skipped,) = [r for r in caplog.records if r.levelno == logging.INFO]
    assert skipped.getMessage().startswith("route r, step unmarshal(json): not redelivering")
    assert "(a data format error: the same input fails the same way): UnmarshalError: " in (
        skipped.getMessage()
    )
    assert eip_context.mock("seen").count == 1


async def test_each_failure_is_judged_on_its_own(
    eip_context: Context, manual_clock: ManualClock
) -> None:
    class R(RouteBuilder):
        def configure(self) -> None:
            policy = RedeliveryPolicy(max_redeliveries=3, delay=1)
            self.error_handler(dead_letter_channel("mock:dead", redelivery=policy))
            self.from_("direct:in").route_id("r").to("mock:erp")

    eip_context.add_routes(R())
    await eip_context.start()
    errors = iter([TimeoutError("slow"), MappingError("$.id", "not an int")])
    eip_context.mock("erp").fail_times(2, lambda: next(errors))
    sending = asyncio.create_task(eip_context.template().send("direct:in", "x"))
    await manual_clock.wait_for_sleepers(1)
    await manual_clock.advance(1)
    await asyncio.wait_for(sending, 5)
    assert eip_context.mock("erp").count == 2  # the time-out retried, the mapping error not
    assert eip_context.mock("dead").received[0].headers[H.REDELIVERY_COUNT] == 1


@pytest.mark.parametrize(("own", "calls"), [(None, 3), (0, 1)], ids=["inherits", "own"])
async def test_a_clause_inherits_the_handler_redelivery_unless_it_sets_its_own(
    eip_context: Context, own: int | None, calls: int
) -> None:
    class R(RouteBuilder):
        def configure(self) -> None:
            policy = RedeliveryPolicy(max_redeliveries=2, delay=0)
            self.error_handler(default_error_handler(policy))
            clause = self.on_exception(LookupError).handled()
            if own is not None:
                clause.redelivery(max_redeliveries=own)
            clause.to("mock:rejected")
            self.from_("direct:in").route_id("r").to("mock:x")

    eip_context.add_routes(R())
    await eip_context.start()
    eip_context.mock("x").fail_times(5, lambda: KeyError("k"))
    exchange = await asyncio.wait_for(eip_context.template().send("direct:in", "x"), 5)
    assert exchange.exception is None
    assert eip_context.mock("x").count == calls
    assert eip_context.mock("rejected").count == 1


async def test_redelivery_for_ever(eip_context: Context, caplog: pytest.LogCaptureFixture) -> None:
    class R(RouteBuilder):
        def configure(self) -> None:
            policy = RedeliveryPolicy(max_redeliveries=-1, delay=0)
            self.error_handler(default_error_handler(policy))
            self.from_("direct:in").route_id("r").to("mock:x")

    eip_context.add_routes(R())
    await eip_context.start()
    eip_context.mock("x").fail_times(5, lambda: ConnectionError("down"))
    with caplog.at_level(logging.WARNING, logger="eip.error_handler"):
        exchange = await asyncio.wait_for(eip_context.template().send("direct:in", "x"), 5)
    assert exchange.exception is None
    assert eip_context.mock("x").count == 6
    assert "redelivery attempt 5 of unlimited in 0.00s" in caplog.records[-1].getMessage()
