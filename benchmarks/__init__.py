"""eip benchmarks: each one measures eip against a baseline in the same process run.

The convention (see ``benchmarks/README.md``): a benchmark prints a human table, then one
machine-readable line per comparison, last::

    RESULT <comparison> eip=<per second> baseline=<per second> ratio=<eip/baseline>
    RESULT <name> value=<number> unit=<unit>

Add a benchmark by writing a module with ``run(quick: bool) -> None`` (and, optionally,
``profile(quick: bool) -> None``) and registering it in :data:`BENCHMARKS`. Modules are
imported only when run, so a benchmark's heavy or optional dependencies (a broker client, an
HTTP server) never slow down or break the listing.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Protocol, cast

__all__ = ["BENCHMARKS", "Benchmark", "BenchmarkModule", "load"]


class BenchmarkModule(Protocol):
    """What a benchmark module provides."""

    def run(self, quick: bool) -> None: ...


@dataclass(frozen=True, slots=True)
class Benchmark:
    """A registered benchmark: the module that runs it and one line saying what it measures."""

    module: str
    summary: str


BENCHMARKS: dict[str, Benchmark] = {
    "pipeline": Benchmark(
        "benchmarks.pipeline",
        "in-process route (unmarshal, filter, transform, choice(3), marshal) vs a hand-written "
        "loop; the same route with the OpenTelemetry SDK on vs off",
    ),
    "rabbitmq": Benchmark(
        "benchmarks.rabbitmq",
        "RabbitMQ A -> work -> B (confirmed) -> ack A: eip vs best hand-written aio-pika vs "
        "FastStream",
    ),
    "split": Benchmark(
        "benchmarks.split",
        "CSV split + map + re-batch (aggregator) vs a hand-written loop; peak RSS of a "
        "1M-row (~100 MB) CSV split",
    ),
    "http": Benchmark(
        "benchmarks.http",
        "HTTP consumer (POST JSON -> route -> reply) vs a raw ASGI app on uvicorn; HTTP "
        "producer at 50 concurrent vs raw aiohttp",
    ),
    "idempotent": Benchmark(
        "benchmarks.idempotent",
        "idempotent consumer checks/s on memory, SQLite, PostgreSQL and Redis vs the same "
        "repository calls by hand",
    ),
    "soap": Benchmark(
        "benchmarks.soap",
        "SOAP producer calls/s at 10 concurrent vs zeep's AsyncClient over plain httpx",
    ),
    "seda": Benchmark(
        "benchmarks.seda",
        "durable seda (SQLite) vs memory seda: msgs/s through the hop, one sender and 50",
    ),
    "reconcile": Benchmark(
        "benchmarks.reconcile",
        "consistency check of 1M vs 1M records (reconcile) vs two dicts compared by hand; "
        "its peak RSS",
    ),
    "multi_instance": Benchmark(
        "benchmarks.multi_instance",
        "3 eip run processes, consistent hash + single active consumer, PostgreSQL stores, "
        "one SIGKILLed: 20,000 events checked; broker/PostgreSQL CPU per message, ms per claim",
    ),
}


def load(name: str) -> ModuleType:
    """Import the module of benchmark ``name``; KeyError if there is none."""
    module = importlib.import_module(BENCHMARKS[name].module)
    if not callable(getattr(module, "run", None)):
        raise TypeError(f"benchmark module {module.__name__} has no run(quick) function")
    return module


def runner(name: str) -> BenchmarkModule:
    """The benchmark module ``name``, typed as something with ``run(quick)``."""
    return cast(BenchmarkModule, load(name))
