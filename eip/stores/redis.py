"""Redis idempotent repository: shared claims with native expiry.

Each key is one Redis string under ``prefix``:

- claim:   ``SET key claimed NX PX <lease>`` (atomic; the claim vanishes if its holder dies)
- confirm: ``SET key done [PX <ttl>]``; a plain SET replaces the value *and* drops the
  lease's expiry, so a confirmed key without ttl never expires. (``KEEPTTL`` would be wrong
  here: the confirmed key would vanish when the lease ran out and the duplicate would pass.)
- remove:  ``DEL``; contains: ``EXISTS``; clear: ``SCAN MATCH prefix*`` + ``UNLINK``, never
  ``KEYS``, which blocks the server.

Time is the Redis server's: expiry is done by Redis, so this store takes no ``clock`` and its
tests wait in real time. Durability is the server's persistence setting (RDB/AOF): with
``appendfsync everysec`` a server crash may lose up to a second of claims and confirmations.

Needs the ``redis`` extra (``pip install eip[redis]``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

from eip.stores._common import check_durations
from eip.stores.base import StoreError

__all__ = ["RedisIdempotentRepository"]

_CLAIMED = b"claimed"
_DONE = b"done"
_GLOB_SPECIAL = re.compile(r"([\\*?\[\]])")


def _import_redis_asyncio() -> ModuleType:
    try:
        import redis.asyncio
    except ImportError as exc:
        raise ImportError("RedisIdempotentRepository needs redis: install eip[redis]") from exc
    return redis.asyncio


def _millis(seconds: float) -> int:
    return max(1, round(seconds * 1000))


class RedisIdempotentRepository:
    """Idempotent repository in Redis, safe across instances sharing the server.

    ``client`` may be a ``redis.asyncio.Redis`` you own (it is then not closed on stop).
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        prefix: str = "eip:idem:",
        ttl: float | None = None,
        lease: float = 60.0,
        client: Any = None,
    ) -> None:
        check_durations(ttl, lease)
        if not prefix:
            raise ValueError("prefix must not be empty: clear() deletes every key under it")
        self._redis = _import_redis_asyncio()
        self.url = url
        self.prefix = prefix
        self.ttl = ttl
        self.lease = lease
        # Any: redis-py types its commands for the sync and async clients at once
        # (``Awaitable[T] | T``), which would need a cast at every await.
        self._client: Any = client
        self._owns_client = client is None

    async def start(self) -> None:
        """Create the client (unless one was given) and check the server answers."""
        with self._mapped():
            if self._client is None:
                self._client = self._redis.Redis.from_url(self.url)
            await self._client.ping()

    async def stop(self) -> None:
        """Close the client if this repository created it."""
        if self._owns_client and self._client is not None:
            client, self._client = self._client, None
            with self._mapped():
                await client.aclose()

    @property
    def client(self) -> Any:
        if self._client is None:
            raise StoreError("RedisIdempotentRepository is not started")
        return self._client

    async def add(self, key: str) -> bool:
        with self._mapped():
            return bool(
                await self.client.set(self.prefix + key, _CLAIMED, nx=True, px=_millis(self.lease))
            )

    async def confirm(self, key: str) -> None:
        px = None if self.ttl is None else _millis(self.ttl)
        with self._mapped():
            await self.client.set(self.prefix + key, _DONE, px=px)

    async def remove(self, key: str) -> None:
        with self._mapped():
            await self.client.delete(self.prefix + key)

    async def contains(self, key: str) -> bool:
        with self._mapped():
            return int(await self.client.exists(self.prefix + key)) == 1

    async def clear(self) -> None:
        """Delete every key under the prefix, in batches (SCAN does not block the server)."""
        pattern = _GLOB_SPECIAL.sub(r"\\\1", self.prefix) + "*"
        batch: list[bytes] = []
        with self._mapped():
            async for name in self.client.scan_iter(match=pattern, count=500):
                batch.append(name)
                if len(batch) >= 500:
                    await self.client.unlink(*batch)
                    batch.clear()
            if batch:
                await self.client.unlink(*batch)

    async def purge(self) -> int:
        """Nothing to do: Redis expires keys itself. Present for parity with the SQL stores."""
        return 0

    @contextmanager
    def _mapped(self) -> Iterator[None]:
        try:
            yield
        except StoreError:
            raise
        except (self._redis.RedisError, OSError) as exc:
            raise StoreError(f"Redis store: {type(exc).__name__}: {exc}") from exc
