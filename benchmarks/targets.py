"""The targets every ``RESULT`` line is judged against, in one place.

A target names the benchmark that prints its comparison, the bound and where the bound comes
from (``/work/shared/BENCHMARKS.md`` or an issue). Where an issue raised a bound set in
``BENCHMARKS.md``, the issue's bound is the one kept. ``python -m benchmarks all`` prints each
RESULT line with its target and a pass or FAIL; a RESULT with no entry here is reported
without a verdict (informational).

A ratio is eip / baseline measured in the same run, so only ``>=`` bounds apply to ratios; a
value (peak memory, seconds) has an upper bound, ``<``.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

__all__ = ["TARGETS", "Target"]

Bound = Literal[">=", "<"]
_COMPARE: dict[Bound, Callable[[float, float], bool]] = {">=": operator.ge, "<": operator.lt}
_SHOWN: dict[Bound, str] = {">=": "≥", "<": "<"}


@dataclass(frozen=True, slots=True)
class Target:
    """``<figure> <bound> <limit> [unit]``: a ratio (no unit) or a value in ``unit``."""

    benchmark: str
    bound: Bound
    limit: float
    source: str
    unit: str = ""

    def met(self, figure: float) -> bool:
        """Whether ``figure`` (the ratio, or the value in :attr:`unit`) meets the target."""
        return _COMPARE[self.bound](figure, self.limit)

    def __str__(self) -> str:
        limit = f"{self.limit:g}"
        return f"{_SHOWN[self.bound]} {limit} {self.unit}".rstrip()


_SHARED = "BENCHMARKS.md"

TARGETS: dict[str, Target] = {
    # in-process pipeline (issue 15 raised 0.6 to 0.75, and tracing 0.3 to 0.5)
    "pipeline-vs-handwritten": Target("pipeline", ">=", 0.75, "issue 15"),
    "pipeline-ops-on-vs-handwritten": Target("pipeline", ">=", 0.7, "issue 11"),
    "tracing-on-vs-off": Target("pipeline", ">=", 0.5, "issue 15"),
    "tracing-1pct-vs-off": Target("pipeline", ">=", 0.9, "issue 15"),
    "encrypt-2-fields-vs-plain": Target("pipeline", ">=", 0.5, "issue 14"),
    "audit-sqlite-vs-off": Target("pipeline", ">=", 0.3, "issue 14"),
    # RabbitMQ end to end
    "rabbitmq-vs-own-client": Target("rabbitmq", ">=", 0.7, "issue 15"),
    "rabbitmq-quorum-vs-own-client": Target("rabbitmq", ">=", 0.7, "issue 15"),
    "rabbitmq-vs-aio-pika": Target("rabbitmq", ">=", 1.0, _SHARED),
    "rabbitmq-vs-faststream": Target("rabbitmq", ">=", 2.5, _SHARED),
    # stateful EIPs
    "idempotent-memory-vs-handwritten": Target("idempotent", ">=", 0.6, "issue 15"),
    "split-aggregate-vs-handwritten": Target("split", ">=", 0.6, "issue 15"),
    "split-csv-peak-rss": Target("split", "<", 150, _SHARED, "MB"),
    # HTTP and SOAP
    "http-consumer-vs-asgi": Target("http", ">=", 0.7, _SHARED),
    "http-producer-vs-aiohttp": Target("http", ">=", 0.8, _SHARED),
    "soap-producer-vs-zeep": Target("soap", ">=", 2.0, _SHARED),
    "soap-consumer-vs-lxml-validating": Target("soap", ">=", 0.8, "issue 15"),
    # consistency check
    "reconcile-vs-handwritten": Target("reconcile", ">=", 0.5, "issue 13"),
    "reconcile-peak-rss": Target("reconcile", "<", 200, "issue 13", "MB"),
    # start-up (no benchmark registered yet)
    "startup-20-routes": Target("startup", "<", 1, _SHARED, "s"),
}
