"""Fixtures that run each contract test once per store implementation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.stores.backends import (
    AGGREGATION_KINDS,
    IDEMPOTENT_KINDS,
    AggregationBackend,
    IdempotentBackend,
)


@pytest.fixture(params=IDEMPOTENT_KINDS)
async def idem(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[IdempotentBackend]:
    backend = IdempotentBackend(request.param, tmp_path)
    try:
        yield backend
    finally:
        await backend.cleanup()


@pytest.fixture(params=[kind for kind in IDEMPOTENT_KINDS if kind != "memory"])
async def shared_idem(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[IdempotentBackend]:
    """The stores that can be shared between processes."""
    backend = IdempotentBackend(request.param, tmp_path)
    try:
        yield backend
    finally:
        await backend.cleanup()


@pytest.fixture(params=AGGREGATION_KINDS)
async def agg(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AggregationBackend]:
    backend = AggregationBackend(request.param, tmp_path)
    try:
        yield backend
    finally:
        await backend.cleanup()


@pytest.fixture(params=[kind for kind in AGGREGATION_KINDS if kind != "memory"])
async def persistent_agg(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[AggregationBackend]:
    backend = AggregationBackend(request.param, tmp_path)
    try:
        yield backend
    finally:
        await backend.cleanup()
