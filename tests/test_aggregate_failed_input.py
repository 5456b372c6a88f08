"""An input whose aggregation fails leaves its group as it was (eip/processors/aggregate.py,
aggregate_nowait.py): the failed exchange goes back to its consumer (a redelivery, a dead
letter), so a body it left in the group would be aggregated twice when it comes again. The
in-memory repository's groups grow in place, which made this reachable: a completion
predicate that raised left the body in the stored list while the group's size said one less.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from eip import Context, Exchange, RouteBuilder, collect_bodies, header
from eip.stores import MemoryAggregationRepository, SqliteAggregationRepository


def refuses_two(group: Exchange) -> bool:
    """A completion predicate that fails on the group holding body 2 (a bug in user code)."""
    if 2 in group.body:
        raise ValueError("predicate broke on 2")
    return len(group.body) >= 3


def repositories(tmp_path: Path) -> dict[str, Any]:
    return {
        "memory": MemoryAggregationRepository(),
        "sqlite": SqliteAggregationRepository(tmp_path / "groups.db", "failed-input"),
    }


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
@pytest.mark.parametrize("size", [None, 10])
@pytest.mark.parametrize("new_group", [False, True])  # True: the general (awaiting) path
async def test_a_failing_predicate_leaves_the_group_as_it_was(
    tmp_path: Path, kind: str, size: int | None, new_group: bool
) -> None:
    repository = repositories(tmp_path)[kind]

    class R(RouteBuilder):
        def configure(self) -> None:
            self.from_("direct:in").route_id("r").aggregate(
                header("k"),
                collect_bodies,
                completion_predicate=refuses_two,
                completion_size=size,
                complete_on_new_group=new_group,
                repository=repository,
            ).to("mock:out")

    context = Context()
    context.add_routes(R())
    async with context:
        template = context.template()
        first = await template.send("direct:in", 1, {"k": "a"})
        failed = await template.send("direct:in", 2, {"k": "a"})
        groups = await repository.open_groups()
        assert first.exception is None
        assert isinstance(failed.exception, ValueError)
        assert [(g.key, g.state[0], g.size) for g in groups] == [("a", [1], 1)]
        for n in (3, 4):  # the group goes on from where it was
            assert (await template.send("direct:in", n, {"k": "a"})).exception is None
        assert [e.body for e in context.mock("out").received] == [[1, 3, 4]]


async def test_a_large_group_skips_redelivered_inputs_by_its_id_index() -> None:
    """Beyond a few dozen inputs the nowait path looks input ids up in a set that follows the
    stored group as it grows (aggregate_nowait._SeenInputs): a redelivered split is skipped
    part by part, new parts are still added, and the group completes once."""

    class R(RouteBuilder):
        def configure(self) -> None:
            self.from_("direct:in").route_id("r").split(lambda ex: ex.body).aggregate(
                header("k"), collect_bodies, completion_size=150
            ).to("mock:out")

    context = Context()
    context.add_routes(R())
    async with context:
        template = context.template()
        first = {"k": "a", "eip.message.id": "m1"}
        await template.send("direct:in", list(range(100)), dict(first))
        await template.send("direct:in", list(range(100)), dict(first))  # redelivered
        await template.send("direct:in", list(range(100, 140)), {"k": "a", "eip.message.id": "m2"})
        await template.send("direct:in", list(range(100)), dict(first))  # again, grown since
        assert context.mock("out").count == 0
        await template.send("direct:in", list(range(140, 150)), {"k": "a", "eip.message.id": "m3"})
    assert [e.body for e in context.mock("out").received] == [list(range(150))]


def test_the_id_index_follows_the_stored_group_and_starts_over_for_another() -> None:
    from eip.processors.aggregate_nowait import _SeenInputs
    from eip.stores.base import OpenGroup

    group = OpenGroup(key="a", state=([], {}), size=2, input_ids=["x", "y"], created=0, updated=0)
    seen = _SeenInputs()
    assert seen.contains("a", group, "y")
    group.input_ids.append("z")  # grown in place: the set catches up
    assert seen.contains("a", group, "z")
    assert not seen.contains("a", group, "w")
    other = OpenGroup(key="a", state=([], {}), size=1, input_ids=["w"], created=0, updated=0)
    assert seen.contains("a", other, "w")  # another group under the key: started over
    assert not seen.contains("a", other, "y")
    assert seen.by_key["a"].group is other
