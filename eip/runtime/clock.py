"""Moved to :mod:`eip.clock` (clocks sit beside the core: processors and components wait on
them without importing the runtime). This name stays for ``eip.runtime.context`` and code
written against it."""

from eip.clock import Clock, ManualClock, SystemClock

__all__ = ["Clock", "ManualClock", "SystemClock"]
