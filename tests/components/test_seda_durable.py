"""Durable ``seda:`` (eip/components/seda_durable.py, seda_store.py): a SQLite file in tmp_path
holds the queue; rows are committed before a send returns and deleted after the consuming
exchange completed. The crash test (a SIGKILLed process) is in test_seda_durable_crash.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from eip import (
    Context,
    EndpointError,
    Exchange,
    ExchangeTimeoutError,
    LifecycleError,
    RouteBuilder,
    RouteDefinitionError,
    dead_letter_channel,
    seda,
)
from eip.components.seda import SedaComponent
from eip.components.seda_durable import REDELIVERED, DurableQueue


def routes(configure: Callable[[RouteBuilder], Any]) -> RouteBuilder:
    class Routes(RouteBuilder):
        def configure(self) -> None:
            configure(self)

    return Routes()


def durable_queue(context: Context, name: str) -> DurableQueue:
    component = context.component("seda")
    assert isinstance(component, SedaComponent)
    return component.durable_queues()[name]


async def rows(context: Context, name: str) -> list[tuple[int, str | None]]:
    """The queue's rows in the file (id, failed), once every route finished its exchanges
    (deletes are queued by their completion callbacks) and the store committed them."""
    await wait_for(lambda: all(route.inflight == 0 for route in context.routes.values()))
    return await durable_queue(context, name).store.rows(name)


class Gate:
    """An async processor that holds every exchange until ``open()``."""

    def __init__(self) -> None:
        self.entered = 0
        self._open = asyncio.Event()

    async def __call__(self, exchange: Exchange) -> None:
        self.entered += 1
        await self._open.wait()

    def open(self) -> None:
        self._open.set()


async def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll ``condition`` (route counters have no event to wait on)."""
    interval = 0.005
    for _ in range(int(timeout / interval)):
        if condition():
            return
        await asyncio.sleep(interval)
    raise TimeoutError(f"condition not met within {timeout} s")


@pytest.fixture
async def contexts() -> AsyncIterator[list[Context]]:
    """Contexts a test starts; each is stopped afterwards (a stopped one again is a no-op)."""
    made: list[Context] = []
    yield made
    for context in reversed(made):
        await context.stop()


async def started(contexts: list[Context], *builders: RouteBuilder) -> Context:
    context = Context(shutdown_timeout=5.0)
    context.add_routes(*builders)
    contexts.append(context)
    await context.start()
    return context


class Order(msgspec.Struct):
    id: int


# -- flow ----------------------------------------------------------------------------------
async def test_bodies_and_headers_cross_in_order_and_rows_are_deleted(
    tmp_path: Path, contexts: list[Context]
) -> None:
    uri = f"seda:q?durable=true&path={tmp_path}/seda.db"
    context = await started(contexts, routes(lambda b: b.from_(uri).route_id("c").to("mock:out")))
    bodies: list[Any] = [
        b"\x00raw",
        "text é",
        None,
        7,
        2.5,
        True,
        {"a": [1, {"b": None}]},
        [1, "x"],
    ]
    out = context.mock("out").expect_count(len(bodies))
    template = context.template()
    for n, body in enumerate(bodies):
        sent = await template.send(uri, body, {"n": n, "tags": ["x"], "blob": b"\x01"})
        assert sent.exception is None
    await out.assert_satisfied(timeout=5)

    assert out.received_bodies == bodies
    assert [type(b) for b in out.received_bodies] == [type(b) for b in bodies]
    assert out.received_headers == [
        {"n": n, "tags": ["x"], "blob": b"\x01"} for n in range(len(bodies))
    ]
    assert await rows(context, "q") == []  # each deleted once its exchange completed


async def test_the_consumer_gets_its_own_copy(tmp_path: Path, contexts: list[Context]) -> None:
    uri = f"seda:q?durable=true&path={tmp_path}/seda.db"
    gate = Gate()
    context = await started(
        contexts, routes(lambda b: b.from_(uri).route_id("c").process(gate).to("mock:out"))
    )
    body = {"items": [1, 2]}
    sent = Exchange(body, {"h": "original"})
    await context.template().send_exchange(uri, sent)
    body["items"].append(3)  # the sender changes its objects after the send
    sent.headers["h"] = "changed"
    gate.open()
    out = context.mock("out").expect_count(1)
    await out.assert_satisfied(timeout=5)
    assert out.received_bodies == [{"items": [1, 2]}]
    assert out.received_headers == [{"h": "original"}]


