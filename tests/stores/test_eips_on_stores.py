"""The idempotent consumer and the aggregator running in routes on every store: memory,
SQLite, PostgreSQL (and Redis for idempotency). The in-memory-only behaviour is covered in
tests/test_stateful_eips.py; here each scenario runs on the real services."""

from __future__ import annotations

from typing import Any

from eip import Context, RouteBuilder, body, collect_bodies, header
from eip import headers as H
from tests.stores.backends import AggregationBackend, IdempotentBackend


def route(configure: Any) -> RouteBuilder:
    class R(RouteBuilder):
        def configure(self) -> None:
            configure(self.from_("direct:in").route_id("r"))

    return R()


async def send(context: Context, items: list[Any], **headers: Any) -> None:
    for item in items:
        exchange = await context.template().send("direct:in", item, dict(headers))
        assert exchange.exception is None, exchange.exception


async def test_idempotent_sequence(idem: IdempotentBackend) -> None:
    repo = idem.build()
    context = Context(clock=idem.clock) if idem.clock else Context()
    context.add_routes(route(lambda r: r.idempotent_consumer(body(), repo).to("mock:out")))
    async with context:
        await send(context, [1, 2, 1, 2, 1, 3])
        assert context.mock("out").received_bodies == [1, 2, 3]


async def test_idempotent_marks_duplicates_and_forgets_failures(idem: IdempotentBackend) -> None:
    repo = idem.build()
    context = Context()
    context.add_routes(
        route(lambda r: r.idempotent_consumer(body(), repo, skip_duplicates=False).to("mock:out"))
    )
    async with context:
        out = context.mock("out")
        out.fail_times(1, lambda: ConnectionError("erp down"))
        failed = await context.template().send("direct:in", "a")
        assert isinstance(failed.exception, ConnectionError)
        await send(context, ["a", "a", "b"])
        marks = [ex.properties.get(H.DUPLICATE, False) for ex in out.received]
        assert [ex.body for ex in out.received] == ["a", "a", "a", "b"]
        assert marks == [False, False, True, False]  # the failed first try was not remembered


async def test_idempotent_state_survives_a_new_context(idem: IdempotentBackend) -> None:
    for round_number, expected in enumerate([[1, 2], [3]]):
        repo = idem.build()
        context = Context()
        context.add_routes(
            route(lambda r, repo=repo: r.idempotent_consumer(body(), repo).to("mock:out"))
        )
        async with context:
            await send(context, [1, 2, 3] if round_number else [1, 2])
            if idem.kind == "memory":
                expected = [1, 2, 3] if round_number else [1, 2]  # memory forgets on restart
            assert context.mock("out").received_bodies == expected


async def test_aggregator_triggers(agg: AggregationBackend) -> None:
    size_repo, end_repo, new_repo = agg.build("size"), agg.build("end"), agg.build("new")

    class Routes(RouteBuilder):
        def configure(self) -> None:
            self.from_("direct:size").route_id("size").aggregate(
                header("k"), collect_bodies, completion_size=3, repository=size_repo
            ).to("mock:size")
            self.from_("direct:end").route_id("end").aggregate(
                header("k"),
                collect_bodies,
                completion_predicate=body() == "END",
                eager_check=True,
                repository=end_repo,
            ).to("mock:end")
            self.from_("direct:new").route_id("new").aggregate(
                header("k"), collect_bodies, complete_on_new_group=True, repository=new_repo
            ).to("mock:new")

    context = Context(clock=agg.clock)
    context.add_routes(Routes())
    async with context:
        template = context.template()
        for n, key in enumerate("aababb"):
            await template.send("direct:size", n, {"k": key})
        for item in ["x", "END", "y", "END"]:
            await template.send("direct:end", item, {"k": "g"})
        for key, n in [("o1", 1), ("o1", 2), ("o2", 3), ("o3", 4)]:
            await template.send("direct:new", n, {"k": key})
        assert context.mock("size").received_bodies == [[0, 1, 3], [2, 4, 5]]
        assert context.mock("end").received_bodies == [["x", "END"], ["y", "END"]]
        assert context.mock("new").received_bodies == [[1, 2], [3]]


async def test_open_groups_and_timeouts_survive_a_restart(agg: AggregationBackend) -> None:
    def configure(repo: Any) -> RouteBuilder:
        return route(
            lambda r: r.aggregate(
                header("k"),
                collect_bodies,
                completion_timeout=30,
                force_completion_on_stop=False,
                repository=repo,
            ).to("mock:out")
        )

    first = Context(clock=agg.clock)
    repo = agg.build()
    first.add_routes(configure(repo))
    async with first:
        await send(first, [1, 2], k="a")
        await agg.clock.advance(10)
    assert first.mock("out").count == 0  # left open in the store, not completed on stop

    # The memory store lives in the process: it survives a context restart, not a new process.
    second_repo = repo if agg.kind == "memory" else agg.build()
    second = Context(clock=agg.clock)
    second.add_routes(configure(second_repo))
    async with second:
        await send(second, [3], k="a")
        await agg.clock.advance(29)
        assert second.mock("out").count == 0
        await agg.clock.advance(2)
        await second.mock("out").wait_for(1, timeout=2)
        out = second.mock("out").received
        assert [ex.body for ex in out] == [[1, 2, 3]]
        assert out[0].properties[H.AGGREGATED_COMPLETED_BY] == "timeout"


async def test_force_completion_on_stop_and_redelivered_inputs(agg: AggregationBackend) -> None:
    repo = agg.build()
    context = Context(clock=agg.clock)
    context.add_routes(
        route(
            lambda r: r.aggregate(
                header("k"), collect_bodies, completion_size=3, repository=repo
            ).to("mock:out")
        )
    )
    async with context:
        template = context.template()
        for n, message_id in [(1, "m1"), (2, "m2"), (2, "m2"), (3, "m3"), (3, "m3"), (4, "m4")]:
            await template.send("direct:in", n, {"k": "a", H.MESSAGE_ID: message_id})
    out = context.mock("out").received
    assert [ex.body for ex in out] == [[1, 2, 3], [4]]
    assert [ex.properties[H.AGGREGATED_COMPLETED_BY] for ex in out] == ["size", "stop"]
