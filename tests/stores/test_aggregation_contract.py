"""The aggregation repository contract, run against every implementation."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from eip.stores import (
    AggregationRepository,
    CompletedGroup,
    ConcurrentUpdateError,
    OpenGroup,
    StoreError,
)
from tests.stores.backends import AggregationBackend

ALL_BYTES = bytes(range(256)) * 3 + b"\x00\xff\x00"


class Order(msgspec.Struct):
    id: str
    lines: list[int]


def group(key: str = "k", *, version: int = 0, state: bytes = b"s", ids: int = 1) -> OpenGroup:
    return OpenGroup(
        key=key,
        state=state,
        size=ids,
        input_ids=[f"ex-{i}" for i in range(ids)],
        created=100.0,
        updated=100.5,
        version=version,
    )


def completed(id_: str = "c1", key: str = "k") -> CompletedGroup:
    return CompletedGroup(id=id_, key=key, state=b"final", size=2, trigger="size", completed=200.0)


def bump(g: OpenGroup, **changes: object) -> OpenGroup:
    """The aggregator's next write: one more input, based on the version it read."""
    fields: dict[str, object] = {
        "size": g.size + 1,
        "input_ids": [*g.input_ids, f"ex-{g.size}"],
        "updated": g.updated + 1,
        **changes,
    }
    return msgspec.structs.replace(g, **fields)


async def test_put_get_round_trip(agg: AggregationBackend) -> None:
    repo = await agg.make()
    assert isinstance(repo, AggregationRepository)
    assert await repo.get("k") is None
    original = group(ids=3)
    stored = await repo.put(original)
    assert stored == msgspec.structs.replace(original, version=1)
    assert await repo.get("k") == stored


async def test_update_increments_version(agg: AggregationBackend) -> None:
    repo = await agg.make()
    v1 = await repo.put(group())
    v2 = await repo.put(bump(v1, state=b"two"))
    assert v2.version == 2
    assert await repo.get("k") == v2
    assert (await repo.get("k")).input_ids == ["ex-0", "ex-1"]  # type: ignore[union-attr]


async def test_stale_update_conflicts_and_changes_nothing(agg: AggregationBackend) -> None:
    repo = await agg.make()
    v1 = await repo.put(group())
    v2 = await repo.put(bump(v1, state=b"winner"))
    with pytest.raises(ConcurrentUpdateError):
        await repo.put(bump(v1, state=b"loser"))
    assert await repo.get("k") == v2


async def test_double_create_conflicts(agg: AggregationBackend) -> None:
    repo = await agg.make()
    first = await repo.put(group(state=b"first"))
    with pytest.raises(ConcurrentUpdateError):
        await repo.put(group(state=b"second"))
    assert await repo.get("k") == first


async def test_update_of_missing_group_conflicts(agg: AggregationBackend) -> None:
    repo = await agg.make()
    with pytest.raises(ConcurrentUpdateError):
        await repo.put(group(version=3))
    assert await repo.get("k") is None


async def test_concurrent_updates_have_one_winner(agg: AggregationBackend) -> None:
    repo = await agg.make()
    v1 = await repo.put(group())

    async def write(i: int) -> bool:
        try:
            await repo.put(bump(v1, state=f"writer-{i}".encode()))
        except ConcurrentUpdateError:
            return False
        return True

    results = await asyncio.gather(*(write(i) for i in range(10)))
    assert results.count(True) == 1
    assert (await repo.get("k")).version == 2  # type: ignore[union-attr]


async def test_complete_moves_the_group(agg: AggregationBackend) -> None:
    repo = await agg.make()
    stored = await repo.put(group())
    await repo.complete(stored, completed())
    assert await repo.get("k") is None
    assert await repo.open_groups() == []
    assert await repo.unconfirmed() == [completed()]


async def test_stale_complete_conflicts_and_changes_nothing(agg: AggregationBackend) -> None:
    repo = await agg.make()
    v1 = await repo.put(group())
    v2 = await repo.put(bump(v1))
    with pytest.raises(ConcurrentUpdateError):
        await repo.complete(v1, completed())
    assert await repo.get("k") == v2
    assert await repo.unconfirmed() == []


async def test_complete_of_a_group_never_stored(agg: AggregationBackend) -> None:
    """Version 0 (as for put): the group must not exist, e.g. completion on the first input."""
    repo = await agg.make()
    await repo.complete(group(), completed("c1"))
    assert await repo.unconfirmed() == [completed("c1")]
    stored = await repo.put(group())
    with pytest.raises(ConcurrentUpdateError):
        await repo.complete(group(), completed("c2"))
    assert await repo.get("k") == stored


async def test_complete_with_a_used_id_fails_atomically(agg: AggregationBackend) -> None:
    repo = await agg.make()
    await repo.complete(group("a"), completed("c1", key="a"))
    stored = await repo.put(group("b"))
    with pytest.raises(StoreError):
        await repo.complete(stored, completed("c1", key="b"))
    assert await repo.get("b") == stored
    assert await repo.unconfirmed() == [completed("c1", key="a")]


