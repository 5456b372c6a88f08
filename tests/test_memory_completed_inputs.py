"""The in-memory aggregation repository forgets the input ids of completed groups after their
retention, oldest first (eip/stores/memory.py): ids within the retention keep redeliveries
out, expired ones are dropped as completions go on, and a redelivered id is kept from its
latest completion."""

from __future__ import annotations

from eip.stores import MemoryAggregationRepository
from eip.stores.base import CompletedGroup, OpenGroup
from eip.testing import ManualClock


def complete(repository: MemoryAggregationRepository, key: str, ids: list[str]) -> None:
    now = repository._clock.time()
    group = OpenGroup(
        key=key, state=([], {}), size=len(ids), input_ids=ids, created=now, updated=now
    )
    repository.put_nowait(group)
    stored = repository.get_nowait(key)
    assert stored is not None
    done = CompletedGroup(
        id=f"done-{key}", key=key, state=([], {}), size=len(ids), trigger="size", completed=now
    )
    repository.complete_nowait(stored, done)


async def test_completed_input_ids_expire_oldest_first_once_many_are_kept() -> None:
    clock = ManualClock()
    repository = MemoryAggregationRepository(clock, input_retention=60.0)
    complete(repository, "again", ["again-1"])
    complete(repository, "old", [f"old-{n}" for n in range(6_000)])
    await clock.advance(50)
    complete(repository, "again-later", ["again-1"])  # the same id, completed again later
    complete(repository, "mid", [f"mid-{n}" for n in range(3_000)])
    await clock.advance(20)  # "old" is 70 s old now: past the retention; "mid" is 20 s old
    assert repository.completed_input_nowait("old-0")  # nothing dropped below 10,000 ids
    complete(repository, "new", [f"new-{n}" for n in range(2_000)])  # 11,001 ids: expire
    assert not repository.completed_input_nowait("old-0")
    assert not repository.completed_input_nowait("old-5999")
    assert repository.completed_input_nowait("again-1")  # kept from its latest completion
    assert repository.completed_input_nowait("mid-0")
    assert repository.completed_input_nowait("new-1999")
    assert len(repository._inputs) == 1 + 3_000 + 2_000
