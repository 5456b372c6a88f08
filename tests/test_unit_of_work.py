"""The unit of work's lean forms (eip/message.py): one callback for both outcomes kept without a
UnitOfWork, the first pair kept without lists, and callbacks let go of once they ran."""

from __future__ import annotations

import gc
import logging

import pytest

from eip import Exchange
from eip.errors import OutcomeUnknownError
from tests.test_message import Recorder, complete


def both(rec: Recorder, name: str):
    """One callback registered for success and failure alike; it records the outcome."""

    def callback(exchange: Exchange) -> None:
        outcome = "failed" if exchange.exception is not None else "ok"
        rec.calls.append((f"{name}:{outcome}", exchange))

    return callback


@pytest.mark.parametrize("failed", [False, True])
def test_one_callback_for_both_outcomes_runs_once_with_the_outcome(failed: bool) -> None:
    rec = Recorder()
    exchange = Exchange("x")
    callback = both(rec, "claim")
    exchange.on_completion(callback, callback)
    if failed:
        exchange.exception = ValueError("boom")
    assert exchange.done() is None
    assert exchange.done() is None  # runs once
    assert rec.names == [f"claim:{'failed' if failed else 'ok'}"]
    assert rec.calls[0][1] is exchange


async def test_more_callbacks_after_a_shared_one_keep_the_reverse_order() -> None:
    rec = Recorder()
    exchange = Exchange()
    callback = both(rec, "claim")
    exchange.on_completion(callback, callback)
    exchange.on_completion(on_success=rec.async_("ack"))
    exchange.on_completion(on_failure=rec.sync("nack"))
    exchange.on_completion(on_success=rec.sync("last"))
    await complete(exchange)
    assert rec.names == ["last", "ack", "claim:ok"]


async def test_more_callbacks_after_a_shared_one_on_failure() -> None:
    rec = Recorder()
    exchange = Exchange()
    callback = both(rec, "claim")
    exchange.on_completion(callback, callback)
    exchange.on_completion(on_success=rec.sync("ack"), on_failure=rec.async_("nack"))
    exchange.exception = RuntimeError("x")
    await complete(exchange)
    assert rec.names == ["nack", "claim:failed"]


async def test_an_async_shared_callback_is_awaited() -> None:
    seen: list[str] = []

    async def callback(exchange: Exchange) -> None:
        seen.append(exchange.body)

    exchange = Exchange("x")
    exchange.on_completion(callback, callback)
    pending = exchange.done()
    assert pending is not None
    assert seen == []
    await pending
    assert seen == ["x"]


