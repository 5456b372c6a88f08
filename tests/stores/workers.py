"""Code run in spawned worker processes by the cross-process tests (must be importable)."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.stores.backends import build_idempotent

ROUND = 50


def claim_keys(kind: str, options: dict[str, Any], keys: list[str], barrier: Any, out: Any) -> None:
    """Claim every key, racing the other workers; put the keys this process won on ``out``."""
    try:
        out.put(asyncio.run(_claim_keys(kind, options, keys, barrier)))
    except BaseException as exc:  # report, do not hang the parent
        out.put(exc)
        raise


async def _claim_keys(
    kind: str, options: dict[str, Any], keys: list[str], barrier: Any
) -> list[str]:
    repo = build_idempotent(kind, options)
    await repo.start()
    try:
        won: list[str] = []
        # Rounds that start together (the barrier blocks the loop on purpose) and fire the
        # same keys concurrently in every worker, so claims of one key really overlap.
        for start in range(0, len(keys), ROUND):
            batch = keys[start : start + ROUND]
            barrier.wait(timeout=30)
            results = await asyncio.gather(*(repo.add(key) for key in batch))
            won.extend(key for key, claimed in zip(batch, results, strict=True) if claimed)
        return won
    finally:
        await repo.stop()
