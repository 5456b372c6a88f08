"""The synchronous per-message paths of the stateful EIPs on the in-memory stores: the memory
idempotent consumer's one-callback claim (no reference cycle per message), the aggregator's
nowait path (the stored group grows in place, and a user callable that fails leaves it as it
was) and the splitter's inline loop over a sync source (lookahead, sizes, a source failing
mid-way)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest

from eip import Context, Exchange, RouteBuilder, body, collect_bodies, header
from eip import headers as H
from eip.errors import PartFailedError
from eip.stores import ConcurrentUpdateError, MemoryAggregationRepository, OpenGroup
from eip.stores.memory import MemoryIdempotentRepository


def route(configure: Any, source: str = "direct:in") -> RouteBuilder:
    class R(RouteBuilder):
        def configure(self) -> None:
            route_id = "r" if source == "direct:in" else source.partition(":")[2]
            configure(self.from_(source).route_id(route_id))

    return R()


# -- memory idempotent consumer ---------------------------------------------------------------
async def test_a_completed_claim_leaves_no_reference_cycle(eip_context: Context) -> None:
    repo = MemoryIdempotentRepository()
    eip_context.add_routes(route(lambda r: r.idempotent_consumer(body(), repo).to("mock:out")))
    await eip_context.start()
    dispatch = eip_context.routes["r"].dispatch
    gc.collect()
    gc.disable()
    try:
        for n in range(200):
            exchange = Exchange(f"id-{n % 150}")  # 50 duplicates
            assert dispatch(exchange) is None  # no await on this path
            assert exchange.done() is None  # the claim's callback is a plain call
            del exchange
        found = gc.collect()  # what only the collector could free: cycles
    finally:
        gc.enable()
    assert found == 0
    assert eip_context.mock("out").count == 150
    assert len(repo) == 150


async def test_a_failure_releases_and_a_success_confirms(eip_context: Context) -> None:
    repo = MemoryIdempotentRepository()

    def fail_odd(exchange: Exchange) -> None:
        if int(exchange.body) % 2:
            raise ValueError(f"odd {exchange.body}")

    eip_context.add_routes(route(lambda r: r.idempotent_consumer(body(), repo).process(fail_odd)))
    await eip_context.start()
    template = eip_context.template()
    outcomes = [(await template.send("direct:in", n)).exception is None for n in (1, 2, 1, 2)]
    assert outcomes == [False, True, False, True]
    assert not repo.contains_nowait("1")  # released after each failure: a retry ran again
    assert repo.contains_nowait("2")
    assert repo._entries["2"].confirmed  # confirmed, not just claimed


async def test_a_non_string_id_is_made_a_string_once(eip_context: Context) -> None:
    calls: list[Any] = []
    repo = MemoryIdempotentRepository()

    def message_id(exchange: Exchange) -> Any:
        calls.append(exchange.body)
        return exchange.body

    eip_context.add_routes(route(lambda r: r.idempotent_consumer(message_id, repo).to("mock:out")))
    await eip_context.start()
    for value in (7, 7, 8):
        await eip_context.template().send("direct:in", value)
    assert calls == [7, 7, 8]  # the expression runs once per message
    assert eip_context.mock("out").count == 2
    assert repo.contains_nowait("7")


# -- the aggregator's nowait path -------------------------------------------------------------
def test_grow_changes_the_stored_group_in_place_with_the_next_version() -> None:
    repo = MemoryAggregationRepository()
    repo.put_nowait(
        OpenGroup(key="k", state=([1], {}), size=1, input_ids=[], created=1.0, updated=1.0)
    )
    stored = repo.peek_nowait("k")
    assert stored is not None
    assert repo.get_nowait("k") is not stored  # get copies, peek does not
    repo.grow_nowait(stored, ([1, 2], {}), 2, 2.0, "in-2")
    after = repo.get_nowait("k")
    assert after is not None
    assert (after.state, after.size, after.updated, after.input_ids, after.version) == (
        ([1, 2], {}),
        2,
        2.0,
        ["in-2"],
        2,
    )
    stale = repo.get_nowait("k")
    assert stale is not None
    repo.put_nowait(stale)  # another writer replaced the stored group
    with pytest.raises(ConcurrentUpdateError):
        repo.grow_nowait(stored, ([0], {}), 9, 3.0, None)


async def test_a_failing_completion_predicate_leaves_the_group_unchanged(
    eip_context: Context,
) -> None:
    repo = MemoryAggregationRepository()

    def append(old: Exchange | None, new: Exchange) -> Exchange:
        # a new list per input: collect_bodies appends to the stored list itself, so with the
        # memory store a failure after it ran would leave the body there (as it always did)
        return Exchange([new.body] if old is None else [*old.body, new.body])

    def complete(exchange: Exchange) -> bool:
        if exchange.body == ["a", "boom"]:
            raise RuntimeError("predicate failed")
        return len(exchange.body) == 3

    eip_context.add_routes(
        route(
            lambda r: r.aggregate(
                header("k"),
                append,
                completion_predicate=complete,
                repository=repo,
            ).to("mock:out")
        )
    )
    await eip_context.start()
    template = eip_context.template()
    assert (await template.send("direct:in", "a", {"k": "g"})).exception is None
    failed = await template.send("direct:in", "boom", {"k": "g"})
    assert failed.exception is not None
    group = repo.get_nowait("g")
    assert group is not None
    assert (group.size, group.version) == (1, 1)  # the failed input is not in it
    for item in ("b", "c"):
        assert (await template.send("direct:in", item, {"k": "g"})).exception is None
    assert [ex.body for ex in eip_context.mock("out").received] == [["a", "b", "c"]]


async def test_a_redelivered_input_is_skipped_on_the_nowait_path(eip_context: Context) -> None:
    eip_context.add_routes(
        route(lambda r: r.aggregate(header("k"), collect_bodies, completion_size=3).to("mock:out"))
    )
    await eip_context.start()
    template = eip_context.template()
    for n, message_id in enumerate(["m1", "m2", "m2", "m3", "m3", "m4"]):
        headers = {"k": "g", H.MESSAGE_ID: message_id}
        assert (await template.send("direct:in", n, headers)).exception is None
    assert [ex.body for ex in eip_context.mock("out").received] == [[0, 1, 3]]


# -- the splitter's inline loop ---------------------------------------------------------------
async def test_a_sync_source_splits_with_lookahead_and_the_size_on_the_last_part(
    eip_context: Context,
) -> None:
    def items(exchange: Exchange) -> Iterator[str]:
        yield from exchange.body.split(",")

    eip_context.add_routes(
        route(lambda r: r.split(items).set_header("seen", lambda ex: True).to("mock:parts"))
    )
    await eip_context.start()
    original = Exchange("a,b,c", {"h": "v"})
    original.properties["inherited"] = 1
    await eip_context.template().send_exchange("direct:in", original)
    parts = eip_context.mock("parts").received
    assert [p.body for p in parts] == ["a", "b", "c"]
    assert [p.properties[H.SPLIT_INDEX] for p in parts] == [0, 1, 2]
    assert [p.properties.get(H.SPLIT_SIZE) for p in parts] == [None, None, 3]
    assert [p.properties[H.SPLIT_COMPLETE] for p in parts] == [False, False, True]
    assert all(p.properties["inherited"] == 1 for p in parts)
    assert all(p.headers == {"h": "v", "seen": True} for p in parts)
    assert original.headers == {"h": "v"}  # each part has its own copy
    assert "seen" not in original.headers


async def test_a_source_failing_midway_fails_the_split_after_the_parts_before(
    eip_context: Context,
) -> None:
    closed: list[bool] = []

    def items(exchange: Exchange) -> Iterator[int]:
        try:
            yield 1
            yield 2
            raise OSError("disk gone")
        finally:
            closed.append(True)

    eip_context.add_routes(route(lambda r: r.split(items).to("mock:parts")))
    await eip_context.start()
    exchange = await eip_context.template().send("direct:in", None)
    assert isinstance(exchange.exception, OSError)
    # reading one part ahead: part 1 ran, part 2 was read when the source failed
    assert [p.body for p in eip_context.mock("parts").received] == [1]
    assert closed == [True]


async def test_a_failed_part_of_a_list_is_named_and_the_rest_still_run(
    eip_context: Context,
) -> None:
    def check(exchange: Exchange) -> None:
        if exchange.body == "bad":
            raise ValueError("bad part")

    eip_context.add_routes(route(lambda r: r.split(body()).process(check).to("mock:parts")))
    await eip_context.start()
    exchange = await eip_context.template().send("direct:in", ["a", "bad", "c"])
    assert isinstance(exchange.exception, PartFailedError)
    assert "index 1" in str(exchange.exception)
    parts = eip_context.mock("parts").received
    assert [p.body for p in parts] == ["a", "c"]
    assert [p.properties[H.SPLIT_SIZE] for p in parts] == [3, 3]  # a list's size is known


async def test_collect_bodies_inline_groups_exactly_as_the_strategy_does(
    eip_context: Context,
) -> None:
    def general(old: Exchange | None, new: Exchange) -> Exchange:
        return collect_bodies(old, new)  # not collect_bodies itself: the strategy is called

    for name, strategy in (("inline", collect_bodies), ("called", general)):
        eip_context.add_routes(
            route(
                lambda r, s=strategy, n=name: r.aggregate(header("k"), s, completion_size=3).to(
                    f"mock:{n}"
                ),
                source=f"direct:{name}",
            )
        )
    await eip_context.start()
    template = eip_context.template()
    sent: dict[str, list[Exchange]] = {"inline": [], "called": []}
    for name in sent:
        for n, key in enumerate("aababbab"):
            exchange = await template.send(f"direct:{name}", {"n": n}, {"k": key})
            assert exchange.exception is None
            sent[name].append(exchange)
    inline, called = (eip_context.mock(n).received for n in ("inline", "called"))
    assert [(ex.body, ex.headers.get("k")) for ex in inline] == [
        (ex.body, ex.headers.get("k")) for ex in called
    ]
    assert [ex.body for ex in inline] == [
        [{"n": 0}, {"n": 1}, {"n": 3}],
        [{"n": 2}, {"n": 4}, {"n": 5}],
    ]
    # what the inputs were left with is the same too (the first of a group became its list)
    assert [ex.body for ex in sent["inline"]] == [ex.body for ex in sent["called"]]
