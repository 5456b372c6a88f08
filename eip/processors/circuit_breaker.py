"""Circuit breaker: stop calling a failing sub-pipeline for a while, and probe before resuming.

Decisions (close to Resilience4j, which Camel's circuit breaker EIP uses):

- Closed: every call's outcome goes into a ring of the last ``window`` outcomes. Once at least
  ``minimum_calls`` are recorded and the failure share reaches ``failure_rate``, the breaker
  opens. O(1) per call, no allocation.
- Open: calls go straight to the fallback, or fail fast with :class:`CircuitOpenError`. After
  ``open_for`` seconds on the context clock it is half-open: ``half_open_calls`` probes go
  through (others are short-circuited as when open); a failed probe opens it again at once,
  and when all probes succeeded it closes with a fresh window.
- A call's outcome counts only in the state it started in: a slow call that began while closed
  and ends after the breaker opened does not count again.
- Only exceptions in ``record`` are failures. Others count as successes for the breaker (a bad
  input says nothing about the backend's health) and propagate without the fallback.
- The fallback runs when the breaker is open or a call failed; the exchange property
  ``eip.circuit_breaker.fallback`` says which (``"open"`` or ``"failure"``), and the failure
  is in ``eip.exception``.
- The protected steps run without the route's error handling, so one call is one outcome.
  Without a fallback the failure then goes to the route's error handling, whose redelivery
  retries the *breaker step*: once the breaker is open those retries fail fast with
  ``CircuitOpenError`` and never reach the protected endpoint, so redelivery cannot hammer it.
- Operators read ``breaker.state`` (:class:`CircuitState`) and the counters; every breaker of a
  context is in :func:`circuit_breakers`, by name.
"""

from __future__ import annotations

import enum
import logging
import weakref
from typing import Any

from eip import headers as H
from eip.clock import Clock
from eip.errors import CircuitOpenError, PartFailedError
from eip.message import Exchange
from eip.processors.base import STOP, Step

__all__ = [
    "FALLBACK_PROPERTY",
    "CircuitBreaker",
    "CircuitOpenError",
    "CircuitState",
    "circuit_breakers",
    "register_breaker",
]

log = logging.getLogger("eip.circuit_breaker")

#: Exchange property set when the fallback runs: ``"open"`` or ``"failure"``.
FALLBACK_PROPERTY = "eip.circuit_breaker.fallback"


class CircuitState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


_CLOSED, _OPEN, _HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN


