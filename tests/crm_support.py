"""Waiting helpers shared by the example-route tests (real files, manual clock)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from eip.testing import ManualClock

__all__ = ["poll_until", "wait_for_file"]


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
