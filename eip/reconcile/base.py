"""What the reconcile modules share: the verdicts, the error, the repair and its headers.

A reconcile compares two sources of records by key; each key gets one verdict:

- ``same``: both sources have it and the records agree (after normalisation);
- ``differs``: both have it and at least one compared field disagrees;
- ``only_left`` / ``only_right``: one source lacks the key;
- ``duplicate``: a source holds the key more than once. Which of its records to compare would
  be a guess, so the key is reported, counted as not consistent, and never repaired.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

from eip.errors import ExchangeError

__all__ = [
    "DIFFERS",
    "DUPLICATE",
    "ONLY_LEFT",
    "ONLY_RIGHT",
    "RECONCILE_FIELDS",
    "RECONCILE_KEY",
    "RECONCILE_NAME",
    "RECONCILE_VERDICT",
    "REPAIRABLE",
    "SAME",
    "VERDICTS",
    "ReconcileError",
    "Repair",
    "Verdict",
]

Verdict = Literal["same", "differs", "only_left", "only_right", "duplicate"]

SAME: Final = "same"
DIFFERS: Final = "differs"
ONLY_LEFT: Final = "only_left"
ONLY_RIGHT: Final = "only_right"
DUPLICATE: Final = "duplicate"
#: Every verdict, in report order.
VERDICTS: Final[tuple[Verdict, ...]] = (SAME, DIFFERS, ONLY_LEFT, ONLY_RIGHT, DUPLICATE)
#: The verdicts a repair can be sent for (``same`` needs none, ``duplicate`` is ambiguous).
REPAIRABLE: Final[frozenset[str]] = frozenset({DIFFERS, ONLY_LEFT, ONLY_RIGHT})

# Headers of a repair message.
#: The verdict the repair is for: ``differs``, ``only_left`` or ``only_right``.
RECONCILE_VERDICT: Final = "eip.reconcile.verdict"
#: The record's key (as the sources have it: a str, an int, or a tuple for a composite key).
RECONCILE_KEY: Final = "eip.reconcile.key"
#: The fields that differ (a list; empty for a missing record).
RECONCILE_FIELDS: Final = "eip.reconcile.fields"
#: The reconcile's name (the route id unless given).
RECONCILE_NAME: Final = "eip.reconcile.name"


class ReconcileError(ExchangeError):
    """A reconcile could not read or key its records: names the side, the source and where
    (a file's line, an HTTP page, a record's position)."""


@dataclass(frozen=True, slots=True)
class Repair:
    """One repair to send: the record of the side that is right (the left one for
    ``differs`` and ``only_left``, the right one for ``only_right``), as a dict."""

    verdict: str
    key: Any
    record: dict[str, Any]
    fields: tuple[str, ...] = ()