async def test_rows_left_at_stop_are_delivered_first_at_the_next_start_marked_redelivered(
    tmp_path: Path, contexts: list[Context]
) -> None:
    uri = f"seda:q?durable=true&path={tmp_path}/seda.db"

    def configure(consume: bool) -> Callable[[RouteBuilder], None]:
        def build(b: RouteBuilder) -> None:
            b.from_("direct:in").route_id("in").to(uri)
            b.from_(uri).route_id("c").auto_startup(consume).to("mock:out")

        return build

    first = await started(contexts, routes(configure(consume=False)))
    for n in range(5):
        assert (await first.template().send("direct:in", n)).exception is None
    assert [failed for _, failed in await rows(first, "q")] == [None] * 5
    await first.stop()  # nothing consumed them: they stay in the file

    second = await started(contexts, routes(configure(consume=True)))
    await second.template().send("direct:in", 5)
    out = second.mock("out").expect_count(6)
    await out.assert_satisfied(timeout=5)
    assert out.received_bodies == [0, 1, 2, 3, 4, 5]  # FIFO across the restart
    assert [h.get(REDELIVERED) for h in out.received_headers] == [True] * 5 + [None]
    assert await rows(second, "q") == []


async def test_concurrent_consumers_share_the_queue(
    tmp_path: Path, contexts: list[Context]
) -> None:
    uri = f"seda:q?durable=true&path={tmp_path}/seda.db&concurrent_consumers=3"
    gate = Gate()
    context = await started(
        contexts, routes(lambda b: b.from_(uri).route_id("c").process(gate).to("mock:out"))
    )
    for n in range(5):
        await context.template().send(uri, n)
    await wait_for(lambda: gate.entered == 3)
    await asyncio.sleep(0.05)
    assert gate.entered == 3  # three workers, each holding one exchange
    assert durable_queue(context, "q").items.qsize() == 2
    gate.open()
    out = context.mock("out").expect_count(5)
    await out.assert_satisfied(timeout=5)
    assert sorted(out.received_bodies) == [0, 1, 2, 3, 4]


# -- back-pressure -------------------------------------------------------------------------
async def test_a_full_durable_queue_blocks_fails_or_times_out_as_memory_seda_does(
    tmp_path: Path, contexts: list[Context]
) -> None:
    base = f"seda:q?durable=true&path={tmp_path}/seda.db&size=2"
    gate = Gate()
    context = await started(
        contexts, routes(lambda b: b.from_(base).route_id("c").process(gate).to("mock:out"))
    )
    template = context.template()
    await template.send(base, 0)
    await wait_for(lambda: gate.entered == 1)  # taken: its room is free again
    await template.send(base, 1)
    await template.send(base, 2)  # the queue holds 2 now

    refused = await template.send(f"{base}&block_when_full=false", 3)
    assert isinstance(refused.exception, EndpointError)
    assert "seda:q is full (2 messages)" in str(refused.exception)
    timed_out = await template.send(f"{base}&offer_timeout=0.05", 4)
    assert isinstance(timed_out.exception, ExchangeTimeoutError)

    blocked = asyncio.create_task(template.send(base, 5))
    await asyncio.sleep(0.05)
    assert not blocked.done()  # waits for room instead of growing the file
    gate.open()
    assert (await asyncio.wait_for(blocked, 5)).exception is None
    out = context.mock("out").expect_count(4)
    await out.assert_satisfied(timeout=5)
    assert out.received_bodies == [0, 1, 2, 5]
    assert await rows(context, "q") == []  # the refused ones were never written


