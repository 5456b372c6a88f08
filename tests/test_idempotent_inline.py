"""The memory idempotent consumer's claim inline in the fused pipeline
(eip/processors/idempotent.py): at-least-once exactly as the step itself, on every path the
inline code takes (a bare exchange, one that has callbacks already, a key expression that is
called, the options) and where it is not inlined (a choice branch)."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest

from eip import Context, Exchange, RouteBuilder, body, header, when
from eip import headers as H
from eip.errors import NoMessageIdError
from eip.stores.memory import MemoryIdempotentRepository


def routed(configure: Any) -> RouteBuilder:
    class R(RouteBuilder):
        def configure(self) -> None:
            configure(self.from_("direct:in").route_id("r"))

    return R()


def fail_on(*bodies: Any) -> Any:
    def process(exchange: Exchange) -> None:
        if exchange.body in bodies:
            raise ValueError(f"no {exchange.body}")

    return process


async def route_and_complete(dispatch: Any, exchange: Exchange) -> None:
    """What a consumer does: dispatch (awaited if it suspends), then complete the exchange."""
    with contextlib.suppress(ValueError):
        pending = dispatch(exchange)
        if pending is not None:
            await pending
    assert exchange.done() is None


def entries(repo: MemoryIdempotentRepository) -> dict[str, bool]:
    """Key -> confirmed, for every key the repository holds."""
    return {key: entry.confirmed for key, entry in repo._entries.items()}


async def test_the_claim_runs_inline_in_the_route_entry(eip_context: Context) -> None:
    repo = MemoryIdempotentRepository()
    eip_context.add_routes(routed(lambda r: r.idempotent_consumer(body(), repo).to("mock:out")))
    await eip_context.start()
    source = eip_context.routes["r"].dispatch.eip_source  # type: ignore[attr-defined]
    assert "idem_key_ = (ex.body)" in source
    assert "r = s0(ex)" not in source  # the step is not called


async def test_success_confirms_failure_releases_duplicates_stop(eip_context: Context) -> None:
    repo = MemoryIdempotentRepository()
    eip_context.add_routes(
        routed(lambda r: r.idempotent_consumer(body(), repo).process(fail_on("b")).to("mock:out"))
    )
    await eip_context.start()
    dispatch = eip_context.routes["r"].dispatch
    outcomes = []
    for key in ["a", "b", "a", "b"]:
        exchange = Exchange(key)
        await route_and_complete(dispatch, exchange)
        outcomes.append((key, exchange.properties.get(H.DUPLICATE, False)))
    assert outcomes == [("a", False), ("b", False), ("a", True), ("b", False)]
    assert eip_context.mock("out").received_bodies == ["a"]
    assert entries(repo) == {"a": True}  # b failed twice: released both times


async def test_a_claim_on_an_exchange_with_callbacks_completes_with_them(
    eip_context: Context,
) -> None:
    repo = MemoryIdempotentRepository()
    eip_context.add_routes(
        routed(lambda r: r.idempotent_consumer(body(), repo).process(fail_on("bad")))
    )
    await eip_context.start()
    dispatch = eip_context.routes["r"].dispatch
    order: list[str] = []
    for key in ["ok", "bad"]:
        exchange = Exchange(key)
        exchange.on_completion(
            on_success=lambda ex: order.append(f"ack {ex.body} {entries(repo).get(ex.body)}"),
            on_failure=lambda ex: order.append(f"nack {ex.body} {entries(repo).get(ex.body)}"),
        )
        await route_and_complete(dispatch, exchange)
    # The claim, registered last, completes first: confirmed before the ack, released before
    # the nack.
    assert order == ["ack ok True", "nack bad None"]
    assert entries(repo) == {"ok": True}


async def test_a_called_key_expression_and_a_non_string_key(eip_context: Context) -> None:
    repo = MemoryIdempotentRepository()
    offset = 100
    eip_context.add_routes(
        routed(lambda r: r.idempotent_consumer(lambda ex: ex.body + offset, repo).to("mock:out"))
    )
    await eip_context.start()
    source = eip_context.routes["r"].dispatch.eip_source  # type: ignore[attr-defined]
    assert "(ex)" in source.split("idem_key_ = ", 1)[1].splitlines()[0]  # called, not inline
    template = eip_context.template()
    for n in [1, 2, 1]:
        assert (await template.send("direct:in", n)).exception is None
    assert eip_context.mock("out").received_bodies == [1, 2]
    assert entries(repo) == {"101": True, "102": True}


@pytest.mark.parametrize("empty", [None, ""])
async def test_no_key_fails_the_exchange_and_claims_nothing(
    eip_context: Context, empty: Any
) -> None:
    repo = MemoryIdempotentRepository()
    eip_context.add_routes(
        routed(lambda r: r.idempotent_consumer(header("id"), repo).to("mock:out"))
    )
    await eip_context.start()
    exchange = await eip_context.template().send("direct:in", "x", {"id": empty})
    assert isinstance(exchange.exception, NoMessageIdError)
    assert eip_context.mock("out").count == 0
    assert entries(repo) == {}


async def test_kept_on_failure_without_remove_on_failure(eip_context: Context) -> None:
    repo = MemoryIdempotentRepository()
    eip_context.add_routes(
        routed(
            lambda r: (
                r.idempotent_consumer(body(), repo, remove_on_failure=False)
                .process(fail_on("b"))
                .to("mock:out")
            )
        )
    )
    await eip_context.start()
    template = eip_context.template()
    first = await template.send("direct:in", "b")
    assert isinstance(first.exception, ValueError)
    again = await template.send("direct:in", "b")  # still claimed: a duplicate
    assert again.exception is None
    assert again.properties[H.DUPLICATE] is True
    assert entries(repo) == {"b": False}  # a claim, never confirmed: its lease runs out


async def test_duplicates_continue_marked_without_skip_duplicates(eip_context: Context) -> None:
    repo = MemoryIdempotentRepository()
    eip_context.add_routes(
        routed(lambda r: r.idempotent_consumer(body(), repo, skip_duplicates=False).to("mock:out"))
    )
    await eip_context.start()
    template = eip_context.template()
    for key in ["a", "a", "b"]:
        await template.send("direct:in", key)
    out = eip_context.mock("out")
    assert out.received_bodies == ["a", "a", "b"]
    assert [ex.properties.get(H.DUPLICATE, False) for ex in out.received] == [False, True, False]
    assert entries(repo) == {"a": True, "b": True}


async def test_in_a_choice_branch_a_duplicate_ends_only_the_branch(eip_context: Context) -> None:
    repo = MemoryIdempotentRepository()
    eip_context.add_routes(
        routed(
            lambda r: r.choice(
                when(lambda ex: ex.body != "skip").idempotent_consumer(body(), repo).to("mock:in")
            ).to("mock:after")
        )
    )
    await eip_context.start()
    template = eip_context.template()
    for key in ["a", "a", "skip", "b"]:
        assert (await template.send("direct:in", key)).exception is None
    assert eip_context.mock("in").received_bodies == ["a", "b"]
    assert eip_context.mock("after").received_bodies == ["a", "a", "skip", "b"]
    assert entries(repo) == {"a": True, "b": True}