class CircuitBreaker:
    """One circuit breaker step; ``process`` is the step."""

    def __init__(
        self,
        name: str,
        protected: Step,
        fallback: Step | None,
        clock: Clock,
        *,
        failure_rate: float = 0.5,
        minimum_calls: int = 10,
        window: int = 20,
        open_for: float = 30.0,
        half_open_calls: int = 1,
        record: tuple[type[BaseException], ...] = (Exception,),
        inner_errors: object | None = None,
    ) -> None:
        if not 0 < failure_rate <= 1:
            raise ValueError(f"failure_rate must be in (0, 1], got {failure_rate}")
        if not 1 <= minimum_calls <= window:
            raise ValueError(f"need 1 <= minimum_calls <= window, got {minimum_calls}, {window}")
        if open_for < 0 or half_open_calls < 1:
            raise ValueError("open_for must be >= 0 and half_open_calls >= 1")
        self.name = name
        self.clock = clock
        self.failure_rate = failure_rate
        self.minimum_calls = minimum_calls
        self.window = window
        self.open_for = open_for
        self.half_open_calls = half_open_calls
        self.record = record
        self.rejected = 0
        self._protected = protected
        self._fallback = fallback
        self._inner_errors = inner_errors
        self._state = _CLOSED
        self._generation = 0  # bumped on every transition
        self._opened_at = 0.0
        self._outcomes = bytearray(window)  # 1 = failure
        self._next = 0
        self._calls = 0
        self._failures = 0
        self._probes = 0
        self._probe_successes = 0

    # -- for operators -------------------------------------------------------------------
    @property
    def state(self) -> CircuitState:
        if self._state is _OPEN and self.clock.time() >= self._opened_at + self.open_for:
            self._to(_HALF_OPEN)
        return self._state

    @property
    def calls(self) -> int:
        """Outcomes in the closed-state window."""
        return self._calls

    @property
    def failures(self) -> int:
        """Failures in the closed-state window."""
        return self._failures

    # -- the step --------------------------------------------------------------------------
    def process(self, exchange: Exchange) -> Any:
        if self._state is not _CLOSED and not self._permit():
            return self._short_circuit(exchange)
        generation = self._generation
        try:
            result = self._protected(exchange)
        except Exception as exc:
            return self._failed(exchange, exc, generation)
        if result is None or result is STOP:
            self._record(False, generation)
            return result
        return self._await(exchange, result, generation)

    async def _await(self, exchange: Exchange, pending: Any, generation: int) -> Any:
        try:
            result = await pending
        except Exception as exc:
            result = self._failed(exchange, exc, generation)
            if result is not None and result is not STOP:
                result = await result
            return result
        self._record(False, generation)
        return result

    def _permit(self) -> bool:
        if self.state is _HALF_OPEN and self._probes < self.half_open_calls:
            self._probes += 1
            return True
        return False

    def _short_circuit(self, exchange: Exchange) -> Any:
        self.rejected += 1
        if self._fallback is None:
            retry = max(0.0, self._opened_at + self.open_for - self.clock.time())
            raise CircuitOpenError(
                f"circuit breaker '{self.name}' is {self._state.value}: failing fast"
                + (f" for another {retry:.1f}s" if self._state is _OPEN else "")
            )
        exchange.properties[FALLBACK_PROPERTY] = "open"
        return self._fallback(exchange)

    def _failed(self, exchange: Exchange, error: Exception, generation: int) -> Any:
        recorded = isinstance(PartFailedError.unwrap(error), self.record)
        self._record(recorded, generation)
        if exchange.failure_handler is self._inner_errors:
            exchange.failure_handler = None  # so the route's own error handling applies
        if not recorded or self._fallback is None:
            raise error
        exchange.exception = None
        exchange.failure_handler = None
        exchange.properties[H.EXCEPTION_PROPERTY] = error
        exchange.properties[FALLBACK_PROPERTY] = "failure"
        return self._fallback(exchange)

    # -- the state machine -----------------------------------------------------------------
    def _record(self, failure: bool, generation: int) -> None:
        if generation != self._generation:
            return  # the call started in an earlier state
        if self._state is _HALF_OPEN:
            if failure:
                self._to(_OPEN, "a half-open probe failed")
            else:
                self._probe_successes += 1
                if self._probe_successes >= self.half_open_calls:
                    self._to(_CLOSED)
            return
        index = self._next
        if self._calls == self.window:
            self._failures -= self._outcomes[index]
        else:
            self._calls += 1
        self._outcomes[index] = failure
        self._failures += failure
        self._next = index + 1 if index + 1 < self.window else 0
        if self._calls >= self.minimum_calls and self._failures >= self.failure_rate * self._calls:
            self._to(_OPEN, f"{self._failures} of the last {self._calls} calls failed")

    def _to(self, state: CircuitState, reason: str = "") -> None:
        self._state = state
        self._generation += 1
        if state is _OPEN:
            self._opened_at = self.clock.time()
            log.warning(
                "circuit breaker %s opened (%s); probing again in %gs",
                self.name,
                reason,
                self.open_for,
            )
        elif state is _HALF_OPEN:
            self._probes = self._probe_successes = 0
            log.info("circuit breaker %s half-open: probing", self.name)
        else:
            self._outcomes[:] = bytes(self.window)
            self._next = self._calls = self._failures = 0
            log.info("circuit breaker %s closed", self.name)

    def __repr__(self) -> str:
        return f"CircuitBreaker({self.name!r}, state={self.state.value})"


_REGISTRY: weakref.WeakKeyDictionary[Any, dict[str, CircuitBreaker]] = weakref.WeakKeyDictionary()


def register_breaker(context: Any, breaker: CircuitBreaker) -> None:
    """Make ``breaker`` findable by name in ``circuit_breakers(context)`` (the latest compile
    of a route wins, so ``validate()`` before ``start()`` leaves the running ones)."""
    _REGISTRY.setdefault(context, {})[breaker.name] = breaker


def circuit_breakers(context: Any) -> dict[str, CircuitBreaker]:
    """The circuit breakers of a context's routes by name (for health pages and operators)."""
    return dict(_REGISTRY.get(context, {}))
