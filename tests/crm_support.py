"""Helpers shared by the example-route tests: waiting on real files (and the manual clock),
and reading the dead-letter envelopes of ``routes/_support.py``."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from eip import headers as H
from eip.testing import ManualClock
from routes._support import FAILURE_HEADERS, DeadLetter, read_dead_letter

__all__ = ["assert_failure", "poll_until", "read_letter", "wait_for_file"]


async def wait_for_file(path: Path, timeout: float = 5.0) -> None:
    """Wait (real time) until ``path`` exists; file consumers work in threads."""
    for _ in range(int(timeout / 0.01)):
        if await asyncio.to_thread(path.exists):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{path} did not appear")


async def poll_until(clock: ManualClock, done: Callable[[], bool], timeout: float = 5.0) -> None:
    """Move the clock on a second at a time (a poll of the file consumers) until ``done()``.
    One ``advance(1)`` is not enough: a consumer still busy with its previous poll is not
    sleeping on the clock yet, and would miss it."""
    for _ in range(int(timeout / 0.01)):
        if await asyncio.to_thread(done):
            return
        await clock.advance(1)
        await asyncio.sleep(0.01)
    raise AssertionError(f"{done} did not come true")


def read_letter(path: Path) -> DeadLetter:
    """The dead-letter envelope written at ``path``."""
    return read_dead_letter(path.read_bytes())


def assert_failure(letter: DeadLetter, error: str, route: str, message: str) -> None:
    """The envelope carries every failure header: the error's type (``error`` is its class
    name), its message (which contains ``message``), the route that failed, the endpoint
    (a step's label, not checked here) and the redeliveries made. None of the failure headers
    is repeated among the other headers."""
    failure = letter.failure
    assert list(failure) == list(FAILURE_HEADERS)
    assert failure[H.EXCEPTION_TYPE] == f"eip.errors.{error}"
    assert message in failure[H.EXCEPTION_MESSAGE]
    assert failure[H.FAILURE_ROUTE] == route
    assert isinstance(failure[H.FAILURE_ENDPOINT], str)
    assert failure[H.FAILURE_ENDPOINT]
    assert isinstance(failure[H.REDELIVERY_COUNT], int)
    assert not set(FAILURE_HEADERS) & set(letter.headers)
