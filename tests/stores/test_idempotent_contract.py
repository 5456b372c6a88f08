"""The idempotent repository contract, run against every implementation.

Memory, SQLite and PostgreSQL run on a ManualClock; Redis expires keys on the server's clock,
so its expiry tests wait (a tenth of a second) in real time.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import queue
import time
from collections import Counter
from typing import Any

from eip.stores import IdempotentRepository
from tests.stores.backends import IdempotentBackend
from tests.stores.workers import claim_keys


async def test_new_key_is_claimed_once(idem: IdempotentBackend) -> None:
    repo = await idem.make()
    assert isinstance(repo, IdempotentRepository)
    assert await repo.add("a") is True
    assert await repo.add("a") is False
    assert await repo.add("b") is True


async def test_confirmed_key_is_a_duplicate(idem: IdempotentBackend) -> None:
    repo = await idem.make()
    assert await repo.add("a")
    await repo.confirm("a")
    assert await repo.add("a") is False
    assert await repo.contains("a")


async def test_confirm_without_claim_records_the_key(idem: IdempotentBackend) -> None:
    repo = await idem.make()
    await repo.confirm("a")
    assert await repo.contains("a")
    assert await repo.add("a") is False


async def test_removed_key_can_be_claimed_again(idem: IdempotentBackend) -> None:
    repo = await idem.make()
    assert await repo.add("claimed")
    await repo.remove("claimed")
    assert await repo.add("claimed") is True
    await repo.confirm("claimed")
    await repo.remove("claimed")
    assert not await repo.contains("claimed")
    assert await repo.add("claimed") is True
    await repo.remove("never-seen")  # forgetting an unknown key is not an error


async def test_contains_sees_claimed_and_confirmed_keys(idem: IdempotentBackend) -> None:
    repo = await idem.make()
    assert not await repo.contains("a")
    await repo.add("a")
    assert await repo.contains("a")
    await repo.confirm("a")
    assert await repo.contains("a")
    assert not await repo.contains("b")


async def test_clear_forgets_this_repository_only(idem: IdempotentBackend) -> None:
    repo = await idem.make()
    other = await idem.make(namespace="other")
    for key in ("a", "b", "c"):
        assert await repo.add(key)
    await repo.confirm("a")
    assert await other.add("a")
    await repo.clear()
    for key in ("a", "b", "c"):
        assert not await repo.contains(key)
    assert await repo.add("a") is True
    assert await other.contains("a"), "clear() reached into another repository"


async def test_expired_claim_can_be_claimed_again(idem: IdempotentBackend) -> None:
    repo = await idem.make(lease=idem.unit)
    assert await repo.add("a")
    assert await repo.add("a") is False
    await idem.advance(2 * idem.unit)
    assert not await repo.contains("a")
    assert await repo.add("a") is True, "a crashed claimer's key must be reclaimable"
    assert await repo.add("a") is False


async def test_confirmed_key_outlives_the_lease(idem: IdempotentBackend) -> None:
    repo = await idem.make(lease=idem.unit, ttl=None)
    assert await repo.add("a")
    await repo.confirm("a")
    await idem.advance(3 * idem.unit)
    assert await repo.contains("a")
    assert await repo.add("a") is False


async def test_confirmed_key_expires_after_ttl(idem: IdempotentBackend) -> None:
    repo = await idem.make(lease=idem.unit, ttl=4 * idem.unit)
    assert await repo.add("a")
    await repo.confirm("a")
    await idem.advance(2 * idem.unit)  # past the lease, within the ttl
    assert await repo.contains("a")
    assert await repo.add("a") is False
    await idem.advance(3 * idem.unit)  # past the ttl
    assert not await repo.contains("a")
    assert await repo.add("a") is True


async def test_concurrent_claims_of_one_key_have_one_winner(idem: IdempotentBackend) -> None:
    repo = await idem.make()
    # Several rounds: the first one also opens pooled connections, which staggers its claims.
    for key in ("same-1", "same-2", "same-3"):
        results = await asyncio.gather(*(repo.add(key) for _ in range(50)))
        assert results.count(True) == 1, key


async def test_concurrent_claims_of_distinct_keys_all_win(idem: IdempotentBackend) -> None:
    repo = await idem.make()
    results = await asyncio.gather(*(repo.add(f"k{i}") for i in range(100)))
    assert all(results)


async def test_two_repositories_on_one_namespace_share_claims(
    shared_idem: IdempotentBackend,
) -> None:
    first = await shared_idem.make()
    second = await shared_idem.make()
    assert await first.add("a")
    assert await second.add("a") is False
    await first.confirm("a")
    assert await second.contains("a")
    await second.remove("a")
    assert await first.add("a") is True


async def test_claims_are_exclusive_across_processes(shared_idem: IdempotentBackend) -> None:
    await shared_idem.make()  # create the table / file before the workers race on it
    keys = [f"order-{i}" for i in range(500)]
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    out = ctx.Queue()
    options = shared_idem.options()
    workers = [
        ctx.Process(target=claim_keys, args=(shared_idem.kind, options, keys, barrier, out))
        for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    try:
        results = await _collect(out, workers)
    finally:
        for worker in workers:
            await asyncio.to_thread(worker.join, 5)
            if worker.is_alive():  # only on failure: never leave a worker behind
                worker.terminate()
    won = Counter(key for result in results for key in result)
    assert set(won) == set(keys)
    assert max(won.values()) == 1
    assert all(worker.exitcode == 0 for worker in workers)


async def _collect(out: Any, workers: list[Any], timeout: float = 30.0) -> list[list[str]]:
    """One result per worker; fail fast (not after the timeout) if a worker dies."""
    results: list[list[str]] = []
    deadline = time.monotonic() + timeout
    while len(results) < len(workers):
        try:
            result = await asyncio.to_thread(out.get, timeout=0.2)
        except queue.Empty:
            dead = [w.exitcode for w in workers if w.exitcode not in (None, 0)]
            assert not dead, f"a worker process died (exit codes {dead}); see its stderr"
            assert time.monotonic() < deadline, "workers did not finish in time"
            continue
        assert isinstance(result, list), f"worker failed: {result!r}"
        results.append(result)
    return results
