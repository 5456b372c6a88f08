"""The aggregator's nowait path on the in-memory repository grows a ``collect_bodies`` group in
place (eip/processors/aggregate_nowait.py): the stored group must end up exactly as the
repository's own ``grow_nowait`` leaves it, which a delegating wrapper still goes through."""

from __future__ import annotations

from typing import Any

import pytest

from eip import Context, RouteBuilder, collect_bodies, header
from eip import headers as H
from eip.stores import MemoryAggregationRepository
from eip.testing import ManualClock


class Delegating:
    """The same repository behind ``__getattr__``: the nowait path, but no in-place growth."""

    def __init__(self, inner: MemoryAggregationRepository) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def grow(repository: Any, clock: ManualClock, timeout: float | None) -> list[Any]:
    """Send 4 inputs of group ``a`` (completion size 6), 2 of them with a message id and one of
    those again; return the open groups and what reached the output."""

    class R(RouteBuilder):
        def configure(self) -> None:
            self.from_("direct:in").route_id("r").aggregate(
                header("k"),
                collect_bodies,
                completion_size=6,
                completion_timeout=timeout,
                repository=repository,
            ).to("mock:out")

    context = Context(clock=clock)
    context.add_routes(R())
    async with context:
        template = context.template()
        for n, message_id in [(1, None), (2, "m2"), (3, "m3"), (4, "m2"), (5, None)]:
            headers = {"k": "a"} if message_id is None else {"k": "a", H.MESSAGE_ID: message_id}
            await clock.advance(1.5)
            exchange = await template.send("direct:in", n, headers)
            assert exchange.exception is None
        groups = await repository.open_groups()
        assert context.mock("out").count == 0
    return groups


@pytest.mark.parametrize("timeout", [None, 60.0])
async def test_a_group_grown_in_place_is_stored_as_grow_nowait_stores_it(
    timeout: float | None,
) -> None:
    in_place = await grow(MemoryAggregationRepository(ManualClock()), ManualClock(), timeout)
    inner = MemoryAggregationRepository(ManualClock())
    delegated = await grow(Delegating(inner), ManualClock(), timeout)
    assert len(in_place) == len(delegated) == 1
    group = in_place[0]
    assert group == delegated[0]
    assert group.state[0] == [1, 2, 3, 5]  # m2 again was a redelivery: skipped
    assert group.size == 4
    assert group.input_ids == ["m2", "m3"]
    assert group.version == 4  # one put, then three growths
    assert group.updated > group.created
