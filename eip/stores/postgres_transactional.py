"""An idempotent repository whose claim is a PostgreSQL transaction: exactly-once effects.

:class:`~eip.stores.postgres.PostgresIdempotentRepository` commits a claim (a lease) before
the route runs and a confirmation after it, and the route's own writes commit on their own in
between. A process killed in that window leaves one of two things behind: a committed effect
whose key is never confirmed (once the lease runs out, the broker's redelivery applies it a
second time), or a claim without its effect (a redelivery *within* the lease is taken for a
duplicate and acked: the message is lost). Only a transaction that holds the key and the
effect together avoids both.

Here :meth:`add` opens a transaction on a connection of its own and inserts the key in it. The
route writes its effect through that connection, :meth:`connection`::

    repo = PostgresTransactionalIdempotentRepository(dsn, table="crm_events_seen")

    async def apply(exchange: Exchange) -> None:
        event = exchange.body
        await repo.connection(event.id).execute("INSERT INTO ... ON CONFLICT ...", ...)

    (self.from_("rabbitmq:...")
         .idempotent_consumer(lambda ex: ex.body.id, repo)
         .process(apply))

When the exchange completes, :meth:`confirm` commits key and effect at once and :meth:`remove`
(a failure) rolls both back. A process that dies holding a claim holds nothing: PostgreSQL
ends the dead connection's transaction, and the broker's redelivery finds the key free. A
second claim of a key whose claim is open (another instance, or a second copy in flight here)
waits on the row lock until that transaction ends, then sees a duplicate (committed) or claims
it (rolled back): no copy is skipped unless the first one's effect is committed.

Costs and limits:

- one pooled connection per message in flight: ``pool_size`` must cover the concurrency of
  the routes sharing the repository (claims wait for a free connection otherwise);
- one commit per message (claim, effect and confirmation) instead of three;
- a claim waits for an open claim of the same key with no timeout: the holder is a live
  exchange (or a dead process, whose transaction PostgreSQL ends when it notices);
- the effect must be written in this database, through :meth:`connection`; effects elsewhere
  (an HTTP call, a publish) are still at-least-once;
- the commit runs in the exchange's completion: if it fails (the connection dies at that
  instant), the engine logs the failed completion and the source acks the message, with its
  effect rolled back. That window is one round trip long.
"""

from __future__ import annotations

import logging
from typing import Any

from eip.stores.base import StoreError, TimeSource
from eip.stores.postgres import PostgresIdempotentRepository, _quote

__all__ = ["PostgresTransactionalIdempotentRepository"]

log = logging.getLogger("eip.stores")


class PostgresTransactionalIdempotentRepository(PostgresIdempotentRepository):
    """Idempotent repository in a PostgreSQL table; a claim is an open transaction that the
    route's effect joins (see the module docstring). Same table layout as
    :class:`PostgresIdempotentRepository`; ``lease`` does not apply (a claim lasts as long as
    its transaction)."""

    def __init__(
        self,
        dsn: str | None = None,
        table: str = "eip_idempotent",
        ttl: float | None = None,
        clock: TimeSource | None = None,
        pool: Any = None,
        pool_size: int = 10,
    ) -> None:
        if pool_size < 1:
            raise ValueError(f"pool_size must be >= 1, got {pool_size}")
        super().__init__(dsn, table, ttl=ttl, clock=clock, pool=pool)
        self.pool_size = pool_size
        self._claims: dict[str, tuple[Any, Any]] = {}  # key -> (connection, transaction)
        t = _quote(self.table)
        # Confirmed from the start: the row is only visible once the transaction commits.
        self._sql_claim_open = (
            f"INSERT INTO {t} AS cur (key, confirmed, expires_at) VALUES ($1, true, $2) "
            "ON CONFLICT (key) DO UPDATE SET confirmed = true, expires_at = EXCLUDED.expires_at "
            "WHERE cur.expires_at IS NOT NULL AND cur.expires_at <= $3 RETURNING key"
        )

    async def start(self) -> None:
        if self._pool is None:  # our own pool, sized for the claims held open
            with self._mapped():
                self._pool = await self._asyncpg.create_pool(
                    self.dsn, min_size=1, max_size=self.pool_size
                )
        await super().start()

    async def stop(self) -> None:
        """Roll back the claims still open (their messages were not processed), then close."""
        for key in list(self._claims):
            await self._settle(key, commit=False)
        await super().stop()

    @property
    def open_claims(self) -> int:
        """Claims whose transaction is open (messages in flight)."""
        return len(self._claims)

    async def add(self, key: str) -> bool:
        now = self._clock.time()
        expires = None if self.ttl is None else now + self.ttl
        with self._mapped():
            connection = await self.pool.acquire()
        transaction = connection.transaction()
        try:
            with self._mapped():
                await transaction.start()
                won = await connection.fetchval(self._sql_claim_open, key, expires, now)
        except BaseException:
            await self._end(connection, transaction)
            raise
        if won is None:  # a duplicate: committed by someone (maybe just now, after a wait)
            await self._end(connection, transaction)
            return False
        self._claims[key] = (connection, transaction)
        return True

    def connection(self, key: str) -> Any:
        """The connection whose open transaction holds the claim of ``key``: write the
        effect through it, and it commits with the key or rolls back with it."""
        claim = self._claims.get(key)
        if claim is None:
            raise StoreError(
                f"{type(self).__name__} ({self.table}): no open claim of key {key!r}; write "
                "the effect after idempotent_consumer(...) with this repository, in the "
                "exchange that claimed the key"
            )
        return claim[0]

    async def confirm(self, key: str) -> None:
        """Commit the claim of ``key`` and the effect written with it; a key not claimed
        here is recorded as processed (as :class:`PostgresIdempotentRepository` does)."""
        if key in self._claims:
            await self._settle(key, commit=True)
        else:
            await super().confirm(key)

    async def remove(self, key: str) -> None:
        """Roll back the claim of ``key`` and its effect; a key not claimed here is deleted."""
        if key in self._claims:
            await self._settle(key, commit=False)
        else:
            await super().remove(key)

    async def _settle(self, key: str, *, commit: bool) -> None:
        connection, transaction = self._claims.pop(key)
        if not commit:
            await self._end(connection, transaction)
            return
        try:
            with self._mapped():
                await transaction.commit()
        except BaseException:
            await self._end(connection, transaction)
            raise
        await self._release(connection)

    async def _end(self, connection: Any, transaction: Any) -> None:
        """Roll back (if the transaction is still open) and give the connection back."""
        try:
            await transaction.rollback()
        except Exception as exc:  # never started, or a dead connection (its transaction died)
            log.debug("%s: no rollback of a claim: %r", self.table, exc)
        await self._release(connection)

    async def _release(self, connection: Any) -> None:
        """Back to the pool; a broken connection is closed instead of pooled."""
        try:
            await self.pool.release(connection)
        except Exception as exc:
            log.warning("%s: releasing a connection failed: %r", self.table, exc)
            connection.terminate()
