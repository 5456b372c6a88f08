"""The idempotent consumer and the aggregator running in routes on every store: memory,
SQLite, PostgreSQL (and Redis for idempotency). The in-memory-only behaviour is covered in
tests/test_stateful_eips.py; here each scenario runs on the real services, including what a
dead-lettered (handled) failure leaves in each store."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from eip import Context, RouteBuilder, body, collect_bodies, dead_letter_channel, header
from eip import headers as H
from eip.stores import StoreError
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


# -- a failure the error handler handled is still a failure ------------------------------------
def fail_on(*bad: Any) -> Any:
    """A step failing for the given bodies, recording every body it sees."""
    seen: list[Any] = []

    def step(exchange: Any) -> None:
        seen.append(exchange.body)
        if exchange.body in bad:
            raise ValueError(f"the ERP rejects {exchange.body!r}")

    step.seen = seen  # type: ignore[attr-defined]
    return step


@pytest.mark.parametrize("handler", ["dead_letter_channel", "handled_clause"])
@pytest.mark.parametrize("eager", [True, False], ids=["eager", "lazy"])
async def test_idempotent_releases_the_key_of_a_dead_lettered_message(
    idem: IdempotentBackend, handler: str, eager: bool
) -> None:
    """ids 1, 2 (fails, dead-lettered), 1, 2, 1, 3: the second 2 runs again and is
    dead-lettered again (Camel); 1 and 3 pass once."""
    repo = idem.build()
    work = fail_on(2)

    class R(RouteBuilder):
        def configure(self) -> None:
            if handler == "dead_letter_channel":
                self.error_handler(dead_letter_channel("mock:dead"))
            else:
                self.on_exception(ValueError).handled().to("mock:dead")
            (
                self.from_("direct:in")
                .route_id("r")
                .idempotent_consumer(body(), repo, eager=eager)
                .process(work)
                .to("mock:out")
            )

    context = Context(clock=idem.clock) if idem.clock else Context()
    context.add_routes(R())
    async with context:
        await send(context, [1, 2, 1, 2, 1, 3])  # each completes: handled counts as delivered
        assert work.seen == [1, 2, 2, 3]
        assert context.mock("out").received_bodies == [1, 3]
        assert context.mock("dead").received_bodies == [2, 2]
        assert await repo.contains("1")
        assert await repo.contains("3")
        assert not await repo.contains("2")


async def test_aggregator_input_dead_lettered_before_it_was_stored_is_aggregated_on_replay(
    agg: AggregationBackend,
) -> None:
    """The strategy fails for input m2 (dead-lettered, not stored): its id is not recorded, so
    the operator's replay of m2 is aggregated."""
    repo = agg.build()
    failures = {2}

    def strategy(old: Any, new: Any) -> Any:
        if new.body in failures:
            failures.discard(new.body)
            raise ValueError(f"cannot merge {new.body!r}")
        return collect_bodies(old, new)

    class R(RouteBuilder):
        def configure(self) -> None:
            self.error_handler(dead_letter_channel("mock:dead"))
            self.from_("direct:in").route_id("r").aggregate(
                header("k"), strategy, completion_size=3, repository=repo
            ).to("mock:out")

    context = Context(clock=agg.clock)
    context.add_routes(R())
    async with context:
        template = context.template()
        for n, message_id in [(1, "m1"), (2, "m2"), (2, "m2"), (3, "m3")]:
            exchange = await template.send("direct:in", n, {"k": "a", H.MESSAGE_ID: message_id})
            assert exchange.exception is None
        assert context.mock("dead").received_bodies == [2]
        assert context.mock("out").received_bodies == [[1, 2, 3]]


async def test_aggregator_input_stored_before_its_exchange_failed_is_not_aggregated_twice(
    agg: AggregationBackend,
) -> None:
    """m2 is stored in its group, then its exchange fails further on (in the calling route)
    and is dead-lettered. Its id rightly stays recorded: the group holds its data, so the
    replay runs the caller's remaining steps again but does not aggregate m2 a second time."""
    repo = agg.build()
    after: list[str] = []
    failures = {"m2"}

    def once(exchange: Any) -> None:
        message_id = exchange.headers[H.MESSAGE_ID]  # the body is the strategy's by now
        after.append(message_id)
        if message_id in failures:
            failures.discard(message_id)
            raise ValueError("the step after the aggregator failed once")

    class R(RouteBuilder):
        def configure(self) -> None:
            self.error_handler(dead_letter_channel("mock:dead"))
            self.from_("direct:in").route_id("caller").to("direct:agg").process(once)
            self.from_("direct:agg").route_id("agg").aggregate(
                header("k"), collect_bodies, completion_size=3, repository=repo
            ).to("mock:out")

    context = Context(clock=agg.clock)
    context.add_routes(R())
    async with context:
        template = context.template()
        for n, message_id in [(1, "m1"), (2, "m2"), (2, "m2"), (3, "m3")]:
            exchange = await template.send("direct:in", n, {"k": "a", H.MESSAGE_ID: message_id})
            assert exchange.exception is None
        assert [ex.headers[H.MESSAGE_ID] for ex in context.mock("dead").received] == ["m2"]
        assert after == ["m1", "m2", "m2", "m3"]  # the replay did run the rest of the route
        assert context.mock("out").received_bodies == [[1, 2, 3]]


async def test_aggregator_redelivered_input_of_a_closed_key_is_a_duplicate(
    agg: AggregationBackend,
) -> None:
    """A redelivery of an input whose group completed and closed the key is recognised as
    aggregated, not rejected (and dead-lettered) as a late arrival; a new input still is."""
    repo = agg.build()

    class R(RouteBuilder):
        def configure(self) -> None:
            self.error_handler(dead_letter_channel("mock:dead"))
            self.from_("direct:in").route_id("r").aggregate(
                header("k"),
                collect_bodies,
                completion_size=2,
                close_on_completion=True,
                repository=repo,
            ).to("mock:out")

    context = Context(clock=agg.clock)
    context.add_routes(R())
    async with context:
        template = context.template()
        for n, message_id in [(1, "m1"), (2, "m2"), (2, "m2"), (3, "m3")]:
            exchange = await template.send("direct:in", n, {"k": "a", H.MESSAGE_ID: message_id})
            assert exchange.exception is None
        assert context.mock("out").received_bodies == [[1, 2]]
        dead = context.mock("dead").received
        assert [ex.body for ex in dead] == [3]  # the late arrival, not the redelivered m2
        assert "is closed" in dead[0].headers[H.EXCEPTION_MESSAGE]


class ConfirmFailsOnce:
    """A real repository whose first ``confirm`` fails after downstream succeeded."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.failed = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def confirm(self, completed_id: str) -> None:
        if not self.failed:
            self.failed = True
            raise StoreError("connection lost before the confirm")
        await self.inner.confirm(completed_id)


async def test_aggregator_emit_failure_does_not_fail_the_completing_input(
    agg: AggregationBackend,
) -> None:
    """The group is stored with the input that completed it: a failure while emitting it
    belongs to the group (the recovery redelivers it), and does not dead-letter the input."""
    repo = ConfirmFailsOnce(agg.build())

    class R(RouteBuilder):
        def configure(self) -> None:
            self.error_handler(dead_letter_channel("mock:dead"))
            self.from_("direct:in").route_id("r").aggregate(
                header("k"),
                collect_bodies,
                completion_size=2,
                recovery_interval=10,
                repository=repo,
            ).to("mock:out")

    context = Context(clock=agg.clock)
    context.add_routes(R())
    async with context:
        template = context.template()
        for n, message_id in [(1, "m1"), (2, "m2")]:
            exchange = await template.send("direct:in", n, {"k": "a", H.MESSAGE_ID: message_id})
            assert exchange.exception is None
        assert context.mock("dead").count == 0
        assert repo.failed
        await agg.clock.advance(10)  # the recovery redelivers the unconfirmed group
        await context.mock("out").wait_for(2, timeout=5)
        assert context.mock("out").received_bodies == [[1, 2], [1, 2]]
        for _ in range(100):  # the confirm follows the downstream's success
            if not await repo.unconfirmed():
                break
            await asyncio.sleep(0.02)
        assert await repo.unconfirmed() == []
