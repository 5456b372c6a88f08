"""Two engine instances (two OS processes) share one idempotent repository and race on it.

One stream of 10,000 messages, 9,091 unique ids and 909 duplicates, is split between two
child processes (``tests/idempotent_child.py``) that start sending at the same moment. Most
duplicates are placed so that their copies go to *different* processes at about the same
position in each stream, so both instances claim the same id at about the same time; the rest
repeat an id a few messages later in the same process, where 16 concurrent consumers overlap
them. Each unique id must be processed exactly once across both processes.

PostgreSQL and Redis are real services here (as in ``tests/stores``): if one is down, its test
fails, it is not skipped.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

from tests.stores.backends import PG_DSN, REDIS_URL, delete_redis_prefix, drop_pg_tables

ROOT = Path(__file__).resolve().parent.parent
UNIQUE = 9091
TOTAL = 10_000
DUPLICATES = TOTAL - UNIQUE  # 909: 10% of the unique ids come twice
CROSS_SHARE = 0.9  # share of duplicates whose copies go to different processes
SEED = 20261123  # a fixed layout, so a failure can be replayed
RUN_TIMEOUT = 25.0


def make_streams(ids: list[str], rng: random.Random) -> tuple[list[str], list[str]]:
    """Split ``ids`` plus one copy of ``DUPLICATES`` of them into two streams of ~5,000.

    Unique ids alternate between the streams, so id ``k`` sits at position ``k // 2`` of
    stream ``k % 2``. A duplicate's copy gets a position too: for most, about the same
    position (within 3) in the *other* stream, so the two processes claim the id at about the
    same moment; for the rest, a few positions later in the same stream, where the concurrent
    consumers of one process overlap the two claims.
    """
    slots: tuple[list[tuple[float, str]], list[tuple[float, str]]] = ([], [])
    for k, key in enumerate(ids):
        slots[k % 2].append((float(k // 2), key))
    for k in rng.sample(range(len(ids)), DUPLICATES):
        stream, position = k % 2, k // 2
        if rng.random() < CROSS_SHARE:
            slots[1 - stream].append((position + rng.uniform(-3.0, 3.0), ids[k]))
        else:
            slots[stream].append((position + rng.uniform(0.5, 8.0), ids[k]))
    first, second = (sorted(s) for s in slots)
    return [key for _, key in first], [key for _, key in second]


def write_ndjson(path: Path, ids: list[str]) -> None:
    path.write_text("".join(json.dumps({"id": key}) + "\n" for key in ids))


async def check_service(kind: str) -> None:
    """Fail (not skip) with a clear message when the service the test needs is down."""
    try:
        if kind == "postgres":
            conn = await asyncpg.connect(PG_DSN, timeout=5)
            await conn.close()
        else:
            client = aioredis.Redis.from_url(REDIS_URL, socket_connect_timeout=5)
            try:
                await client.ping()
            finally:
                await client.aclose()
    except Exception as exc:
        where = PG_DSN if kind == "postgres" else REDIS_URL
        pytest.fail(f"{kind} at {where} is not reachable ({exc!r}); this test needs it running")


async def cleanup(kind: str, options: dict[str, Any]) -> None:
    if kind == "postgres":
        await drop_pg_tables([options["table"]])
    else:
        await delete_redis_prefix(options["prefix"])


def start_child(
    kind: str, options: dict[str, Any], stream: Path, output: Path, barrier: Path
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.idempotent_child",
            kind,
            json.dumps(options),
            str(stream),
            str(output),
            str(barrier),
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def child_error(child: subprocess.Popen[bytes]) -> str:
    stderr = child.stderr.read().decode() if child.stderr else ""
    return f"child exited with {child.returncode}:\n{stderr[-3000:]}"


def wait_until_ready(children: list[subprocess.Popen[bytes]], outputs: list[Path]) -> None:
    deadline = time.monotonic() + 20
    while not all(Path(f"{o}.ready").exists() for o in outputs):
        for child in children:
            assert child.poll() is None, child_error(child)
        assert time.monotonic() < deadline, "the children did not start within 20 s"
        time.sleep(0.01)


@pytest.mark.parametrize("kind", ["postgres", "redis"])
def test_two_instances_process_each_id_exactly_once(kind: str, tmp_path: Path) -> None:
    asyncio.run(check_service(kind))
    uid = uuid.uuid4().hex[:12]
    options: dict[str, Any] = (
        {"dsn": PG_DSN, "table": f"eip_test_{uid}_two_instances"}
        if kind == "postgres"
        else {"url": REDIS_URL, "prefix": f"eip:test:{uid}:two-instances:"}
    )
    rng = random.Random(SEED)
    ids = [f"{uid}-{n:05d}" for n in range(UNIQUE)]
    streams = make_streams(ids, rng)
    assert sum(map(len, streams)) == TOTAL
    inputs = [tmp_path / f"stream-{n}.ndjson" for n in (0, 1)]
    outputs = [tmp_path / f"processed-{n}.txt" for n in (0, 1)]
    barrier = tmp_path / "go"
    for path, stream in zip(inputs, streams, strict=True):
        write_ndjson(path, stream)

    children = [
        start_child(kind, options, path, output, barrier)
        for path, output in zip(inputs, outputs, strict=True)
    ]
    try:
        wait_until_ready(children, outputs)
        barrier.touch()  # both children poll for it every millisecond: they start together
        deadline = time.monotonic() + RUN_TIMEOUT
        for child in children:
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pytest.fail(f"a child did not finish within {RUN_TIMEOUT} s")
            assert child.returncode == 0, child_error(child)
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait(10)
        asyncio.run(cleanup(kind, options))

    reports = [json.loads(Path(f"{o}.done").read_text()) for o in outputs]
    processed = [o.read_text().split() for o in outputs]
    for n, report in enumerate(reports):
        assert report["failures"] == 0, f"child {n}: {report['failures']} failed exchanges, " + (
            f"first: {report['first_failure']}"
        )
        assert report["sent"] == len(streams[n])
        assert report["processed"] == len(processed[n])

    seen = Counter(key for lines in processed for key in lines)
    twice = sorted(key for key, times in seen.items() if times > 1)
    assert not twice, f"{len(twice)} ids processed more than once, e.g. {twice[:5]}"
    missing = set(ids) - set(seen)
    assert not missing, f"{len(missing)} ids never processed, e.g. {sorted(missing)[:5]}"
    assert set(seen) == set(ids), "processed ids that were never sent"
    for n, lines in enumerate(processed):
        assert len(lines) > 0.2 * UNIQUE, f"child {n} processed only {len(lines)} ids"
    # Both instances were sending at the same time, so the claims really raced.
    first, second = reports
    assert first["began"] < second["sent_at"], "child 1 started after child 0 had sent all"
    assert second["began"] < first["sent_at"], "child 0 started after child 1 had sent all"

    skipped = [len(streams[n]) - len(processed[n]) for n in (0, 1)]
    start_gap = abs(first["began"] - second["began"]) * 1000
    took = max(r["finished"] for r in reports) - min(r["began"] for r in reports)
    print(
        f"\n{kind}: {TOTAL:,} messages, {UNIQUE:,} unique; child 0 processed "
        f"{len(processed[0]):,} of {len(streams[0]):,} (skipped {skipped[0]} duplicates), "
        f"child 1 processed {len(processed[1]):,} of {len(streams[1]):,} "
        f"(skipped {skipped[1]}); start gap {start_gap:.1f} ms, both done in {took:.2f} s"
    )