async def test_confirm_forgets_the_completed_group(agg: AggregationBackend) -> None:
    repo = await agg.make()
    await repo.complete(group("a"), completed("c1", key="a"))
    await repo.complete(group("b"), completed("c2", key="b"))
    await repo.confirm("c1")
    assert [c.id for c in await repo.unconfirmed()] == ["c2"]
    await repo.confirm("c1")  # confirming twice is harmless
    await repo.confirm("c2")
    assert await repo.unconfirmed() == []


async def test_mark_redelivered_counts(agg: AggregationBackend) -> None:
    repo = await agg.make()
    await repo.complete(group(), completed())
    assert await repo.mark_redelivered("c1") == 1
    assert await repo.mark_redelivered("c1") == 2
    assert (await repo.unconfirmed())[0].redeliveries == 2
    with pytest.raises(StoreError):
        await repo.mark_redelivered("unknown")


async def test_open_groups_lists_every_open_group(agg: AggregationBackend) -> None:
    repo = await agg.make()
    stored = [await repo.put(group(key)) for key in ("b", "a", "c")]
    await repo.complete(stored[2], completed(key="c"))
    groups = await repo.open_groups()
    assert sorted(groups, key=lambda g: g.key) == [stored[1], stored[0]]


async def test_closed_keys(agg: AggregationBackend) -> None:
    repo = await agg.make()
    assert not await repo.is_closed("k")
    await repo.close_key("k")
    await repo.close_key("k")  # closing twice is harmless
    assert await repo.is_closed("k")
    assert not await repo.is_closed("other")


async def test_state_bytes_are_preserved_exactly(agg: AggregationBackend) -> None:
    repo = await agg.make()
    await repo.put(group(state=ALL_BYTES))
    assert (await repo.get("k")).state == ALL_BYTES  # type: ignore[union-attr]
    await repo.complete(group("x"), msgspec.structs.replace(completed(), state=ALL_BYTES))
    assert (await repo.unconfirmed())[0].state == ALL_BYTES


async def test_aggregated_exchange_state_round_trips(agg: AggregationBackend) -> None:
    """The aggregator's state is ``(body, headers)`` with any body, typed or not."""
    repo = await agg.make()
    state = (Order("o-1", [1, 2]), {"x-count": 2, "raw": b"\x00\x01", "when": None})
    stored = await repo.put(group(state=state))  # type: ignore[arg-type]
    read = await repo.get("k")
    assert read is not None
    assert read.state == state
    assert type(read.state[0]) is Order
    await repo.complete(read, msgspec.structs.replace(completed(), state=state))
    assert (await repo.unconfirmed())[0].state == state
    assert stored.version == 1


async def test_unserializable_state_is_a_store_error(persistent_agg: AggregationBackend) -> None:
    repo = await persistent_agg.make()
    with pytest.raises(StoreError, match="serialized"):
        await repo.put(group(state=(lambda: None, {})))  # type: ignore[arg-type]
    assert await repo.get("k") is None


async def test_caller_mutation_does_not_reach_the_store(agg: AggregationBackend) -> None:
    repo = await agg.make()
    original = group()
    stored = await repo.put(original)
    original.input_ids.append("sneaky")
    stored.input_ids.append("sneaky")
    read = await repo.get("k")
    assert read is not None
    read.input_ids.append("sneaky")
    assert (await repo.get("k")).input_ids == ["ex-0"]  # type: ignore[union-attr]


async def test_names_scope_the_groups(agg: AggregationBackend) -> None:
    orders = await agg.make("orders")
    invoices = await agg.make("invoices")
    await orders.put(group())
    await orders.complete(group("done"), completed())
    await orders.close_key("closed")
    assert await invoices.get("k") is None
    assert await invoices.open_groups() == []
    assert await invoices.unconfirmed() == []
    assert not await invoices.is_closed("closed")
    await invoices.put(group())  # the same key in another aggregator is another group


async def test_state_survives_a_new_repository(persistent_agg: AggregationBackend) -> None:
    first = await persistent_agg.make()
    stored = await first.put(group("open", state=ALL_BYTES))
    await first.complete(await first.put(group("done")), completed(key="done"))
    await first.mark_redelivered("c1")
    await first.close_key("done")
    await first.stop()

    second = await persistent_agg.make()
    assert await second.open_groups() == [stored]
    [redelivery] = await second.unconfirmed()
    assert redelivery.redeliveries == 1
    assert await second.is_closed("done")
    assert (await second.put(bump(stored))).version == 2


async def test_completed_inputs_are_remembered(agg: AggregationBackend) -> None:
    repo = await agg.make()
    stored = await repo.put(group(ids=2))
    assert not await repo.completed_input("ex-0")  # open, not completed yet
    await repo.complete(stored, completed())
    assert await repo.completed_input("ex-0")
    assert await repo.completed_input("ex-1")
    assert not await repo.completed_input("ex-2")
    await repo.confirm("c1")
    assert await repo.completed_input("ex-0")  # still known after downstream confirmed


async def test_stale_complete_records_no_inputs(agg: AggregationBackend) -> None:
    repo = await agg.make()
    stored = await repo.put(group(ids=1))
    await repo.put(bump(stored))
    with pytest.raises(ConcurrentUpdateError):
        await repo.complete(stored, completed())
    assert not await repo.completed_input("ex-0")
