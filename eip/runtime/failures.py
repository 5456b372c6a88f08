"""Moved to :mod:`eip.failures` (the failure history sits beside the core: error handling,
split and multicast record into it without importing the runtime). This name stays for the
context, the control API and code written against it."""

from eip.failures import (
    BODY_EXCERPT,
    RECORD_PROPERTY,
    FailureHistory,
    FailureRecord,
    hand_over_record,
    locate,
)

__all__ = [
    "BODY_EXCERPT",
    "RECORD_PROPERTY",
    "FailureHistory",
    "FailureRecord",
    "hand_over_record",
    "locate",
]