# -- what may cross ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "what"),
    [
        (Order(1), "a body of type Order"),
        ((1, 2), "a body of type tuple"),
        ({"when": (1, 2)}, "a dict that would not come back equal"),
        ({"order": Order(1)}, "a dict that would not come back equal"),
        ([object()], "a list holding a value msgpack cannot write"),
    ],
)
async def test_a_body_that_cannot_cross_fails_the_send_and_writes_nothing(
    tmp_path: Path, contexts: list[Context], body: Any, what: str
) -> None:
    uri = f"seda:q?durable=true&path={tmp_path}/seda.db"
    context = await started(contexts, routes(lambda b: b.from_(uri).route_id("c").to("mock:out")))
    sent = await context.template().send(uri, body)
    assert isinstance(sent.exception, EndpointError)
    text = str(sent.exception)
    assert f"seda:q is durable and cannot store {what}" in text
    assert "marshal the body first" in text
    assert await rows(context, "q") == []
    assert (await context.template().send(uri, "fine")).exception is None
    await context.mock("out").expect_bodies("fine").assert_satisfied(timeout=5)


async def test_a_header_that_cannot_be_stored_fails_the_send(
    tmp_path: Path, contexts: list[Context]
) -> None:
    uri = f"seda:q?durable=true&path={tmp_path}/seda.db"
    context = await started(contexts, routes(lambda b: b.from_(uri).route_id("c").to("mock:out")))
    sent = await context.template().send(uri, "x", {"handle": object()})
    assert isinstance(sent.exception, EndpointError)
    assert "seda:q: a header value cannot be stored" in str(sent.exception)
    assert await rows(context, "q") == []


# -- completion, failure and waiting -------------------------------------------------------
async def test_an_unhandled_failure_is_kept_marked_failed_and_not_delivered_again(
    tmp_path: Path, contexts: list[Context]
) -> None:
    uri = f"seda:q?durable=true&path={tmp_path}/seda.db"

    def boom(exchange: Exchange) -> None:
        if exchange.body == "bad":
            raise ValueError("no such customer")

    def build(b: RouteBuilder) -> None:
        b.from_(uri).route_id("c").process(boom).to("mock:out")

    first = await started(contexts, routes(build))
    for body in ("good", "bad", "good too"):
        await first.template().send(uri, body)
    await first.mock("out").expect_bodies("good", "good too").assert_satisfied(timeout=5)
    kept = await rows(first, "q")
    assert len(kept) == 1
    assert kept[0][1] == "ValueError: no such customer"
    await first.stop()

    second = await started(contexts, routes(build))
    await asyncio.sleep(0.1)
    assert second.mock("out").count == 0  # a poison message does not loop across restarts
    assert [failed for _, failed in await rows(second, "q")] == ["ValueError: no such customer"]


async def test_a_dead_letter_channel_takes_the_failure_and_then_the_row_goes(
    tmp_path: Path, contexts: list[Context]
) -> None:
    uri = f"seda:q?durable=true&path={tmp_path}/seda.db"

    def boom(exchange: Exchange) -> None:
        raise ValueError("no such customer")

    def build(b: RouteBuilder) -> None:
        b.error_handler(dead_letter_channel("mock:dead"))
        b.from_(uri).route_id("c").process(boom).to("mock:out")

    context = await started(contexts, routes(build))
    await context.template().send(uri, "bad")
    await context.mock("dead").expect_bodies("bad").assert_satisfied(timeout=5)
    assert await rows(context, "q") == []


async def test_wait_for_completion_returns_the_reply_and_raises_the_failure(
    tmp_path: Path, contexts: list[Context]
) -> None:
    uri = f"seda:q?durable=true&path={tmp_path}/seda.db"
    waiting = f"{uri}&wait_for_completion=true"

    def reply(exchange: Exchange) -> None:
        if exchange.body == "bad":
            raise ValueError("refused")
        exchange.body = f"done {exchange.body}"

    context = await started(contexts, routes(lambda b: b.from_(uri).route_id("c").process(reply)))
    template = context.template()
    assert await template.request(uri, "a") == "done a"  # in-out waits by itself
    sent = await template.send(waiting, "b")
    assert sent.exception is None
    assert sent.body == "done b"
    with pytest.raises(ValueError, match="refused"):
        await template.request(waiting, "bad")
    assert await rows(context, "q") == []  # the sender got the failure: it owns it now


async def test_synchronous_full_works_too(tmp_path: Path, contexts: list[Context]) -> None:
    uri = seda("q", durable=True, path=str(tmp_path / "seda.db"), synchronous="full")
    context = await started(contexts, routes(lambda b: b.from_(uri).route_id("c").to("mock:out")))
    for n in range(3):
        await context.template().send(uri, n)
    await context.mock("out").expect_bodies(0, 1, 2).assert_satisfied(timeout=5)


# -- options that are wrong ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("consumer", "producer", "message"),
    [
        (
            "seda:q?durable=true",
            "seda:q?durable=true",
            "endpoint seda:q?durable=true: durable=true needs path=<SQLite file> "
            "(seda:orders?durable=true&path=data/seda.db)",
        ),
        (
            "seda:q?path=q.db",
            "seda:q?path=q.db",
            "endpoint seda:q?path=q.db: path=q.db is the file of a durable queue: add durable=true",
        ),
        (
            "seda:q?durable=true&path=q.db",
            "seda:q",
            "seda:q is declared durable in {tmp}/q.db elsewhere; every endpoint of one queue "
            "must agree on durable and path",
        ),
        (
            "seda:q",
            "seda:q?durable=true&path=q.db",
            "seda:q is declared in memory (no durable=true) elsewhere; every endpoint of one "
            "queue must agree on durable and path",
        ),
        (
            "seda:q?durable=true&path=q.db",
            "seda:r?durable=true&path=q.db&synchronous=full",
            "q.db is declared with synchronous=normal elsewhere; the queues of one file must "
            "agree on synchronous",
        ),
        (
            "seda:q?durable=true&path=q.db&synchronous=sometimes",
            "seda:q?durable=true&path=q.db",
            "endpoint seda:q?durable=true&path=q.db&synchronous=sometimes: synchronous must be "
            "normal or full, got 'sometimes'",
        ),
        (
            "seda:q?durable=maybe&path=q.db",
            "seda:q?durable=true&path=q.db",
            "option 'durable' of endpoint seda:q?durable=maybe&path=q.db: expected bool",
        ),
    ],
)
async def test_bad_durable_options_fail_at_start_naming_the_option(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    contexts: list[Context],
    consumer: str,
    producer: str,
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)

    def build(b: RouteBuilder) -> None:
        b.from_(consumer).route_id("c").to("mock:out")
        b.from_("direct:in").route_id("p").to(producer)

    with pytest.raises(RouteDefinitionError) as raised:
        await started(contexts, routes(build))
    assert message.format(tmp=tmp_path) in str(raised.value)
    assert not (tmp_path / "q.db").exists()  # nothing was opened


def test_the_typed_form_checks_its_options_too() -> None:
    with pytest.raises(RouteDefinitionError, match="option 'durable' of endpoint seda:q"):
        seda("q", durable="yes please", path="q.db")  # type: ignore[arg-type]


async def test_a_file_that_cannot_be_created_fails_the_start(
    tmp_path: Path, contexts: list[Context]
) -> None:
    (tmp_path / "plain").write_text("a file, not a directory")
    uri = f"seda:q?durable=true&path={tmp_path}/plain/seda.db"
    with pytest.raises(LifecycleError) as raised:
        await started(contexts, routes(lambda b: b.from_(uri).route_id("c").to("mock:out")))
    text = str(raised.value)
    assert f"the durable seda file {tmp_path}/plain/seda.db cannot be opened" in text


async def test_a_second_context_on_the_same_file_fails_while_the_first_runs(
    tmp_path: Path, contexts: list[Context]
) -> None:
    uri = f"seda:q?durable=true&path={tmp_path}/seda.db"
    first = await started(contexts, routes(lambda b: b.from_(uri).route_id("c").to("mock:out")))
    with pytest.raises(LifecycleError) as raised:
        await started(contexts, routes(lambda b: b.from_(uri).route_id("c2").to("mock:out")))
    assert f"the durable seda file {tmp_path}/seda.db is in use by another process" in str(
        raised.value
    )
    await first.template().send(uri, "still works")
    await first.mock("out").expect_bodies("still works").assert_satisfied(timeout=5)
    await first.stop()  # releases the file: a new context opens it
    again = await started(contexts, routes(lambda b: b.from_(uri).route_id("c").to("mock:out")))
    await again.template().send(uri, "after")
    await again.mock("out").expect_bodies("after").assert_satisfied(timeout=5)
