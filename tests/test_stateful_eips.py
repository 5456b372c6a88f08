"""Splitter, aggregator and idempotent consumer, with the in-memory stores (the persistent
stores run the same scenarios in tests/test_stateful_stores.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from eip import (
    Context,
    Exchange,
    RouteBuilder,
    RouteDefinitionError,
    body,
    collect_bodies,
    dead_letter_channel,
    header,
)
from eip import headers as H
from eip.dsl.builder import pipeline
from eip.errors import PartFailedError
from eip.splitters import csv_rows, groups, json_items, json_lines, lines, xml_elements
from eip.stores import MemoryIdempotentRepository
from eip.testing import ManualClock


def route(configure: Any) -> RouteBuilder:
    class R(RouteBuilder):
        def configure(self) -> None:
            configure(self.from_("direct:in").route_id("r"))

    return R()


async def send_all(context: Context, bodies: list[Any], **headers: Any) -> None:
    template = context.template()
    for item in bodies:
        exchange = await template.send("direct:in", item, dict(headers))
        assert exchange.exception is None, exchange.exception


# -- idempotent consumer -----------------------------------------------------------------------
async def test_idempotent_passes_each_id_once(eip_context: Context) -> None:
    eip_context.add_routes(route(lambda r: r.idempotent_consumer(body()).to("mock:out")))
    await eip_context.start()
    await send_all(eip_context, [1, 2, 1, 2, 1, 3])
    assert eip_context.mock("out").received_bodies == [1, 2, 3]


async def test_idempotent_duplicates_marked_when_not_skipped(eip_context: Context) -> None:
    eip_context.add_routes(
        route(lambda r: r.idempotent_consumer(body(), skip_duplicates=False).to("mock:out"))
    )
    await eip_context.start()
    await send_all(eip_context, [1, 2, 1])
    received = eip_context.mock("out").received
    assert [ex.body for ex in received] == [1, 2, 1]
    assert [ex.properties.get(H.DUPLICATE, False) for ex in received] == [False, False, True]


async def test_failed_message_is_not_remembered(eip_context: Context) -> None:
    eip_context.add_routes(route(lambda r: r.idempotent_consumer(body()).to("mock:erp")))
    await eip_context.start()
    eip_context.mock("erp").fail_times(1, lambda: ConnectionError("erp down"))
    first = await eip_context.template().send("direct:in", "order-1")
    assert isinstance(first.exception, ConnectionError)
    retry = await eip_context.template().send("direct:in", "order-1")
    assert retry.exception is None
    again = await eip_context.template().send("direct:in", "order-1")
    assert again.properties[H.DUPLICATE] is True
    assert eip_context.mock("erp").count == 2


async def test_concurrent_copies_pass_once(eip_context: Context) -> None:
    gate = asyncio.Event()

    async def slow(exchange: Exchange) -> None:
        await gate.wait()

    eip_context.add_routes(
        route(lambda r: r.idempotent_consumer(body()).process(slow).to("mock:out"))
    )
    await eip_context.start()
    sends = [
        asyncio.create_task(eip_context.template().send("direct:in", "same")) for _ in range(5)
    ]
    await asyncio.sleep(0.01)
    gate.set()
    await asyncio.gather(*sends)
    assert eip_context.mock("out").count == 1


async def test_no_message_id_is_an_error(eip_context: Context) -> None:
    eip_context.add_routes(route(lambda r: r.idempotent_consumer(header("id")).to("mock:out")))
    await eip_context.start()
    exchange = await eip_context.template().send("direct:in", "x")
    assert "gave no id" in str(exchange.exception)


def failing_on(bad: Any, calls: list[Any]) -> Any:
    def step(exchange: Exchange) -> None:
        calls.append(exchange.body)
        if exchange.body == bad:
            raise ValueError(f"rejected {exchange.body!r}")

    return step


async def test_a_continued_failure_confirms_the_key(eip_context: Context) -> None:
    calls: list[Any] = []

    class R(RouteBuilder):
        def configure(self) -> None:
            self.on_exception(ValueError).continued()
            self.from_("direct:in").route_id("r").idempotent_consumer(body()).process(
                failing_on("a", calls)
            ).to("mock:out")

    eip_context.add_routes(R())
    await eip_context.start()
    await send_all(eip_context, ["a", "a"])
    assert calls == ["a"]  # continued is not a failure: the second "a" is a duplicate
    assert eip_context.mock("out").received_bodies == ["a"]


async def test_a_key_claimed_in_a_dead_lettered_multicast_output_is_released(
    eip_context: Context,
) -> None:
    """The output's claim is handed over to the exchange, which succeeds; the output's own
    failure was dead-lettered, so its key is released all the same."""
    repo = MemoryIdempotentRepository()
    calls: list[Any] = []

    class R(RouteBuilder):
        def configure(self) -> None:
            self.error_handler(dead_letter_channel("mock:dead"))
            self.from_("direct:in").route_id("r").multicast(
                pipeline().idempotent_consumer(body(), repo).process(failing_on(2, calls)),
                "mock:other",
            ).to("mock:after")

    eip_context.add_routes(R())
    await eip_context.start()
    await send_all(eip_context, [1, 2, 1, 2])
    assert calls == [1, 2, 2]
    assert eip_context.mock("dead").received_bodies == [2, 2]
    assert eip_context.mock("after").received_bodies == [1, 2, 1, 2]
    assert repo.contains_nowait("1")
    assert not repo.contains_nowait("2")


async def test_a_key_claimed_in_a_dead_lettered_split_part_is_released(
    eip_context: Context,
) -> None:
    repo = MemoryIdempotentRepository()
    calls: list[Any] = []

    class R(RouteBuilder):
        def configure(self) -> None:
            self.error_handler(dead_letter_channel("mock:dead"))
            self.from_("direct:in").route_id("r").split(
                body(), pipeline().idempotent_consumer(body(), repo).process(failing_on(2, calls))
            )

    eip_context.add_routes(R())
    await eip_context.start()
    await send_all(eip_context, [[1, 2], [1, 2, 3]])
    assert calls == [1, 2, 2, 3]
    assert eip_context.mock("dead").received_bodies == [2, 2]


# -- splitter ----------------------------------------------------------------------------------
async def test_split_list_continues_with_original(eip_context: Context) -> None:
    eip_context.add_routes(
        route(lambda r: r.split(body(), pipeline().to("mock:part")).to("mock:after"))
    )
    await eip_context.start()
    await send_all(eip_context, [["a", "b", "c"]])
    parts = eip_context.mock("part").received
    assert [p.body for p in parts] == ["a", "b", "c"]
    assert [p.properties[H.SPLIT_INDEX] for p in parts] == [0, 1, 2]
    assert [p.properties[H.SPLIT_SIZE] for p in parts] == [3, 3, 3]
    assert [p.properties[H.SPLIT_COMPLETE] for p in parts] == [False, False, True]
    assert eip_context.mock("after").received_bodies == [["a", "b", "c"]]


async def test_streaming_split_reports_size_only_on_last_part(eip_context: Context) -> None:
    def generate(exchange: Exchange) -> Any:
        yield from range(4)

    eip_context.add_routes(route(lambda r: r.split(generate).to("mock:part")))
    await eip_context.start()
    await send_all(eip_context, [None])
    parts = eip_context.mock("part").received
    assert [p.body for p in parts] == [0, 1, 2, 3]
    assert [p.properties.get(H.SPLIT_SIZE) for p in parts] == [None, None, None, 4]
    assert [p.properties[H.SPLIT_COMPLETE] for p in parts] == [False, False, False, True]


async def test_split_async_iterator_and_aggregate(eip_context: Context) -> None:
    async def numbers(exchange: Exchange) -> Any:
        for n in range(1, 4):
            yield n

    def total(old: Exchange | None, new: Exchange) -> Exchange:
        if old is None:
            return new
        old.body += new.body
        return old

    eip_context.add_routes(
        route(
            lambda r: r.split(
                numbers, pipeline().transform(lambda ex: ex.body * 10), aggregate=total
            ).to("mock:after")
        )
    )
    await eip_context.start()
    await send_all(eip_context, [None])
    assert eip_context.mock("after").received_bodies == [60]


async def test_split_failure_handling(eip_context: Context) -> None:
    def fail_on_b(exchange: Exchange) -> None:
        if exchange.body == "b":
            raise ValueError("bad part b")

    eip_context.add_routes(
        route(lambda r: r.split(body(), pipeline().process(fail_on_b).to("mock:part"))),
        route_with_id(
            "stopping",
            lambda r: r.split(
                body(), pipeline().process(fail_on_b).to("mock:stopping"), stop_on_exception=True
            ),
        ),
    )
    await eip_context.start()
    exchange = await eip_context.template().send("direct:in", ["a", "b", "c"])
    assert isinstance(exchange.exception, PartFailedError)  # names the part ...
    assert exchange.exception.index == 1
    assert isinstance(exchange.exception.__cause__, ValueError)  # ... and carries the cause
    assert eip_context.mock("part").received_bodies == ["a", "c"]
    exchange = await eip_context.template().send("direct:stopping", ["a", "b", "c"])
    assert isinstance(exchange.exception, PartFailedError)
    assert isinstance(exchange.exception.__cause__, ValueError)
    assert eip_context.mock("stopping").received_bodies == ["a"]


def route_with_id(route_id: str, configure: Any) -> RouteBuilder:
    class R(RouteBuilder):
        def configure(self) -> None:
            configure(self.from_(f"direct:{route_id}").route_id(route_id))

    return R()


async def test_parallel_split_is_bounded(eip_context: Context) -> None:
    running = 0
    peak = 0

    async def work(exchange: Exchange) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.001)
        running -= 1

    eip_context.add_routes(
        route(
            lambda r: r.split(
                body(), pipeline().process(work).to("mock:p"), parallel=True, max_parallel=3
            )
        )
    )
    await eip_context.start()
    await send_all(eip_context, [list(range(20))])
    assert eip_context.mock("p").count == 20
    assert peak == 3


async def test_builtin_splitters(eip_context: Context, tmp_path: Path) -> None:
    csv_file = tmp_path / "rows.csv"
    csv_file.write_text("id,name\n1,a\n2,b\n3,c\n4,d\n5,e\n")
    eip_context.add_routes(
        route_with_id("csv", lambda r: r.split(groups(2, csv_rows())).to("mock:csv")),
        route_with_id("json", lambda r: r.split(json_items()).to("mock:json")),
        route_with_id("ndjson", lambda r: r.split(json_lines()).to("mock:ndjson")),
        route_with_id("lines", lambda r: r.split(lines()).to("mock:lines")),
        route_with_id("xml", lambda r: r.split(xml_elements("customer")).to("mock:xml")),
    )
    await eip_context.start()
    template = eip_context.template()
    await template.send("direct:csv", csv_file)
    await template.send("direct:json", b'[{"a": 1}, {"a": 2}]')
    await template.send("direct:ndjson", b'{"a": 1}\n\n{"a": 2}\n')
    await template.send("direct:lines", "x\r\ny\n\nz")
    await template.send(
        "direct:xml",
        b'<export xmlns="urn:crm"><customer id="1"/><other/><customer id="2"/></export>',
    )
    assert [[row["id"] for row in batch] for batch in eip_context.mock("csv").received_bodies] == [
        ["1", "2"],
        ["3", "4"],
        ["5"],
    ]
    assert eip_context.mock("json").received_bodies == [{"a": 1}, {"a": 2}]
    assert eip_context.mock("ndjson").received_bodies == [{"a": 1}, {"a": 2}]
    assert eip_context.mock("lines").received_bodies == ["x", "y", "z"]
    xml_parts = eip_context.mock("xml").received_bodies
    assert len(xml_parts) == 2
    assert b'id="1"' in xml_parts[0]


async def test_xml_splitter_rejects_entities(eip_context: Context) -> None:
    eip_context.add_routes(route(lambda r: r.split(xml_elements("c")).to("mock:xml")))
    await eip_context.start()
    evil = b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r><c>&x;</c></r>'
    exchange = await eip_context.template().send("direct:in", evil)
    assert "DTDs are not allowed" in str(exchange.exception)
    assert eip_context.mock("xml").count == 0


# -- aggregator --------------------------------------------------------------------------------
async def test_aggregate_by_size(eip_context: Context) -> None:
    eip_context.add_routes(
        route(lambda r: r.aggregate(header("k"), collect_bodies, completion_size=3).to("mock:out"))
    )
    await eip_context.start()
    for n, key in enumerate("aababb"):
        await eip_context.template().send("direct:in", n, {"k": key})
    out = eip_context.mock("out").received
    assert [ex.body for ex in out] == [[0, 1, 3], [2, 4, 5]]
    assert [ex.properties[H.AGGREGATED_COMPLETED_BY] for ex in out] == ["size", "size"]
    assert [ex.properties[H.AGGREGATED_KEY] for ex in out] == ["a", "b"]


async def test_aggregate_until_end_marker(eip_context: Context) -> None:
    eip_context.add_routes(
        route(
            lambda r: r.aggregate(
                header("k"), collect_bodies, completion_predicate=body() == "END", eager_check=True
            ).to("mock:out")
        )
    )
    await eip_context.start()
    for item in ["x", "y", "END", "z", "END"]:
        await eip_context.template().send("direct:in", item, {"k": "g"})
    assert eip_context.mock("out").received_bodies == [["x", "y", "END"], ["z", "END"]]


async def test_aggregate_on_new_group(eip_context: Context) -> None:
    eip_context.add_routes(
        route(
            lambda r: r.aggregate(header("order"), collect_bodies, complete_on_new_group=True).to(
                "mock:out"
            )
        )
    )
    await eip_context.start()
    for order, line in [("o1", 1), ("o1", 2), ("o2", 3), ("o3", 4), ("o3", 5)]:
        await eip_context.template().send("direct:in", line, {"order": order})
    out = eip_context.mock("out").received
    assert [ex.body for ex in out] == [[1, 2], [3]]
    assert {ex.properties[H.AGGREGATED_COMPLETED_BY] for ex in out} == {"new_group"}


async def test_force_completion_on_stop(eip_context: Context) -> None:
    eip_context.add_routes(
        route(lambda r: r.aggregate(header("k"), collect_bodies, completion_size=10).to("mock:out"))
    )
    await eip_context.start()
    await send_all(eip_context, [1, 2], k="a")
    await send_all(eip_context, [3], k="b")
    assert eip_context.mock("out").count == 0
    await eip_context.stop()
    out = eip_context.mock("out").received
    assert sorted(map(tuple, (ex.body for ex in out))) == [(1, 2), (3,)]
    assert {ex.properties[H.AGGREGATED_COMPLETED_BY] for ex in out} == {"stop"}


async def test_aggregate_inactivity_timeout_and_interval(
    eip_context: Context, manual_clock: ManualClock
) -> None:
    eip_context.add_routes(
        route_with_id(
            "timeout",
            lambda r: r.aggregate(header("k"), collect_bodies, completion_timeout=10).to(
                "mock:timeout"
            ),
        ),
        route_with_id(
            "interval",
            lambda r: r.aggregate(header("k"), collect_bodies, completion_interval=60).to(
                "mock:interval"
            ),
        ),
    )
    await eip_context.start()
    template = eip_context.template()
    await template.send("direct:timeout", 1, {"k": "a"})
    await manual_clock.advance(6)
    await template.send("direct:timeout", 2, {"k": "a"})  # activity restarts the 10 s
    await template.send("direct:interval", 1, {"k": "x"})
    await template.send("direct:interval", 2, {"k": "y"})
    await manual_clock.advance(6)
    assert eip_context.mock("timeout").count == 0
    await manual_clock.advance(5)
    assert eip_context.mock("timeout").received_bodies == [[1, 2]]
    await manual_clock.advance(50)
    assert sorted(eip_context.mock("interval").received_bodies) == [[1], [2]]


async def test_aggregate_close_key_and_invalid_keys(eip_context: Context) -> None:
    eip_context.add_routes(
        route_with_id(
            "closing",
            lambda r: r.aggregate(
                header("k"), collect_bodies, completion_size=1, close_on_completion=True
            ).to("mock:closed"),
        ),
        route_with_id(
            "ignoring",
            lambda r: r.aggregate(
                header("k"), collect_bodies, completion_size=1, ignore_invalid_keys=True
            ).to("mock:ignored"),
        ),
    )
    await eip_context.start()
    template = eip_context.template()
    assert (await template.send("direct:closing", 1, {"k": "a"})).exception is None
    late = await template.send("direct:closing", 2, {"k": "a"})
    assert "is closed" in str(late.exception)
    missing = await template.send("direct:closing", 3)
    assert "gave no key" in str(missing.exception)
    ignored = await template.send("direct:ignoring", 4)
    assert ignored.exception is None
    assert eip_context.mock("ignored").count == 0


async def test_failed_downstream_is_redelivered_then_dead_lettered(
    eip_context: Context, manual_clock: ManualClock
) -> None:
    eip_context.add_routes(
        route(
            lambda r: r.aggregate(
                header("k"),
                collect_bodies,
                completion_size=2,
                recovery_interval=5,
                max_redeliveries=2,
                dead_letter="mock:dead",
            ).to("mock:out")
        )
    )
    await eip_context.start()
    eip_context.mock("out").fail_times(10, lambda: ConnectionError("down"))
    await send_all(eip_context, [1, 2], k="a")
    assert eip_context.mock("out").count == 1
    for _ in range(3):
        await manual_clock.advance(5)
    out = eip_context.mock("out").received
    assert [ex.properties[H.AGGREGATED_REDELIVERED] for ex in out] == [False, True, True]
    dead = eip_context.mock("dead").received
    assert [ex.body for ex in dead] == [[1, 2]]
    assert dead[0].properties[H.AGGREGATED_REDELIVERY_COUNT] == 3


async def test_redelivered_input_is_not_aggregated_twice(eip_context: Context) -> None:
    eip_context.add_routes(
        route(lambda r: r.aggregate(header("k"), collect_bodies, completion_size=3).to("mock:out"))
    )
    await eip_context.start()
    template = eip_context.template()
    for n, message_id in [(1, "m1"), (2, "m2"), (2, "m2"), (3, "m3")]:
        await template.send("direct:in", n, {"k": "a", H.MESSAGE_ID: message_id})
    assert eip_context.mock("out").received_bodies == [[1, 2, 3]]


async def test_aggregate_needs_a_completion_condition() -> None:
    context = Context()
    context.add_routes(route(lambda r: r.aggregate(header("k"), collect_bodies).to("mock:out")))
    with pytest.raises(RouteDefinitionError, match="needs a completion condition"):
        await context.start()
