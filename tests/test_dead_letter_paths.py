"""The dead letter channel's own paths: sent one way, never into itself, and the file names it
may be given (see the rules in eip/processors/error_handler.py)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from eip import Context, Exchange, RedeliveryPolicy, RouteBuilder, body, dead_letter_channel
from eip import headers as H
from eip.errors import EndpointError
from eip.message import ExchangePattern
from eip.stores import MemoryIdempotentRepository


def fail(exchange: Exchange) -> None:
    raise ValueError(f"cannot process {exchange.body!r}")


# -- one way -----------------------------------------------------------------------------------
async def test_an_in_out_caller_is_not_held_by_a_seda_dead_letter_consumer(
    eip_context: Context,
) -> None:
    release = asyncio.Event()
    patterns: list[ExchangePattern] = []

    async def slow_dead_letter_consumer(exchange: Exchange) -> None:
        patterns.append(exchange.pattern)
        await release.wait()

    class R(RouteBuilder):
        def configure(self) -> None:
            self.error_handler(dead_letter_channel("seda:dead"))
            self.from_("direct:in").route_id("r").set_header("mine", "caller").process(fail)
            (
                self.from_("seda:dead")
                .route_id("dead")
                .process(slow_dead_letter_consumer)
                .set_header("theirs", "dead-letter consumer")
                .set_body("the dead-letter consumer's body")
                .to("mock:dead")
            )

    eip_context.add_routes(R())
    await eip_context.start()
    template = eip_context.template()
    # The dead-letter consumer is still blocked when the caller gets its answer.
    reply = await asyncio.wait_for(template.request_exchange("direct:in", "order-7"), 2)
    assert not release.is_set()
    assert reply.exception is None  # handled by the dead letter channel
    assert reply.body == "order-7"
    assert reply.headers["mine"] == "caller"
    assert "theirs" not in reply.headers
    assert reply.headers[H.EXCEPTION_MESSAGE] == "cannot process 'order-7'"
    release.set()
    dead = eip_context.mock("dead")
    await dead.wait_for(1, timeout=2)
    assert patterns == [ExchangePattern.IN_ONLY]
    assert dead.received_bodies == ["the dead-letter consumer's body"]


async def test_a_direct_dead_letter_route_does_not_become_the_reply(eip_context: Context) -> None:
    patterns: list[ExchangePattern] = []

    class R(RouteBuilder):
        def configure(self) -> None:
            self.error_handler(dead_letter_channel("direct:dead"))
            self.from_("direct:in").route_id("r").set_header("mine", "caller").process(fail)
            (
                self.from_("direct:dead")
                .route_id("dead")
                .process(lambda ex: patterns.append(ex.pattern))
                .set_header("theirs", "dead-letter route")
                .set_body("the dead-letter route's body")
            )

    eip_context.add_routes(R())
    await eip_context.start()
    reply = await asyncio.wait_for(
        eip_context.template().request_exchange("direct:in", "order-8"), 2
    )
    assert reply.exception is None
    assert reply.body == "order-8"
    assert reply.headers["mine"] == "caller"
    assert "theirs" not in reply.headers
    assert patterns == [ExchangePattern.IN_ONLY]
    assert reply.pattern is ExchangePattern.IN_OUT  # the caller's own pattern is untouched


async def test_the_original_message_goes_to_the_dead_letter_only(eip_context: Context) -> None:
    class R(RouteBuilder):
        def configure(self) -> None:
            self.error_handler(dead_letter_channel("mock:dead", use_original_message=True))
            (
                self.from_("direct:in")
                .route_id("r")
                .transform(lambda ex: ex.body.upper())
                .process(fail)
            )

    eip_context.add_routes(R())
    await eip_context.start()
    reply = await eip_context.template().request("direct:in", "original")
    assert reply == "ORIGINAL"  # the caller's own message at the failure
    dead = eip_context.mock("dead").received[0]
    assert dead.body == "original"
    assert dead.headers[H.EXCEPTION_MESSAGE] == "cannot process 'ORIGINAL'"


async def test_the_dead_letter_has_its_own_unit_of_work(eip_context: Context) -> None:
    """Completions registered while dead-lettering (an idempotent consumer in the dead-letter
    route) run when the dead letter is done."""
    seen = MemoryIdempotentRepository()

    class R(RouteBuilder):
        def configure(self) -> None:
            self.error_handler(dead_letter_channel("direct:dead"))
            self.from_("direct:in").route_id("r").process(fail)
            (
                self.from_("direct:dead")
                .route_id("dead")
                .idempotent_consumer(body(), seen)
                .to("mock:dead")
            )

    eip_context.add_routes(R())
    await eip_context.start()
    for item in ["a", "a", "b"]:
        exchange = await eip_context.template().send("direct:in", item)
        assert exchange.exception is None
    assert eip_context.mock("dead").received_bodies == ["a", "b"]
    assert seen.contains_nowait("a")
    assert seen.contains_nowait("b")


# -- never into itself -------------------------------------------------------------------------
class FailingDeadLetterRoute(RouteBuilder):
    """A builder-wide dead letter channel that also covers the (failing) dead-letter route."""

    def __init__(self, dead_letter: str, entries: list[str]) -> None:
        super().__init__()
        self.dead_letter = dead_letter
        self.entries = entries

    def configure(self) -> None:
        self.error_handler(
            dead_letter_channel(
                self.dead_letter, redelivery=RedeliveryPolicy(max_redeliveries=2, delay=0.01)
            )
        )
        self.from_("direct:in").route_id("orders").process(fail)
        (
            self.from_(self.dead_letter)
            .route_id("dead")
            .process(lambda ex: self.entries.append(ex.body))
            .process(self.refuse)
        )

    @staticmethod
    def refuse(exchange: Exchange) -> None:
        raise OSError("dead letter store is full")


def fatal_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "eip.error_handler" and record.levelno == logging.ERROR
    ]


async def test_a_failing_direct_dead_letter_route_is_not_dead_lettered_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    entries: list[str] = []
    context = Context()
    context.add_routes(FailingDeadLetterRoute("direct:dead", entries))
    with caplog.at_level(logging.WARNING, logger="eip"):
        async with context:
            exchange = await asyncio.wait_for(context.template().send("direct:in", "o-1"), 5)
    assert entries == ["o-1"]  # one attempt at dead-lettering: no loop
    # Not delivered anywhere, so not counted as delivered: it fails with the new error.
    assert isinstance(exchange.exception, OSError)
    assert isinstance(exchange.exception.__cause__, ValueError)
    [line] = fatal_lines(caplog)
    assert exchange.id in line
    assert "route orders" in line
    assert "ValueError: cannot process 'o-1'" in line
    assert "OSError: dead letter store is full" in line
    assert "dead letter channel direct:dead" in line


async def test_a_failing_seda_dead_letter_route_is_not_dead_lettered_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    entries: list[str] = []
    context = Context()
    context.add_routes(FailingDeadLetterRoute("seda:dead", entries))
    with caplog.at_level(logging.WARNING, logger="eip"):
        async with context:
            exchange = await asyncio.wait_for(context.template().send("direct:in", "o-2"), 5)
            assert exchange.exception is None  # handed to the queue: the caller is done
            for _ in range(200):
                if fatal_lines(caplog):
                    break
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.1)  # time enough for a loop to show itself
            assert context.routes["dead"].exchanges_total == 1
    assert entries == ["o-2"]
    [line] = fatal_lines(caplog)
    assert exchange.id in line
    assert "route orders" in line
    assert "OSError: dead letter store is full" in line


async def test_a_clause_whose_steps_fail_under_the_same_clause_does_not_loop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    entries: list[str] = []

    class R(RouteBuilder):
        def configure(self) -> None:
            self.on_exception(Exception).handled().to("direct:rejects").set_body("rejected")
            self.from_("direct:in").route_id("orders").process(fail)
            (
                self.from_("direct:rejects")
                .route_id("rejects")
                .process(lambda ex: entries.append(ex.body))
                .process(FailingDeadLetterRoute.refuse)
            )

    context = Context()
    context.add_routes(R())
    with caplog.at_level(logging.WARNING, logger="eip"):
        async with context:
            exchange = await asyncio.wait_for(context.template().send("direct:in", "o-3"), 5)
    assert entries == ["o-3"]
    assert isinstance(exchange.exception, OSError)
    assert isinstance(exchange.exception.__cause__, ValueError)
    [line] = fatal_lines(caplog)
    assert line.startswith("on_exception(Exception) failed while handling exchange")
    assert exchange.id in line


# -- file names --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("uri", "name", "source"),
    [
        ("file:{dir}", "evt\x00.json", "the eip.file.name header"),
        ("file:{dir}?file_name={{stem}}.bak", "evt\x00.json", "file_name option '{stem}.bak'"),
        ("file:{dir}", "../evt.json", "the eip.file.name header"),
    ],
)
async def test_the_file_producer_refuses_nul_and_traversal_naming_the_source(
    eip_context: Context, tmp_path: Path, uri: str, name: str, source: str
) -> None:
    await eip_context.start()
    target = uri.format(dir=tmp_path / "out")
    exchange = await eip_context.template().send(target, b"{}", {H.FILE_NAME: name})
    assert isinstance(exchange.exception, EndpointError)
    assert "refusing file name" in str(exchange.exception)
    assert source in str(exchange.exception)
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []
