"""What only the in-memory stores do: bounded LRU, synchronous fast paths, purging."""

from __future__ import annotations

import pytest

from eip.clock import ManualClock
from eip.stores import (
    CompletedGroup,
    MemoryAggregationRepository,
    MemoryIdempotentRepository,
    OpenGroup,
)


async def test_oldest_key_is_evicted_at_max_size() -> None:
    repo = MemoryIdempotentRepository(max_size=3)
    for key in ("a", "b", "c", "d"):
        assert await repo.add(key)
    assert len(repo) == 3
    assert not await repo.contains("a")
    assert await repo.add("a") is True  # forgotten, so no longer a duplicate


async def test_use_refreshes_a_key() -> None:
    repo = MemoryIdempotentRepository(max_size=3)
    for key in ("a", "b", "c"):
        repo.add_nowait(key)
    assert repo.add_nowait("a") is False  # a duplicate is a use: "a" is now the newest
    repo.confirm_nowait("b")  # so is a confirmation
    repo.add_nowait("d")
    assert not repo.contains_nowait("c")
    assert all(repo.contains_nowait(key) for key in ("a", "b", "d"))


def test_nowait_fast_path() -> None:
    clock = ManualClock()
    repo = MemoryIdempotentRepository(clock=clock)
    assert repo.add_nowait("a") is True
    assert repo.add_nowait("a") is False
    repo.remove_nowait("a")
    assert repo.add_nowait("a") is True
    repo.confirm_nowait("a")
    assert repo.contains_nowait("a")
    repo.remove_nowait("missing")


async def test_purge_drops_expired_keys_only() -> None:
    clock = ManualClock()
    repo = MemoryIdempotentRepository(ttl=100, lease=10, clock=clock)
    for key in ("claimed", "confirmed", "fresh"):
        repo.add_nowait(key)
    repo.confirm_nowait("confirmed")
    await clock.advance(50)
    repo.add_nowait("late")
    assert await repo.purge() == 2  # "claimed" and "fresh": their leases ran out
    assert len(repo) == 2
    await clock.advance(100)
    assert repo.purge_nowait() == 2


@pytest.mark.parametrize(
    "kwargs", [{"max_size": 0}, {"lease": 0}, {"ttl": 0}, {"ttl": -1.0}, {"lease": -5}]
)
def test_invalid_settings_are_rejected(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        MemoryIdempotentRepository(**kwargs)  # type: ignore[arg-type]


def test_aggregation_fast_path_keeps_the_state_object() -> None:
    repo = MemoryAggregationRepository()
    state = ({"lines": [1]}, {"h": "v"})
    group = OpenGroup(key="k", state=state, size=1, input_ids=["e1"], created=1.0, updated=1.0)
    repo.put_nowait(group)
    stored = repo.get_nowait("k")
    read = repo.get_nowait("k")
    assert read is not None
    assert read.state is state  # kept, not serialized: a memory store's whole point
    read.input_ids.append("e2")  # the aggregator mutates what it read, then writes it back
    read.size += 1
    assert repo.get_nowait("k") == stored
    repo.put_nowait(read)
    after = repo.get_nowait("k")
    assert after is not None
    assert after.version == 2
    assert after.input_ids == ["e1", "e2"]
    completed = CompletedGroup(id="c", key="k", state=state, size=2, trigger="size", completed=2.0)
    repo.complete_nowait(repo.get_nowait("k"), completed)  # type: ignore[arg-type]
    assert repo.get_nowait("k") is None
    repo.close_key_nowait("k")
    assert repo.is_closed_nowait("k")
    assert repo.mark_redelivered_nowait("c") == 1
    assert [c.id for c in repo.unconfirmed_nowait()] == ["c"]
    repo.confirm_nowait("c")
    assert repo.unconfirmed_nowait() == []
    assert repo.open_groups_nowait() == []
