"""Throttler: at most ``rate`` exchanges per ``per`` seconds, globally or per key.

Decisions:

- A sliding window, as Camel's throttler: an exchange takes a permit, and the permit returns
  ``per`` seconds after it was taken. The times of the last ``rate`` permits are kept in a
  ring (a ``deque`` with ``maxlen=rate``), so the next free permit is the oldest one plus
  ``per``: O(1) per exchange, and with ``rate=2, per=1`` five exchanges arriving together go
  at t=0, 0, 1, 1, 2.
- Delaying is the default: the permit is reserved at arrival (so exchanges keep their order)
  and the step returns ``clock.sleep(delay)``: no task per message, and an exchange that need
  not wait stays a plain sync call. ``reject=True`` raises :class:`ThrottledError` instead and
  takes no permit.
- With a ``key`` expression each key has its own window. At most ``max_keys`` windows are kept;
  the least recently used key is forgotten first (its limit starts afresh), which bounds
  memory when keys are unbounded (customer ids, say).
- Time is the context clock, so tests run on the manual clock.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from eip._callables import is_async_callable
from eip.clock import Clock
from eip.errors import ThrottledError
from eip.message import Exchange
from eip.processors.base import unwrap

__all__ = ["Throttle", "ThrottledError"]


class Throttle:
    """One throttle step; ``process`` is the step."""

    __slots__ = ("_global", "_key", "_windows", "clock", "max_keys", "per", "rate", "reject")

    def __init__(
        self,
        rate: int,
        per: float,
        clock: Clock,
        *,
        key: Callable[[Exchange], Any] | None = None,
        reject: bool = False,
        max_keys: int = 10_000,
    ) -> None:
        if not isinstance(rate, int) or rate < 1:
            raise ValueError(f"rate must be an int >= 1, got {rate!r}")
        if per <= 0:
            raise ValueError(f"per must be > 0 seconds, got {per!r}")
        if max_keys < 1:
            raise ValueError(f"max_keys must be >= 1, got {max_keys!r}")
        if key is not None and (not callable(key) or is_async_callable(key)):
            raise TypeError(f"key must be a sync expression of the exchange, got {key!r}")
        self.rate = rate
        self.per = per
        self.clock = clock
        self.reject = reject
        self.max_keys = max_keys
        self._key = unwrap(key) if key is not None else None
        self._global: deque[float] = deque(maxlen=rate)
        self._windows: dict[Any, deque[float]] = {}

    def process(self, exchange: Exchange) -> Any:
        key_of = self._key
        if key_of is None:
            key = None
            window = self._global
        else:
            key = key_of(exchange)
            window = self._window(key)
        now = self.clock.time()
        if len(window) == self.rate:
            free = window[0] + self.per
            if free > now:
                if self.reject:
                    raise ThrottledError(
                        f"throttled: more than {self.rate} exchanges per {self.per}s"
                        + (f" for key {key!r}" if key_of is not None else "")
                    )
                window.append(free)
                return self.clock.sleep(free - now)
        window.append(now)
        return None

    def _window(self, key: Any) -> deque[float]:
        windows = self._windows
        window = windows.pop(key, None)
        if window is None:
            window = deque(maxlen=self.rate)
            if len(windows) >= self.max_keys:
                del windows[next(iter(windows))]  # least recently used
        windows[key] = window
        return window

    @property
    def keys(self) -> int:
        """How many per-key windows are held."""
        return len(self._windows)
