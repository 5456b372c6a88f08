"""Failures that say where (issue 11, point 7): a failure inside a split part or a multicast /
recipient list output reaches the caller as a PartFailedError naming the part (index, and the
endpoint of an output), with the original as ``__cause__``; clauses still match the original
type, the failure headers carry it, and the failure history names the part."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from eip import Context, Exchange, RouteBuilder, dead_letter_channel
from eip import headers as H
from eip.dsl.builder import RouteDefinition, pipeline
from eip.errors import OutcomeUnknownError, PartFailedError
from eip.failures import FailureRecord


def fail_on(bad: object, error: type[Exception] = ValueError) -> Callable[[Exchange], None]:
    def check(exchange: Exchange) -> None:
        if exchange.body == bad:
            raise error(f"{exchange.body!r} is bad")

    return check


def routes(configure: Callable[[RouteBuilder], object]) -> RouteBuilder:
    class R(RouteBuilder):
        def configure(self) -> None:
            configure(self)

    return R()


def from_in(builder: RouteBuilder) -> RouteDefinition:
    return builder.from_("direct:in").route_id("r")


def part_error(exchange: Exchange) -> PartFailedError:
    error = exchange.exception
    assert isinstance(error, PartFailedError), repr(error)
    return error


def only_failure(context: Context, route_id: str = "r") -> FailureRecord:
    records = context.failures.of(route_id)
    assert len(records) == 1, records
    return records[0]


def as_list(exchange: Exchange) -> list[Any]:
    return list(exchange.body)


def as_iterator(exchange: Exchange) -> Iterator[Any]:
    return iter(list(exchange.body))  # no len(): the streaming mode


async def as_async_iterator(exchange: Exchange) -> AsyncIterator[Any]:
    for item in list(exchange.body):
        yield item


SPLITS: dict[str, tuple[Callable[[Exchange], Any], bool]] = {
    "sequential": (as_list, False),
    "parallel": (as_list, True),
    "streaming": (as_iterator, False),
    "streaming-async": (as_async_iterator, False),
    "streaming-parallel": (as_iterator, True),
}


# -- split ------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", list(SPLITS))
async def test_a_split_part_failure_names_the_part(eip_context: Context, mode: str) -> None:
    expression, parallel = SPLITS[mode]
    eip_context.add_routes(
        routes(
            lambda b: from_in(b).split(
                expression, pipeline().process(fail_on("c")).to("mock:part"), parallel=parallel
            )
        )
    )
    await eip_context.start()
    exchange = await eip_context.template().send("direct:in", ["a", "b", "c", "d"])
    error = part_error(exchange)
    assert (error.eip, error.index, error.branch) == ("split", 2, None)
    assert isinstance(error.__cause__, ValueError)
    assert str(error.__cause__) == "'c' is bad"
    assert str(error).startswith("split part index 2 failed: ValueError: 'c' is bad")
    assert error.route_id == "r"
    assert error.exchange_id == exchange.id
    assert sorted(eip_context.mock("part").received_bodies) == ["a", "b", "d"]
    # The failure headers keep the original type and message; the endpoint names the part.
    assert exchange.headers[H.EXCEPTION_TYPE] == "builtins.ValueError"
    assert exchange.headers[H.EXCEPTION_MESSAGE] == "'c' is bad"
    assert exchange.headers[H.FAILURE_ENDPOINT].startswith("split part index 2 > process(")
    record = only_failure(eip_context)
    assert record.failed_at is not None
    assert record.failed_at.startswith("split part index 2 > process(")
    assert record.exception_type == "builtins.ValueError"
    assert record.message == "'c' is bad"


async def test_stop_on_exception_names_the_part_that_stopped_the_split(
    eip_context: Context,
) -> None:
    eip_context.add_routes(
        routes(
            lambda b: from_in(b).split(
                as_list, pipeline().process(fail_on(2)).to("mock:part"), stop_on_exception=True
            )
        )
    )
    await eip_context.start()
    exchange = await eip_context.template().send("direct:in", [0, 1, 2, 3])
    assert part_error(exchange).index == 2
    assert eip_context.mock("part").received_bodies == [0, 1]


async def test_an_on_exception_clause_still_catches_the_parts_own_type(
    eip_context: Context,
) -> None:
    caught: list[tuple[str, object]] = []

    def configure(b: RouteBuilder) -> None:
        b.on_exception(ValueError).handled(True).process(
            lambda ex: caught.append((type(ex.properties[H.EXCEPTION_PROPERTY]).__name__, ex.body))
        )
        from_in(b).split(as_list, pipeline().process(fail_on(2)).to("mock:part")).to("mock:after")

    eip_context.add_routes(routes(configure))
    await eip_context.start()
    exchange = await eip_context.template().send("direct:in", [1, 2, 3])
    assert exchange.exception is None
    assert caught == [("ValueError", 2)]
    assert eip_context.mock("part").received_bodies == [1, 3]
    assert eip_context.mock("after").count == 1


async def test_a_caller_routes_clause_matches_the_original_type_of_a_sub_routes_part(
    eip_context: Context,
) -> None:
    """Across a direct: boundary the caller sees the PartFailedError; its clause for ValueError
    (another builder's) takes it by the original's type, not PartFailedError's."""
    caught: list[BaseException | None] = []

    def caller(b: RouteBuilder) -> None:
        b.on_exception(KeyError).handled(True).to("mock:wrong-clause")
        b.on_exception(ValueError).handled(True).process(lambda ex: caught.append(ex.exception))
        b.from_("direct:in").route_id("caller").to("direct:splitter").to("mock:after")

    def splitter(b: RouteBuilder) -> None:
        b.from_("direct:splitter").route_id("splitter").split(
            as_list, pipeline().process(fail_on("y"))
        )

    eip_context.add_routes(routes(caller), routes(splitter))
    await eip_context.start()
    exchange = await eip_context.template().send("direct:in", ["x", "y"])
    assert exchange.exception is None  # handled by the caller's ValueError clause
    assert eip_context.mock("wrong-clause").count == 0
    assert eip_context.mock("after").count == 0
    assert len(caught) == 1
    # The history has the failure once, where it happened, naming the part.
    record = only_failure(eip_context, "splitter")
    assert record.failed_at is not None
    assert record.failed_at.startswith("split part index 1 > ")
    assert eip_context.failures.of("caller") == []


async def test_a_clause_for_part_failed_error_takes_what_no_other_clause_does(
    eip_context: Context,
) -> None:
    def caller(b: RouteBuilder) -> None:
        b.on_exception(KeyError).handled(True).to("mock:key-errors")
        b.on_exception(PartFailedError).handled(True).to("mock:part-failures")
        b.from_("direct:in").route_id("caller").to("direct:multicaster")

    def multicaster(b: RouteBuilder) -> None:
        b.from_("direct:multicaster").route_id("multicaster").multicast(
            "mock:fine", pipeline().process(fail_on("x"))
        )

    eip_context.add_routes(routes(caller), routes(multicaster))
    await eip_context.start()
    exchange = await eip_context.template().send("direct:in", "x")
    assert exchange.exception is None
    assert eip_context.mock("part-failures").count == 1
    assert eip_context.mock("key-errors").count == 0


async def test_a_builder_clause_that_ran_for_the_part_does_not_run_again_in_the_caller(
    eip_context: Context,
) -> None:
    runs: list[object] = []

    def configure(b: RouteBuilder) -> None:
        b.on_exception(ValueError).process(lambda ex: runs.append(ex.body))  # not handled
        b.from_("direct:in").route_id("caller").to("direct:splitter")
        b.from_("direct:splitter").route_id("splitter").split(
            as_list, pipeline().process(fail_on(2))
        )

    eip_context.add_routes(routes(configure))
    await eip_context.start()
    exchange = await eip_context.template().send("direct:in", [1, 2, 3])
    assert isinstance(part_error(exchange).__cause__, ValueError)
    assert runs == [2]  # once, on the part


# -- multicast ----------------------------------------------------------------------------------
@pytest.mark.parametrize("parallel", [False, True], ids=["sequential", "parallel"])
async def test_a_multicast_output_failure_names_the_output_and_endpoint(
    eip_context: Context, parallel: bool
) -> None:
    eip_context.mock("b").whenever(fail_on("x", KeyError))
    eip_context.add_routes(
        routes(lambda b: from_in(b).multicast("mock:a", "mock:b", "mock:c", parallel=parallel))
    )
    await eip_context.start()
    exchange = await eip_context.template().send("direct:in", "x")
    error = part_error(exchange)
    assert (error.eip, error.index, error.branch) == ("multicast", 1, "mock:b")
    assert error.endpoint == "mock:b"
    assert isinstance(error.__cause__, KeyError)
    assert str(error).startswith("multicast output index 1 (mock:b) failed: KeyError:")
    assert [eip_context.mock(n).count for n in "abc"] == [1, 1, 1]
    assert exchange.headers[H.EXCEPTION_TYPE] == "builtins.KeyError"
    assert exchange.headers[H.FAILURE_ENDPOINT] == "multicast output index 1 (mock:b) > mock:b"
    record = only_failure(eip_context)
    assert record.failed_at == "multicast output index 1 (mock:b) > mock:b"
    assert record.exception_type == "builtins.KeyError"


@pytest.mark.parametrize("parallel", [False, True], ids=["sequential", "parallel"])
async def test_a_multicast_output_of_several_steps_is_named_by_its_steps(
    eip_context: Context, parallel: bool
) -> None:
    eip_context.add_routes(
        routes(
            lambda b: from_in(b).multicast(
                "mock:a",
                pipeline().set_body("changed").process(fail_on("changed")),
                parallel=parallel,
            )
        )
    )
    await eip_context.start()
    error = part_error(await eip_context.template().send("direct:in", "x"))
    assert error.index == 1
    assert error.branch is not None
    assert error.branch.startswith("transform(str) > process(")
    assert str(error).startswith("multicast output index 1 (transform(str) > process(")


async def test_a_dead_lettered_output_is_named_in_the_history_and_succeeds(
    eip_context: Context,
) -> None:
    def configure(b: RouteBuilder) -> None:
        b.error_handler(dead_letter_channel("mock:dlq"))
        from_in(b).multicast("mock:a", pipeline().process(fail_on("x"))).to("mock:after")

    eip_context.add_routes(routes(configure))
    await eip_context.start()
    exchange = await eip_context.template().send("direct:in", "x")
    assert exchange.exception is None  # the dead letter channel took the output's failure
    assert eip_context.mock("after").count == 1
    letter = eip_context.mock("dlq").received[0]
    assert letter.headers[H.EXCEPTION_TYPE] == "builtins.ValueError"
    record = only_failure(eip_context)
    assert record.failed_at is not None
    assert record.failed_at.startswith("multicast output index 1 (process(")


async def test_a_caller_dead_letter_channel_gets_the_original_type_and_the_part(
    eip_context: Context,
) -> None:
    def caller(b: RouteBuilder) -> None:
        b.error_handler(dead_letter_channel("mock:dlq"))
        b.from_("direct:in").route_id("caller").to("direct:splitter")

    def splitter(b: RouteBuilder) -> None:
        b.from_("direct:splitter").route_id("splitter").split(
            as_list, pipeline().process(fail_on(1))
        )

    eip_context.add_routes(routes(caller), routes(splitter))
    await eip_context.start()
    exchange = await eip_context.template().send("direct:in", [0, 1])
    assert exchange.exception is None
    letter = eip_context.mock("dlq").received[0]
    assert letter.headers[H.EXCEPTION_TYPE] == "builtins.ValueError"
    assert letter.headers[H.EXCEPTION_MESSAGE] == "1 is bad"
    assert letter.headers[H.FAILURE_ENDPOINT].startswith("split part index 1 > process(")


async def test_an_unknown_outcome_in_a_part_is_not_dead_lettered_by_the_caller(
    eip_context: Context,
) -> None:
    def caller(b: RouteBuilder) -> None:
        b.error_handler(dead_letter_channel("mock:dlq"))
        b.from_("direct:in").route_id("caller").to("direct:multicaster")

    def multicaster(b: RouteBuilder) -> None:
        b.from_("direct:multicaster").route_id("multicaster").multicast(
            "mock:a", pipeline().process(fail_on("x", OutcomeUnknownError))
        )

    eip_context.add_routes(routes(caller), routes(multicaster))
    await eip_context.start()
    exchange = await eip_context.template().send("direct:in", "x")
    assert isinstance(part_error(exchange).original, OutcomeUnknownError)
    assert eip_context.mock("dlq").count == 0


async def test_nested_parts_name_every_level(eip_context: Context) -> None:
    eip_context.add_routes(
        routes(
            lambda b: from_in(b).multicast(
                "mock:a",
                pipeline().split(as_list, pipeline().process(fail_on(2))),
            )
        )
    )
    await eip_context.start()
    exchange = await eip_context.template().send("direct:in", [1, 2, 3])
    outer = part_error(exchange)
    assert (outer.eip, outer.index) == ("multicast", 1)
    inner = outer.__cause__
    assert isinstance(inner, PartFailedError)
    assert (inner.eip, inner.index) == ("split", 1)
    assert isinstance(outer.original, ValueError)
    assert "failed: PartFailedError: split part index 1 failed: ValueError: 2 is bad" in str(outer)
    record = only_failure(eip_context)
    assert record.failed_at is not None
    assert record.failed_at.startswith("multicast output index 1 (split(")
    assert " > split part index 1 > process(" in record.failed_at
    assert exchange.headers[H.FAILURE_ENDPOINT] == record.failed_at


# -- recipient list -------------------------------------------------------------------------------
@pytest.mark.parametrize("parallel", [False, True], ids=["sequential", "parallel"])
async def test_a_recipient_failure_names_the_recipient(
    eip_context: Context, parallel: bool
) -> None:
    eip_context.mock("second").whenever(fail_on("x"))
    eip_context.add_routes(
        routes(
            lambda b: from_in(b).recipient_list(
                lambda ex: "mock:first, mock:second", parallel=parallel
            )
        )
    )
    await eip_context.start()
    exchange = await eip_context.template().send("direct:in", "x")
    error = part_error(exchange)
    assert (error.eip, error.index, error.branch) == ("recipient_list", 1, "mock:second")
    assert str(error).startswith("recipient_list recipient index 1 (mock:second) failed")
    assert isinstance(error.__cause__, ValueError)
    record = only_failure(eip_context)
    assert record.failed_at == "recipient_list recipient index 1 (mock:second) > mock:second"


async def test_a_recipient_with_credentials_is_named_redacted(eip_context: Context) -> None:
    eip_context.add_routes(
        routes(
            lambda b: from_in(b).recipient_list(
                lambda ex: "http://erp:hunter2@127.0.0.1:9/api?connect_timeout=0.2"
            )
        )
    )
    await eip_context.start()
    exchange = await eip_context.template().send("direct:in", "x")
    error = part_error(exchange)
    assert error.index == 0
    assert "hunter2" not in str(error)
    assert "hunter2" not in (only_failure(eip_context).failed_at or "")
