"""Idempotent consumer: checks per second on each store, eip against the same store work by hand.

Per store (memory, SQLite, PostgreSQL, Redis) and per round, N message ids (20,000; quick:
4,000), of which 10% repeat an id sent a little earlier (1 to 500 messages before):

- **eip** (``idempotent-<store>-vs-handwritten``): ``from_("direct:in")
  .idempotent_consumer(body(), repo).to("mock:out?retain=0")``, driven one message at a time
  through the route's entry, as the ``pipeline`` benchmark drives its route: ``exchange =
  Exchange(key); r = route.dispatch(exchange)`` (awaited if it suspends), then
  ``exchange.done()`` (awaited if it returns an awaitable), which runs the on-completion
  callbacks. So the claim (``add``) and its confirmation (``confirm``, on completion) are both
  inside the timing.
- **hand-written** (the baseline): the same repository work with nothing in between:
  ``if await repo.add(key): await repo.confirm(key)``; for the memory store its synchronous
  ``add_nowait`` / ``confirm_nowait``, which is also what the engine's fast path calls.

The ratio is the engine's overhead on top of the store. Informational: for the memory store,
the same route driven with ``await context.template().send("direct:in", key)`` (the producer
template adds its own coroutines per send; this was the comparison's driver until issue 15);
and for every store, 50 concurrent senders (asyncio tasks) into
``seda:in?concurrent_consumers=50`` sent with ``wait_for_completion=true`` on eip's side,
against 50 tasks doing the loop above by hand (for memory, the async ``add`` / ``confirm``):
that is where the connection pools (asyncpg's, redis-py's) and PostgreSQL's group commit can
pay off.

The memory store runs 9 interleaved rounds (quick: 5) where the others run 3 (quick: 2): its
rounds take tens of milliseconds, too short for a median of three to ride out a busy machine.

Every run gets a fresh namespace (a new SQLite file, PostgreSQL table or Redis key prefix),
dropped afterwards, so every round sees the same duplicates against an empty store. The
connection pool (PostgreSQL, 10 connections, the repository's own default) and the Redis client
are shared by all runs of a store, so connecting is never timed and both sides use the same
connections. Every run checks that exactly the unique ids got through (the mock's count, or the
hand-written loop's own count), so a store that lets a duplicate pass, or drops a message,
fails the benchmark instead of looking fast.
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks._report import Measurement, Variant, interleave, result_line, table
from eip import Context, Exchange, RouteBuilder, body
from eip.runtime.route import Route
from eip.stores import (
    IdempotentRepository,
    MemoryIdempotentRepository,
    PostgresIdempotentRepository,
    RedisIdempotentRepository,
    SqliteIdempotentRepository,
)

__all__ = ["StoreReport", "bench", "make_keys", "run"]

PG_DSN = os.environ.get("EIP_BENCH_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("EIP_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
STORES = ("memory", "sqlite", "postgres", "redis")
SENDERS = 50
PG_POOL = 10  # PostgresIdempotentRepository's own pool (max_size=10)
DUPLICATE_SHARE = 0.10
MAX_DISTANCE = 500  # a duplicate follows its original within this many messages
SEED = 20261123
WARMUP = 1_000  # messages per variant in the warm-up run (quick: QUICK_WARMUP)
QUICK_WARMUP = 200
#: Rounds for the memory store at the least (quick: QUICK_MEMORY_ROUNDS): a memory round is a
#: few tens of milliseconds, so three of them are at the mercy of whatever else runs on the
#: machine (a median of 3 once read 0.30 where the rounds around it read 0.55-0.77); more
#: rounds cost well under a second and make its median steady.
MEMORY_ROUNDS = 9
QUICK_MEMORY_ROUNDS = 5


def make_keys(count: int, seed: int = SEED) -> tuple[list[str], int]:
    """``count`` message ids, 10% of them repeating an earlier id; returns (ids, unique)."""
    rng = random.Random(seed)
    duplicates = round(count * DUPLICATE_SHARE)
    unique = count - duplicates
    slots = [(float(n), f"order-{n:07d}") for n in range(unique)]
    for n in rng.sample(range(unique), duplicates):
        slots.append((n + rng.uniform(1.0, MAX_DISTANCE), f"order-{n:07d}"))
    slots.sort()
    return [key for _, key in slots], unique


# -- the stores ----------------------------------------------------------------------------
class Store:
    """Makes repositories of one kind, each in a fresh namespace, and removes them afterwards.

    ``open``/``close`` own what the runs share (a pool, a client, a folder), so that connecting
    is not timed and eip and the hand-written loop use the very same connections.
    """

    name = ""

    def __init__(self) -> None:
        self._runs = 0
        self._tag = uuid.uuid4().hex[:8]

    def _namespace(self) -> str:
        self._runs += 1
        return f"eip_bench_{self._tag}_{self._runs}"

    async def open(self) -> None:
        """Create what every run shares."""

    async def close(self) -> None:
        """Release what :meth:`open` created."""

    def make(self) -> IdempotentRepository:
        """A new, not yet started repository in a namespace no other run uses."""
        raise NotImplementedError

    async def dispose(self, repo: IdempotentRepository) -> None:
        """Remove a stopped repository's namespace."""


