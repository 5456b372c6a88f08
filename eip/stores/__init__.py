"""State for the stateful EIPs: idempotent consumer and aggregator.

=========================================  ==================  ===============================
Store                                      Survives             Shared between
=========================================  ==================  ===============================
``MemoryIdempotentRepository``             nothing (process)    tasks of one process; bounded
                                                                LRU, oldest keys evicted
``MemoryAggregationRepository``            nothing (process)    tasks of one process
``SqliteIdempotentRepository``             process crash        processes on one host (one
                                           (``FULL``: power     local file, WAL)
                                           loss too)
``SqliteAggregationRepository``            same as above        same as above
``PostgresIdempotentRepository``           server's durability  any number of instances
``PostgresTransactional...``               server's durability  any number of instances; a
``...IdempotentRepository``                                     claim is a transaction the
                                                                route's effect joins
``PostgresAggregationRepository``          server's durability  any number of instances
``RedisIdempotentRepository``              server's persistence any number of instances
                                           (RDB/AOF)
``MemoryWatermarkStore``                   nothing (process)    one process
``SqliteWatermarkStore``                   process crash        processes on one host
``PostgresWatermarkStore``                 server's durability  any number of instances
=========================================  ==================  ===============================

Every idempotent store has the same semantics (one contract test suite runs against all):
``add`` claims a key for ``lease`` seconds, ``confirm`` keeps it for ``ttl`` seconds (or for
ever), ``remove`` forgets it. Claims are atomic: of any number of concurrent ``add`` calls for
a key, across tasks and (for the persistent stores) processes, exactly one wins. Every
aggregation store uses optimistic locking on a version number, and every watermark store
(:mod:`eip.stores.watermark`: how far an incremental sync got) a compare-and-set on one.

``PostgresTransactionalIdempotentRepository`` differs on purpose: a claim is an open
transaction, which the route's own writes join and ``confirm`` commits, so a claim and its
effect happen together or not at all (exactly-once effects in PostgreSQL, even when a process
is killed mid-message); a second claim of an open key waits for it instead of failing.

The PostgreSQL and Redis stores are imported on first use, so ``import eip.stores`` needs
neither extra; using them without it raises ImportError naming ``eip[postgres]`` /
``eip[redis]``.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from eip.stores.base import (
    AggregationRepository,
    CompletedGroup,
    ConcurrentUpdateError,
    IdempotentRepository,
    OpenGroup,
    StoreError,
    decode_state,
    encode_state,
)
from eip.stores.memory import MemoryAggregationRepository, MemoryIdempotentRepository
from eip.stores.sqlite import SqliteAggregationRepository, SqliteIdempotentRepository
from eip.stores.watermark import Checkpoint, MemoryWatermarkStore, WatermarkStore
from eip.stores.watermark_sqlite import SqliteWatermarkStore

if TYPE_CHECKING:
    from eip.stores.postgres import PostgresAggregationRepository, PostgresIdempotentRepository
    from eip.stores.postgres_transactional import PostgresTransactionalIdempotentRepository
    from eip.stores.redis import RedisIdempotentRepository
    from eip.stores.watermark_postgres import PostgresWatermarkStore

__all__ = [
    "AggregationRepository",
    "Checkpoint",
    "CompletedGroup",
    "ConcurrentUpdateError",
    "IdempotentRepository",
    "MemoryAggregationRepository",
    "MemoryIdempotentRepository",
    "MemoryWatermarkStore",
    "OpenGroup",
    "PostgresAggregationRepository",
    "PostgresIdempotentRepository",
    "PostgresTransactionalIdempotentRepository",
    "PostgresWatermarkStore",
    "RedisIdempotentRepository",
    "SqliteAggregationRepository",
    "SqliteIdempotentRepository",
    "SqliteWatermarkStore",
    "StoreError",
    "WatermarkStore",
    "decode_state",
    "encode_state",
]

_LAZY = {
    "PostgresAggregationRepository": "eip.stores.postgres",
    "PostgresIdempotentRepository": "eip.stores.postgres",
    "PostgresTransactionalIdempotentRepository": "eip.stores.postgres_transactional",
    "RedisIdempotentRepository": "eip.stores.redis",
    "PostgresWatermarkStore": "eip.stores.watermark_postgres",
}


def __getattr__(name: str) -> Any:
    """Import the stores with optional dependencies only when they are asked for."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'eip.stores' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
