"""Verdicts for one partition: both sides' pairs of it as dicts, compared key by key.

Two records whose blobs are equal are ``same`` at the cost of a bytes comparison, when both
sides' blobs are in one encoding (both packed by the engine, or both a JSON source's own
text; otherwise every shared key takes the slow path). Only when the blobs differ are both
decoded and compared field by field (:class:`RecordComparer`):
absent and None are the same, the ``ignore`` fields and those outside ``fields`` do not
count, and a field whose values differ is compared again after its normaliser. Field order
and encoding details therefore never make a difference.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, Final

import msgspec

from eip.reconcile.base import DIFFERS, DUPLICATE, ONLY_LEFT, ONLY_RIGHT, SAME, VERDICTS, Repair
from eip.reconcile.normalise import Normaliser, NormaliserSpec, compile_normalisers

__all__ = ["RecordComparer", "Tally", "judge", "unpack_json", "unpack_msgpack"]

Unpack = Callable[[bytes], Any]
#: How a side's blobs decode: packed by the engine, or a JSON source's own text.
unpack_msgpack: Unpack = msgspec.msgpack.Decoder().decode
unpack_json: Unpack = msgspec.json.Decoder().decode
_MISSING: Final[Any] = object()


class RecordComparer:
    """Which fields of two records differ, after normalisation."""

    def __init__(
        self,
        fields: Sequence[str] | None = None,
        ignore: Collection[str] = (),
        normalise: Mapping[str, NormaliserSpec] | None = None,
    ) -> None:
        if isinstance(fields, str) or isinstance(ignore, str):
            raise TypeError("fields and ignore take a list of field names, not one str")
        self.fields = tuple(fields) if fields is not None else None
        self.ignore = frozenset(ignore)
        self.normalisers: dict[str, Normaliser] = compile_normalisers(normalise)
        self._every = self.normalisers.get("*")

    def names(self, left: dict[str, Any], right: dict[str, Any]) -> Sequence[str]:
        if self.fields is not None:
            return self.fields
        ignore = self.ignore
        names = [name for name in left if name not in ignore]
        names.extend(name for name in right if name not in left and name not in ignore)
        return names

    def differences(self, left: dict[str, Any], right: dict[str, Any]) -> list[str]:
        """The names of the fields that differ, in the records' order."""
        found = []
        normalisers, every = self.normalisers, self._every
        for name in self.names(left, right):
            a, b = left.get(name), right.get(name)
            if a == b:
                continue
            normalise = normalisers.get(name, every)
            if normalise is not None and normalise(a) == normalise(b):
                continue
            found.append(name)
        return found


class Tally:
    """Counts, per-field difference counts and bounded samples of one run."""

    def __init__(self, samples: int, repairs: Collection[str]) -> None:
        self.limit = samples
        self.repairs = frozenset(repairs)
        self.counts: dict[str, int] = dict.fromkeys(VERDICTS, 0)
        self.fields: Counter[str] = Counter()
        self.samples: dict[str, list[dict[str, Any]]] = {v: [] for v in VERDICTS}
        self.left_duplicates = 0
        self.right_duplicates = 0

    def sample(self, verdict: str, entry: dict[str, Any]) -> None:
        kept = self.samples[verdict]
        if len(kept) < self.limit:
            kept.append(entry)


def _duplicates(keys: list[Any], table: dict[Any, bytes]) -> Counter[Any]:
    """Keys that occur more than once (``table`` already has one entry per distinct key)."""
    if len(table) == len(keys):
        return Counter()
    return Counter({k: n for k, n in Counter(keys).items() if n > 1})


def judge(
    left_keys: list[Any],
    left_blobs: list[bytes],
    right_keys: list[Any],
    right_blobs: list[bytes],
    comparer: RecordComparer,
    tally: Tally,
    unpack: tuple[Unpack, Unpack] = (unpack_msgpack, unpack_msgpack),
) -> list[Repair]:
    """Give every key of one partition its verdict; returns the repairs to send. ``unpack``
    decodes the left and the right side's blobs."""
    unpack_left, unpack_right = unpack
    comparable = unpack_left is unpack_right  # equal bytes mean equal records in one encoding
    left = dict(zip(left_keys, left_blobs, strict=True))
    right = dict(zip(right_keys, right_blobs, strict=True))
    _judge_duplicates(left_keys, left, right_keys, right, tally)
    repairs: list[Repair] = []
    wanted = tally.repairs
    counts = tally.counts
    same = 0
    want_same = len(tally.samples[SAME]) < tally.limit
    pop = right.pop
    missing = _MISSING
    for key, blob in left.items():
        other = pop(key, missing)
        if other is missing:
            record = unpack_left(blob)
            counts[ONLY_LEFT] += 1
            tally.sample(ONLY_LEFT, {"key": key, "record": record})
            if ONLY_LEFT in wanted:
                repairs.append(Repair(ONLY_LEFT, key, record))
        elif comparable and blob == other:
            same += 1
            if want_same:
                tally.sample(SAME, {"key": key})
                want_same = len(tally.samples[SAME]) < tally.limit
        else:
            _compare(key, unpack_left(blob), unpack_right(other), comparer, tally, repairs)
    counts[SAME] += same
    for key, blob in right.items():
        record = unpack_right(blob)
        counts[ONLY_RIGHT] += 1
        tally.sample(ONLY_RIGHT, {"key": key, "record": record})
        if ONLY_RIGHT in wanted:
            repairs.append(Repair(ONLY_RIGHT, key, record))
    return repairs


def _compare(
    key: Any,
    a: Any,
    b: Any,
    comparer: RecordComparer,
    tally: Tally,
    repairs: list[Repair],
) -> None:
    if not isinstance(a, dict) or not isinstance(b, dict):
        fields = [] if a == b else ["$"]  # a record that is no mapping is one value
    else:
        fields = comparer.differences(a, b)
    if not fields:
        tally.counts[SAME] += 1
        tally.sample(SAME, {"key": key})
        return
    tally.counts[DIFFERS] += 1
    tally.fields.update(fields)
    if len(tally.samples[DIFFERS]) < tally.limit:
        shown = (
            {"$": {"left": a, "right": b}}
            if fields == ["$"]
            else {f: {"left": a.get(f), "right": b.get(f)} for f in fields}
        )
        tally.sample(DIFFERS, {"key": key, "fields": shown})
    if DIFFERS in tally.repairs:
        repairs.append(Repair(DIFFERS, key, a, tuple(fields)))


def _judge_duplicates(
    left_keys: list[Any],
    left: dict[Any, bytes],
    right_keys: list[Any],
    right: dict[Any, bytes],
    tally: Tally,
) -> None:
    """Take keys held twice on a side out of both tables, with the verdict ``duplicate``."""
    on_left = _duplicates(left_keys, left)
    on_right = _duplicates(right_keys, right)
    if not on_left and not on_right:
        return
    tally.left_duplicates += len(on_left)
    tally.right_duplicates += len(on_right)
    for key in on_left.keys() | on_right.keys():
        tally.counts[DUPLICATE] += 1
        tally.sample(
            DUPLICATE,
            {
                "key": key,
                "left_count": on_left.get(key, int(key in left)),
                "right_count": on_right.get(key, int(key in right)),
            },
        )
        left.pop(key, None)
        right.pop(key, None)
