"""A split part's message id: its own, derived from the parent's (``parent#index``), so an
aggregator or idempotent consumer behind a split that keys on ``eip.message.id`` sees each
part once, and sees it again (as a redelivery) only when the parent is redelivered."""

from __future__ import annotations

from typing import Any

from eip import Context, Exchange, RouteBuilder, body, collect_bodies, constant, header
from eip import headers as H
from eip.dsl.builder import pipeline
from eip.stores import MemoryIdempotentRepository


def route(configure: Any) -> RouteBuilder:
    class R(RouteBuilder):
        def configure(self) -> None:
            configure(self.from_("direct:in").route_id("r"))

    return R()


async def send(context: Context, payload: Any, message_id: str) -> Exchange:
    exchange = await context.template().send("direct:in", payload, {H.MESSAGE_ID: message_id})
    assert exchange.exception is None, exchange.exception
    return exchange


async def test_every_part_of_a_split_reaches_the_aggregator_behind_it(
    eip_context: Context,
) -> None:
    eip_context.add_routes(
        route(
            lambda r: (
                r.split(body())
                .aggregate(constant("all"), collect_bodies, completion_size=3)
                .to("mock:out")
            )
        )
    )
    await eip_context.start()
    await send(eip_context, ["a", "b", "c"], "m1")
    assert eip_context.mock("out").received_bodies == [["a", "b", "c"]]


async def test_every_part_reaches_an_aggregator_inside_the_split(eip_context: Context) -> None:
    eip_context.add_routes(
        route(
            lambda r: r.split(
                body(),
                pipeline()
                .aggregate(constant("all"), collect_bodies, completion_size=3)
                .to("mock:out"),
            )
        )
    )
    await eip_context.start()
    await send(eip_context, [1, 2, 3], "m1")
    assert eip_context.mock("out").received_bodies == [[1, 2, 3]]


async def test_a_redelivered_parent_adds_none_of_its_parts_again(eip_context: Context) -> None:
    eip_context.add_routes(
        route(
            lambda r: (
                r.split(body())
                .aggregate(constant("all"), collect_bodies, completion_size=4)
                .to("mock:out")
            )
        )
    )
    await eip_context.start()
    await send(eip_context, [1, 2], "m1")
    await send(eip_context, [1, 2], "m1")  # the broker's redelivery of m1
    await send(eip_context, [3, 4], "m2")
    assert eip_context.mock("out").received_bodies == [[1, 2, 3, 4]]


async def test_part_ids_derive_from_the_parent_and_the_parent_keeps_its_own(
    eip_context: Context,
) -> None:
    eip_context.add_routes(
        route(lambda r: r.split(body(), pipeline().to("mock:part")).to("mock:after"))
    )
    await eip_context.start()
    await send(eip_context, ["a", "b"], "m1")
    ids = [part.headers[H.MESSAGE_ID] for part in eip_context.mock("part").received]
    assert ids == ["m1#0", "m1#1"]
    assert eip_context.mock("after").received[0].headers[H.MESSAGE_ID] == "m1"


async def test_a_folded_split_result_keeps_the_parents_id(eip_context: Context) -> None:
    def first(old: Exchange | None, new: Exchange) -> Exchange:
        return new if old is None else old

    eip_context.add_routes(
        route(
            lambda r: r.split(body(), pipeline().to("mock:part"), aggregate=first).to("mock:after")
        )
    )
    await eip_context.start()
    await send(eip_context, ["a", "b"], "m1")
    after = eip_context.mock("after").received[0]
    assert (after.body, after.headers[H.MESSAGE_ID]) == ("a", "m1")


async def test_a_message_without_id_gives_parts_without_id(eip_context: Context) -> None:
    eip_context.add_routes(route(lambda r: r.split(body()).to("mock:part")))
    await eip_context.start()
    exchange = await eip_context.template().send("direct:in", ["a", "b"])
    assert exchange.exception is None
    assert [H.MESSAGE_ID in p.headers for p in eip_context.mock("part").received] == [False] * 2


async def test_idempotent_consumer_in_a_split_passes_each_part_once_per_parent(
    eip_context: Context,
) -> None:
    repo = MemoryIdempotentRepository()
    eip_context.add_routes(
        route(
            lambda r: r.split(
                body(), pipeline().idempotent_consumer(header(H.MESSAGE_ID), repo).to("mock:out")
            )
        )
    )
    await eip_context.start()
    await send(eip_context, ["a", "b", "c"], "m1")
    await send(eip_context, ["a", "b", "c"], "m1")  # redelivered: every part a duplicate
    await send(eip_context, ["d"], "m2")
    assert eip_context.mock("out").received_bodies == ["a", "b", "c", "d"]
    assert all(repo.contains_nowait(f"m1#{i}") for i in range(3))


async def test_streaming_and_parallel_splits_derive_part_ids_too(eip_context: Context) -> None:
    def generate(exchange: Exchange) -> Any:
        yield from exchange.body

    eip_context.add_routes(
        route(
            lambda r: r.split(generate, pipeline().to("mock:seq")).split(
                body(), pipeline().to("mock:par"), parallel=True
            )
        )
    )
    await eip_context.start()
    await send(eip_context, ["a", "b"], "m1")
    seq = [p.headers[H.MESSAGE_ID] for p in eip_context.mock("seq").received]
    par = sorted(p.headers[H.MESSAGE_ID] for p in eip_context.mock("par").received)
    assert seq == par == ["m1#0", "m1#1"]
