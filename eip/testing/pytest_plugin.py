"""pytest plugin (registered as ``eip``): the ``eip_context`` and ``manual_clock`` fixtures."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

try:  # async fixtures work under pytest-asyncio's strict mode too
    from pytest_asyncio import fixture as async_fixture
except ImportError:  # pragma: no cover - anyio's plugin or auto mode
    async_fixture = pytest.fixture  # type: ignore[assignment]

from eip.clock import ManualClock
from eip.runtime.context import Context


@pytest.fixture
def manual_clock() -> ManualClock:
    """A clock that moves only on ``await manual_clock.advance(seconds)``."""
    return ManualClock()


@async_fixture
async def eip_context(manual_clock: ManualClock) -> AsyncIterator[Context]:
    """A context on the manual clock; add routes, ``await eip_context.start()``; stopped after."""
    context = Context(clock=manual_clock, shutdown_timeout=5.0)
    try:
        yield context
    finally:
        await context.stop()
