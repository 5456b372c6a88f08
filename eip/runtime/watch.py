"""``eip run --reload``: watch the route files (and the config file) and reload on a change.

Polling, not inotify: it needs no extra dependency, works on every file system a developer
mounts (containers, network shares), and a route tree is small. A burst of writes (an editor
saving, ``git checkout``) reloads once: the watcher waits until nothing changed for
``settle`` seconds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

__all__ = ["snapshot", "watch"]

log = logging.getLogger("eip.reload")

Snapshot = dict[str, tuple[int, int]]


def snapshot(roots: Iterable[Path]) -> Snapshot:
    """Every Python (and TOML) file under ``roots``, with its mtime and size."""
    found: Snapshot = {}
    for root in roots:
        files = [root] if root.is_file() else [*root.rglob("*.py"), *root.rglob("*.toml")]
        for file in files:
            try:
                stat = file.stat()
            except OSError:
                continue  # deleted while we looked: the next look sees it gone
            found[str(file)] = (stat.st_mtime_ns, stat.st_size)
    return found


async def watch(
    roots: Iterable[Path],
    reload: Callable[[], Awaitable[object]],
    *,
    baseline: Snapshot | None = None,
    interval: float = 0.5,
    settle: float = 0.3,
) -> None:
    """Call ``reload`` whenever the files under ``roots`` change from ``baseline`` (taken
    before the routes were loaded, so an edit made while they start is not missed); runs
    until cancelled."""
    watched = [Path(r) for r in roots]
    seen = baseline if baseline is not None else await asyncio.to_thread(snapshot, watched)
    log.info("watching %d file(s) for changes (--reload)", len(seen))
    while True:
        await asyncio.sleep(interval)
        now = await asyncio.to_thread(snapshot, watched)
        if now == seen:
            continue
        while True:  # let a burst of writes finish
            await asyncio.sleep(settle)
            later = await asyncio.to_thread(snapshot, watched)
            if later == now:
                break
            now = later
        changed = sorted(set(now.items()) ^ set(seen.items()))
        log.info("route files changed (%s): reloading", ", ".join(sorted({c[0] for c in changed})))
        seen = now
        try:
            await reload()
        except Exception:
            log.exception("reload failed")