class MemoryStore(Store):
    name = "memory"

    def make(self) -> IdempotentRepository:
        return MemoryIdempotentRepository()


class SqliteStore(Store):
    """A new database file per run: SQLite is a library, a fresh file is a fresh store."""

    name = "sqlite"

    async def open(self) -> None:
        self._folder = tempfile.TemporaryDirectory(prefix="eip-bench-idem-")

    async def close(self) -> None:
        self._folder.cleanup()

    def make(self) -> IdempotentRepository:
        return SqliteIdempotentRepository(Path(self._folder.name) / f"{self._namespace()}.db")

    async def dispose(self, repo: IdempotentRepository) -> None:
        assert isinstance(repo, SqliteIdempotentRepository)
        await asyncio.to_thread(_remove_database, repo.path)


def _remove_database(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


class PostgresStore(Store):
    """A new table per run, on one shared asyncpg pool of the repository's default size."""

    name = "postgres"

    async def open(self) -> None:
        import asyncpg

        try:
            self._pool = await asyncpg.create_pool(PG_DSN, min_size=PG_POOL, max_size=PG_POOL)
        except (OSError, asyncpg.PostgresError) as exc:
            raise SystemExit(f"idempotent benchmark: PostgreSQL at {PG_DSN}: {exc!r}") from exc

    async def close(self) -> None:
        await self._pool.close()

    def make(self) -> IdempotentRepository:
        return PostgresIdempotentRepository(table=self._namespace(), pool=self._pool)

    async def dispose(self, repo: IdempotentRepository) -> None:
        assert isinstance(repo, PostgresIdempotentRepository)
        await self._pool.execute(f'DROP TABLE IF EXISTS "{repo.table}"')


class RedisStore(Store):
    """A new key prefix per run, on one shared client (and its connection pool)."""

    name = "redis"

    async def open(self) -> None:
        import redis.asyncio as aioredis

        self._client = aioredis.Redis.from_url(REDIS_URL)
        try:
            await self._client.ping()
        except (OSError, aioredis.RedisError) as exc:
            raise SystemExit(f"idempotent benchmark: Redis at {REDIS_URL}: {exc!r}") from exc

    async def close(self) -> None:
        await self._client.aclose()

    def make(self) -> IdempotentRepository:
        prefix = f"{self._namespace().replace('_', ':')}:"
        return RedisIdempotentRepository(prefix=prefix, client=self._client)

    async def dispose(self, repo: IdempotentRepository) -> None:
        await repo.clear()  # the client is ours, so the stopped repository still reaches it


def make_store(name: str) -> Store:
    stores: dict[str, Callable[[], Store]] = {
        "memory": MemoryStore,
        "sqlite": SqliteStore,
        "postgres": PostgresStore,
        "redis": RedisStore,
    }
    return stores[name]()


# -- the eip routes ------------------------------------------------------------------------
class IdempotentRoutes(RouteBuilder):
    """The sequential route (``direct:in``) and the concurrent one (``seda:in``, 50 consumers),
    each with its own repository: every run starts from an empty namespace."""

    def __init__(self, repository: IdempotentRepository, concurrent: bool) -> None:
        super().__init__()
        self.repository = repository
        self.concurrent = concurrent

    def configure(self) -> None:
        source = f"seda:in?concurrent_consumers={SENDERS}" if self.concurrent else "direct:in"
        (
            self.from_(source)
            .route_id("idempotent")
            .idempotent_consumer(body(), self.repository)
            .to("mock:out?retain=0")
        )


async def _in_tasks(keys: Sequence[str], work: Callable[[Sequence[str]], Awaitable[int]]) -> int:
    """Run ``work`` on ``SENDERS`` interleaved slices of ``keys`` at once (slice ``i`` is
    ``keys[i::SENDERS]``, so the tasks walk the stream side by side, in its order)."""
    slices = [keys[i::SENDERS] for i in range(SENDERS)]
    return sum(await asyncio.gather(*(work(part) for part in slices)))


async def _dispatch_all(route: Route, keys: Sequence[str]) -> int:
    """One exchange per key into ``route.dispatch``, completed as a consumer completes it;
    returns how many failed."""
    dispatch = route.dispatch
    failed = 0
    for key in keys:
        exchange = Exchange(key)
        pending = dispatch(exchange)
        if pending is not None:
            await pending
        done = exchange.done()
        if done is not None:
            await done
        if exchange.exception is not None:
            failed += 1
    return failed


def eip_run(
    store: Store,
    keys: Sequence[str],
    unique: int,
    concurrent: bool,
    template: bool = False,
    cpu: list[float] | None = None,
) -> Variant:
    """One eip run: a fresh repository and context (started untimed), the messages timed:
    through ``route.dispatch``, or the producer template with ``template=True``. With ``cpu``,
    the sequential run also appends the process's CPU seconds for it there."""
    name = f"eip {store.name}" + (f" x{SENDERS}" if concurrent else "")
    name += ", template.send" if template else ""

    async def once() -> float:
        repo = store.make()
        context = Context()
        context.add_routes(IdempotentRoutes(repo, concurrent))
        await context.start()
        producer = context.template()
        try:
            if concurrent:
                uri = f"seda:in?wait_for_completion=true&concurrent_consumers={SENDERS}"

                async def sender(part: Sequence[str]) -> int:
                    failed = 0
                    for key in part:
                        if (await producer.send(uri, key)).exception is not None:
                            failed += 1
                    return failed

                began = time.perf_counter()
                failed = await _in_tasks(keys, sender)
                seconds = time.perf_counter() - began
            elif template:
                failed = 0
                began = time.perf_counter()
                for key in keys:
                    if (await producer.send("direct:in", key)).exception is not None:
                        failed += 1
                seconds = time.perf_counter() - began
            else:
                route = context.routes["idempotent"]
                cpu_began, began = time.process_time(), time.perf_counter()
                failed = await _dispatch_all(route, keys)
                seconds = time.perf_counter() - began
                if cpu is not None:
                    cpu.append(time.process_time() - cpu_began)
            passed = context.mock("out").count
        finally:
            await context.stop()
            await store.dispose(repo)
        assert failed == 0, f"{name}: {failed} exchanges failed"
        assert passed == unique, f"{name}: {passed} messages passed, expected {unique}"
        return seconds

    return Variant(name, once, len(keys))


def handwritten_run(
    store: Store,
    keys: Sequence[str],
    unique: int,
    concurrent: bool,
    cpu: list[float] | None = None,
) -> Variant:
    """One hand-written run: the repository calls the idempotent consumer makes, and no more
    (with ``cpu``, the process's CPU seconds for it are appended there, as in :func:`eip_run`)."""
    name = f"hand-written {store.name}" + (f" x{SENDERS}" if concurrent else "")

    async def check(repo: IdempotentRepository, part: Sequence[str]) -> int:
        passed = 0
        for key in part:
            if await repo.add(key):
                await repo.confirm(key)
                passed += 1
        return passed

    def check_nowait(repo: MemoryIdempotentRepository, part: Sequence[str]) -> int:
        add, confirm = repo.add_nowait, repo.confirm_nowait
        passed = 0
        for key in part:
            if add(key):
                confirm(key)
                passed += 1
        return passed

    async def once() -> float:
        repo = store.make()
        await repo.start()
        try:
            cpu_began, began = time.process_time(), time.perf_counter()
            if isinstance(repo, MemoryIdempotentRepository) and not concurrent:
                passed = check_nowait(repo, keys)
            elif concurrent:
                passed = await _in_tasks(keys, lambda part: check(repo, part))
            else:
                passed = await check(repo, keys)
            seconds = time.perf_counter() - began
            if cpu is not None:
                cpu.append(time.process_time() - cpu_began)
        finally:
            await repo.stop()
            await store.dispose(repo)
        assert passed == unique, f"{name}: {passed} messages passed, expected {unique}"
        return seconds

    return Variant(name, once, len(keys))


# -- the benchmark -------------------------------------------------------------------------
@dataclass(slots=True)
class StoreReport:
    """One store's medians: sequential (the comparison) and 50 concurrent (informational)."""

    store: str
    eip: Measurement
    baseline: Measurement
    eip_concurrent: Measurement
    baseline_concurrent: Measurement
    eip_template: Measurement | None = None  # memory only: driven by template.send
    #: The sequential runs' CPU seconds per round (eip, hand-written), for :attr:`cpu_ratio`.
    cpu: tuple[list[float], list[float]] = field(default_factory=lambda: ([], []))

    @property
    def ratio(self) -> float:
        return self.eip.median / self.baseline.median

    @property
    def cpu_ratio(self) -> float | None:
        """The sequential ratio by the process's CPU time (medians): steadier than the wall
        time on a busy machine, and the same on an idle one for a store without I/O."""
        eip, base = self.cpu
        if not eip or not base:
            return None
        return statistics.median(base) / statistics.median(eip)

    @property
    def concurrent_ratio(self) -> float:
        return self.eip_concurrent.median / self.baseline_concurrent.median


def variants_of(
    store: Store,
    keys: Sequence[str],
    unique: int,
    cpu: tuple[list[float], list[float]] | None = None,
) -> list[Variant]:
    """Baseline first, then eip; sequential (the comparison), then 50 concurrent; for memory,
    last, eip driven by the producer template. ``cpu``: where the sequential runs put their
    CPU seconds (eip's, the hand-written loop's)."""
    eip_cpu, base_cpu = cpu if cpu is not None else (None, None)
    variants = [
        handwritten_run(store, keys, unique, concurrent=False, cpu=base_cpu),
        eip_run(store, keys, unique, concurrent=False, cpu=eip_cpu),
        handwritten_run(store, keys, unique, concurrent=True),
        eip_run(store, keys, unique, concurrent=True),
    ]
    if store.name == "memory":
        variants.append(eip_run(store, keys, unique, concurrent=False, template=True))
    return variants


async def bench_store(name: str, count: int, rounds: int, warmup: int = WARMUP) -> StoreReport:
    """Interleave the four variants of one store for ``rounds`` rounds.

    The warm-up (pools filled, code paths and statement caches warm) is one run of each
    variant on ``warmup`` messages rather than a full round: a full PostgreSQL round takes
    about a minute, since every claim and confirmation there is a committed transaction.
    """
    keys, unique = make_keys(count)
    warm_keys, warm_unique = make_keys(min(count, warmup))
    store = make_store(name)
    await store.open()
    try:
        await interleave(variants_of(store, warm_keys, warm_unique), 1, warmup=False)
        cpu: tuple[list[float], list[float]] = ([], [])
        variants = variants_of(store, keys, unique, cpu)
        results = await interleave(variants, rounds, warmup=False)
    finally:
        await store.close()
    base, eip, base_c, eip_c, *template = (results[v.name] for v in variants)
    return StoreReport(name, eip, base, eip_c, base_c, template[0] if template else None, cpu)


async def bench(
    count: int,
    rounds: int,
    warmup: int = WARMUP,
    stores: Sequence[str] = STORES,
    memory_rounds: int = MEMORY_ROUNDS,
) -> list[StoreReport]:
    """Each store in turn; the memory store for ``memory_rounds`` rounds at the least."""
    return [
        await bench_store(
            name, count, max(rounds, memory_rounds) if name == "memory" else rounds, warmup
        )
        for name in stores
    ]


def _rate(m: Measurement) -> str:
    return f"{m.median:,.0f}"


def _range(m: Measurement) -> str:
    return f"{m.low:,.0f}..{m.high:,.0f}"


def report_table(reports: Sequence[StoreReport], concurrent: bool) -> str:
    """Medians, the per-round range (how noisy the store was), the ratio and what eip adds."""
    rows = []
    for r in reports:
        eip, base = (r.eip_concurrent, r.baseline_concurrent) if concurrent else (r.eip, r.baseline)
        rows.append(
            [
                r.store,
                _rate(eip),
                _range(eip),
                _rate(base),
                _range(base),
                f"{eip.median / base.median:.2f}",
                f"{eip.us_per_unit - base.us_per_unit:+.1f}",
            ]
        )
    headers = ["store", "eip msgs/s", "range", "hand-written", "range", "ratio", "µs/msg added"]
    return table(headers, rows)


def run(quick: bool) -> None:
    # Rounds are few because the persistent stores are slow: a full PostgreSQL round is ~1 min.
    count, rounds, warmup = (4_000, 2, QUICK_WARMUP) if quick else (20_000, 3, WARMUP)
    # EIP_BENCH_IDEMPOTENT_STORES=memory,sqlite runs only those (PostgreSQL takes minutes).
    chosen = os.environ.get("EIP_BENCH_IDEMPOTENT_STORES", "")
    stores = tuple(name for name in chosen.split(",") if name) or STORES
    unknown = sorted(set(stores) - set(STORES))
    if unknown:
        raise SystemExit(f"idempotent benchmark: unknown stores {unknown} (stores: {STORES})")
    began = time.perf_counter()
    memory_rounds = QUICK_MEMORY_ROUNDS if quick else MEMORY_ROUNDS
    reports = asyncio.run(bench(count, rounds, warmup, stores, memory_rounds))
    unique = count - round(count * DUPLICATE_SHARE)
    print(
        f"idempotent: {count:,} msgs per round ({unique:,} unique, "
        f"{count - unique:,} duplicates), {rounds} interleaved rounds "
        f"({max(rounds, memory_rounds)} for memory) "
        f"(after a warm-up run of {warmup:,}), medians; "
        f"every run checked that exactly the unique ids passed; took "
        f"{time.perf_counter() - began:.0f} s"
    )
    print("\none sender, route.dispatch per message (the comparison):")
    print(report_table(reports, concurrent=False))
    for r in reports:
        if r.eip_template is not None:
            t = r.eip_template
            print(
                f"  {r.store}, driven by template.send (informational): {_rate(t)} msgs/s "
                f"({_range(t)}), {t.median / r.baseline.median:.2f} of hand-written"
            )
    for r in reports:
        cpu_ratio = r.cpu_ratio
        if r.store == "memory" and cpu_ratio is not None:  # no I/O: CPU time is all of it
            print(
                f"  {r.store}, by the process's CPU time (informational, steadier on a busy "
                f"machine): {cpu_ratio:.2f} of hand-written"
            )
    print(f"\n{SENDERS} concurrent senders (informational):")
    print(report_table(reports, concurrent=True))
    print()
    for r in reports:
        print(result_line(f"idempotent-{r.store}-vs-handwritten", r.eip.median, r.baseline.median))