def test_a_failing_shared_callback_marks_a_success_unknown(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(_: Exchange) -> None:
        raise RuntimeError("commit lost")

    exchange = Exchange()
    exchange.on_completion(broken, broken)
    with caplog.at_level(logging.ERROR, logger="eip.exchange"):
        assert exchange.done() is None
    assert isinstance(exchange.exception, OutcomeUnknownError)
    assert any("commit lost" in r.getMessage() for r in caplog.records)


async def test_a_shared_callback_hands_over_to_an_exchange_with_callbacks() -> None:
    rec = Recorder()
    source, target = Exchange(), Exchange()
    callback = both(rec, "claim")
    source.on_completion(callback, callback)
    target.on_completion(on_success=rec.sync("target-own"))
    source.handover_completions(target)
    assert source.done() is None
    target.exception = ValueError("downstream")
    await complete(target)
    assert rec.names == ["claim:failed"]  # target-own is a success callback only
    assert rec.calls[0][1] is target


async def test_callbacks_hand_over_to_an_exchange_with_a_shared_callback() -> None:
    rec = Recorder()
    source, target = Exchange(), Exchange()
    callback = both(rec, "target-claim")
    target.on_completion(callback, callback)
    source.on_completion(on_success=rec.sync("first"))
    source.on_completion(on_success=rec.sync("second"))
    source.handover_completions(target)
    await complete(target)
    assert rec.names == ["second", "first", "target-claim:ok"]


async def test_a_shared_callback_moves_as_it_is_to_an_exchange_without_callbacks() -> None:
    rec = Recorder()
    source, target = Exchange(), Exchange()
    callback = both(rec, "claim")
    source.on_completion(callback, callback)
    source.handover_completions(target)
    await complete(target)
    await complete(source)
    assert rec.names == ["claim:ok"]


@pytest.mark.parametrize("shared", [False, True])
def test_callbacks_that_hold_their_exchange_leave_no_cycle_once_run(shared: bool) -> None:
    gc.collect()
    gc.disable()
    try:
        for n in range(100):
            exchange = Exchange(n)
            ack = (lambda ex, held=exchange: None) if shared else None
            ok = ack or (lambda ex, held=exchange: None)
            fail = ack or (lambda ex, held=exchange: None)
            exchange.on_completion(ok, fail)
            exchange.on_completion(lambda ex, held=exchange: None)  # a second pair: the list
            assert exchange.done() is None
            del exchange, ok, fail, ack
        found = gc.collect()
    finally:
        gc.enable()
    assert found == 0


# -- on_completion_with: a callback with its state, (callback, arg) on a bare exchange ----------
class Claims:
    """``callback(exchange, arg, claimed_on)`` calls, as (arg, outcome, exchange, claimed_on)."""

    def __init__(self) -> None:
        self.calls: list[tuple[object, str, Exchange, Exchange]] = []

    def __call__(self, exchange: Exchange, arg: object, claimed_on: Exchange) -> None:
        outcome = "failed" if exchange.exception is not None else "ok"
        self.calls.append((arg, outcome, exchange, claimed_on))


@pytest.mark.parametrize("failed", [False, True])
def test_a_callback_with_state_runs_once_with_the_outcome(failed: bool) -> None:
    claims = Claims()
    exchange = Exchange()
    exchange.on_completion_with(claims, "key-1")
    if failed:
        exchange.exception = ValueError("boom")
    assert exchange.done() is None
    assert exchange.done() is None
    assert claims.calls == [("key-1", "failed" if failed else "ok", exchange, exchange)]


async def test_a_callback_with_state_among_other_callbacks_keeps_the_order() -> None:
    rec, claims = Recorder(), Claims()
    exchange = Exchange()
    exchange.on_completion_with(claims, "first")
    exchange.on_completion(on_success=rec.sync("ack"))
    exchange.on_completion_with(claims, "second")
    await complete(exchange)
    assert [call[0] for call in claims.calls] == ["second", "first"]
    assert rec.names == ["ack"]
    assert all(call[3] is exchange for call in claims.calls)


@pytest.mark.parametrize("target_has_callbacks", [False, True])
async def test_a_handed_over_callback_with_state_keeps_the_claiming_exchange(
    target_has_callbacks: bool,
) -> None:
    rec, claims = Recorder(), Claims()
    source, target = Exchange(), Exchange()
    if target_has_callbacks:
        target.on_completion(on_success=rec.sync("target-own"))
    source.on_completion_with(claims, "key")
    source.handover_completions(target)
    assert source.done() is None
    await complete(target)
    assert claims.calls == [("key", "ok", target, source)]
    assert rec.names == (["target-own"] if target_has_callbacks else [])


async def test_an_async_callback_with_state_is_awaited() -> None:
    seen: list[object] = []

    async def callback(exchange: Exchange, arg: object, claimed_on: Exchange) -> None:
        seen.append(arg)

    exchange = Exchange()
    exchange.on_completion_with(callback, 7)
    pending = exchange.done()
    assert pending is not None
    await pending
    assert seen == [7]


def test_a_failing_callback_with_state_marks_a_success_unknown() -> None:
    def broken(exchange: Exchange, arg: object, claimed_on: Exchange) -> None:
        raise RuntimeError("confirm lost")

    exchange = Exchange()
    exchange.on_completion_with(broken, "key")
    assert exchange.done() is None
    assert isinstance(exchange.exception, OutcomeUnknownError)


# -- on_completion_with's clean: a clean success takes the short way ---------------------------
@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("clean", [("clean", "key")]),
        ("failed", [("full", "key", "failed")]),
        ("properties", [("full", "key", "ok")]),
        ("more callbacks", [("full", "key", "ok")]),
        ("handed over", [("full", "key", "ok")]),
    ],
)
def test_clean_runs_only_for_a_clean_success_of_a_bare_exchange(
    case: str, expected: list[tuple[str, ...]]
) -> None:
    calls: list[tuple[str, ...]] = []

    def full(exchange: Exchange, arg: str, claimed_on: Exchange) -> None:
        outcome = "failed" if exchange.exception is not None else "ok"
        calls.append(("full", arg, outcome))

    exchange = Exchange()
    if case == "more callbacks":
        exchange.on_completion(on_success=lambda ex: None)
    exchange.on_completion_with(full, "key", lambda arg: calls.append(("clean", arg)))
    if case == "failed":
        exchange.exception = ValueError("boom")
    elif case == "properties":
        exchange.properties["something"] = 1
    elif case == "handed over":
        target = Exchange()
        exchange.handover_completions(target)
        exchange = target
    assert exchange.done() is None
    assert exchange.done() is None
    assert calls == expected
