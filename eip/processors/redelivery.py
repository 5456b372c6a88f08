"""The redelivery policy, and what a route remembers of exchanges waiting in its backoff.

A policy says how often and how fast a failing step is tried again, and *which* failures are
tried again at all:

- ``retry_on=()`` and ``no_retry_on=()`` (the default): the default rule of
  :mod:`eip.processors.retry_rules` applies. Deterministic failures (data format, mapping and
  validation errors, SOAP Client faults, HTTP 4xx other than 408/429) are not redelivered; the
  rest are.
- ``retry_on=(A, B)``: only failures that are instances of ``A`` or ``B`` are redelivered, and
  the default rule is not consulted. This is how a deterministic type is retried anyway
  (``retry_on=(HttpOperationFailed,)`` retries a 404 of an eventually consistent service) and
  how Camel's behaviour is had back (``retry_on=(Exception,)``).
- ``no_retry_on=(C,)``: failures that are instances of ``C`` are never redelivered, on top of
  the default rule or of ``retry_on`` (it wins over both).

A failure that is not redelivered goes on at once to the ``on_exception`` clause or the dead
letter channel, as if its redeliveries were exhausted.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass

import msgspec

from eip.errors import ExchangeError
from eip.processors.retry_rules import deterministic_reason

__all__ = ["Backoff", "RedeliveryPolicy", "error_line"]

#: An error's first line in log lines is cut to this many characters (an HTTP failure carries
#: up to 1000 characters of the response body).
ERROR_LINE_LIMIT = 200


class RedeliveryPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """How often and how fast a failing step is tried again, and which failures are.

    The n-th redelivery waits ``delay * backoff_multiplier ** (n - 1)`` seconds, capped at
    ``max_delay``, then spread by ``jitter`` (0.1 means up to 10% either way) so that many
    failing exchanges do not retry in lock step. ``max_redeliveries=-1`` retries for ever.
    ``retry_on`` / ``no_retry_on`` choose the failures (see the module docstring); a single
    exception type or any iterable of them is accepted.
    """

    max_redeliveries: int = 0
    delay: float = 1.0
    backoff_multiplier: float = 1.0
    max_delay: float = 60.0
    jitter: float = 0.0
    retry_on: tuple[type[BaseException], ...] = ()
    no_retry_on: tuple[type[BaseException], ...] = ()

    def __post_init__(self) -> None:
        if self.max_redeliveries < -1:
            raise ValueError("max_redeliveries must be >= 0, or -1 for forever")
        if self.delay < 0 or self.max_delay < 0:
            raise ValueError("delays must be >= 0")
        if self.backoff_multiplier < 1:
            raise ValueError("backoff_multiplier must be >= 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter must be between 0 and 1")
        for name in ("retry_on", "no_retry_on"):
            msgspec.structs.force_setattr(self, name, _exception_types(name, getattr(self, name)))

    @property
    def limit(self) -> float:
        return float("inf") if self.max_redeliveries == -1 else self.max_redeliveries

    def delay_for(self, attempt: int) -> float:
        """Seconds to wait before redelivery number ``attempt`` (1-based)."""
        delay = min(self.delay * self.backoff_multiplier ** (attempt - 1), self.max_delay)
        if self.jitter:
            delay *= random.uniform(1 - self.jitter, 1 + self.jitter)
        return delay

    def refusal(self, error: BaseException) -> str | None:
        """Why this policy does not redeliver ``error``, or None when it does."""
        if self.no_retry_on and isinstance(error, self.no_retry_on):
            return f"{type(error).__name__} is in the policy's no_retry_on"
        if self.retry_on:
            if isinstance(error, self.retry_on):
                return None
            return f"{type(error).__name__} is not in the policy's retry_on"
        return deterministic_reason(error)

    def retries(self, error: BaseException) -> bool:
        """True when this policy redelivers ``error`` (redeliveries left permitting)."""
        return self.refusal(error) is None


def _exception_types(name: str, value: object) -> tuple[type[BaseException], ...]:
    items: Iterable[object]
    if isinstance(value, type):
        items = (value,)
    elif isinstance(value, Iterable) and not isinstance(value, (str, bytes)):
        items = value
    else:
        raise ValueError(
            f"{name} takes exception types, e.g. {name}=(TimeoutError,); got {value!r}"
        )
    types = tuple(items)
    for kind in types:
        if not (isinstance(kind, type) and issubclass(kind, BaseException)):
            raise ValueError(f"{name} takes exception types, got {kind!r}")
    return types  # type: ignore[return-value]


@dataclass(slots=True)
class Backoff:
    """An exchange waiting for its next redelivery (shown by the context while it drains)."""

    exchange_id: str
    step: str
    attempt: int
    max_redeliveries: int
    due: float  #: clock time of the redelivery

    def describe(self, now: float) -> str:
        return (
            f"exchange {self.exchange_id} at {self.step}, redelivery attempt "
            f"{self.attempt} of {attempts_text(self.max_redeliveries)} in "
            f"{max(0.0, self.due - now):.1f}s"
        )


def attempts_text(max_redeliveries: int) -> str:
    return "unlimited" if max_redeliveries == -1 else str(max_redeliveries)


def error_line(error: BaseException) -> str:
    """``Type: first line of the message``, cut to :data:`ERROR_LINE_LIMIT` characters; an
    :class:`~eip.errors.ExchangeError` without its ``[route=... endpoint=...]`` context, which
    the log line already gives."""
    text = (Exception.__str__(error) if isinstance(error, ExchangeError) else str(error)).strip()
    line = text.splitlines()[0] if text else ""
    if len(line) > ERROR_LINE_LIMIT:
        line = line[: ERROR_LINE_LIMIT - 1] + "…"
    return f"{type(error).__name__}: {line}" if line else type(error).__name__
