"""A success callback that fails makes the outcome unknown: nothing is acknowledged for it."""

from __future__ import annotations

from eip import Exchange
from eip.errors import OutcomeUnknownError


def test_a_failing_success_callback_marks_the_outcome_unknown_and_the_rest_still_run() -> None:
    ran: list[str] = []
    exchange = Exchange(b"x")

    def settle(ex: Exchange) -> None:  # registered first: runs last, as a consumer's does
        ran.append(f"settle failed={ex.failed}")

    def commit(ex: Exchange) -> None:
        raise RuntimeError("could not commit")

    exchange.on_completion(on_success=settle, on_failure=settle)
    exchange.on_completion(on_success=commit)
    assert exchange.done() is None
    assert isinstance(exchange.exception, OutcomeUnknownError)
    assert isinstance(exchange.exception.__cause__, RuntimeError)
    assert "could not commit" in str(exchange.exception)
    assert ran == ["settle failed=True"]


async def test_an_async_success_callback_failing_is_the_same() -> None:
    exchange = Exchange(b"x")
    seen: list[bool] = []

    async def commit(ex: Exchange) -> None:
        raise RuntimeError("lost the connection")

    exchange.on_completion(on_success=lambda ex: seen.append(ex.failed))
    exchange.on_completion(on_success=commit)
    pending = exchange.done()
    assert pending is not None
    await pending
    assert isinstance(exchange.exception, OutcomeUnknownError)
    assert seen == [True]


def test_a_failure_callback_failing_keeps_the_original_failure() -> None:
    exchange = Exchange(b"x")
    original = ValueError("bad")
    exchange.exception = original

    def broken(ex: Exchange) -> None:
        raise RuntimeError("cleanup failed")

    exchange.on_completion(on_failure=broken)
    exchange.done()
    assert exchange.exception is original
