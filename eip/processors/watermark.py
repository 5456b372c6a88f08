"""The watermark of a ``poll_pages`` run: which store, which name, and where the next value
comes from.

::

    watermark("crm-customers", max_of("updated_at"), initial="1970-01-01T00:00:00Z")
    watermark("crm-events", last_of("id"))                  # "events after this id"
    watermark("crm-delta", response_value("$.delta_token"))  # a sync token from the server

- :func:`max_of` takes the highest value of a record field over the run. Values are ordered
  as timestamps when they read as ISO 8601 (an offset is respected, so ``...+08:00`` and
  ``...Z`` compare as instants; one without an offset counts as UTC), else as numbers, else
  as text; pass ``key=`` to order otherwise. It never moves the watermark back.
- :func:`last_of` takes the field of the run's last record, in the order the pages gave them
  (an id cursor: ``?starting_after={watermark}``).
- :func:`response_value` takes a value from the body of the last page that has one (a delta
  or sync token that the server hands out for the next run).

A ``datetime`` (a typed record's field) is stored as its ISO 8601 string. The default store
is :class:`~eip.stores.SqliteWatermarkStore` on ``state/watermarks.db``; give a
:class:`~eip.stores.PostgresWatermarkStore` to share the watermark between instances.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import msgspec

from eip.expressions import path_getter
from eip.processors.pagination import json_path
from eip.stores.watermark import WatermarkStore

__all__ = [
    "Advance",
    "LastOf",
    "MaxOf",
    "ResponseValue",
    "Tracker",
    "Watermark",
    "last_of",
    "max_of",
    "natural_order",
    "response_value",
    "watermark",
]

DEFAULT_PATH = "state/watermarks.db"


class Tracker(Protocol):
    """What one run saw, for its next watermark."""

    def record(self, record: Any) -> None: ...

    def page(self, data: Any) -> None: ...

    def result(self, previous: Any) -> Any:
        """The new value, or None to leave the watermark as it is."""
        ...


class Advance(Protocol):
    """Where a watermark's next value comes from (a :func:`max_of`, ...)."""

    def tracker(self) -> Tracker: ...

    def merge(self, stored: Any, mine: Any) -> Any:
        """After a lost compare-and-set: the value to write instead, or None to keep the
        stored one."""
        ...

    def describe(self) -> str: ...


def natural_order(value: Any) -> tuple[int, Any]:
    """The default order of :func:`max_of`: timestamps (ISO 8601 text or datetimes, by
    instant), then numbers, then other text."""
    if isinstance(value, datetime):
        return 0, value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return 2, value
        return 0, parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return 1, value
    return 2, str(value)


def _plain(value: Any, field: str) -> Any:
    """A record's value as it will be stored (a datetime becomes ISO 8601 text)."""
    if value is None or isinstance(value, str | int | float):
        return value
    try:
        return msgspec.to_builtins(value)
    except TypeError as exc:
        raise ValueError(f"watermark field {field!r}: {exc}") from exc


@dataclass(frozen=True, slots=True)
class MaxOf:
    field: str
    key: Callable[[Any], Any]
    getter: Callable[[Any], Any]

    def tracker(self) -> Tracker:
        return _Highest(self)

    def merge(self, stored: Any, mine: Any) -> Any:
        if stored is None or self.key(mine) > self.key(stored):
            return mine
        return None

    def describe(self) -> str:
        return f"max_of({self.field!r})"


class _Highest:
    __slots__ = ("best", "best_key", "spec")

    def __init__(self, spec: MaxOf) -> None:
        self.spec = spec
        self.best: Any = None
        self.best_key: Any = None

    def record(self, record: Any) -> None:
        value = _plain(self.spec.getter(record), self.spec.field)
        if value is None:
            return
        key = self.spec.key(value)
        if self.best is None or key > self.best_key:
            self.best, self.best_key = value, key

    def page(self, data: Any) -> None:
        return None

    def result(self, previous: Any) -> Any:
        if self.best is None:
            return None
        if previous is not None and self.spec.key(previous) >= self.best_key:
            return None  # never back
        return self.best


@dataclass(frozen=True, slots=True)
class LastOf:
    field: str
    getter: Callable[[Any], Any]

    def tracker(self) -> Tracker:
        return _Last(self.getter, self.field, by_page=False)

    def merge(self, stored: Any, mine: Any) -> Any:
        return None  # opaque: the other run's value stands (at worst a re-fetch)

    def describe(self) -> str:
        return f"last_of({self.field!r})"


@dataclass(frozen=True, slots=True)
class ResponseValue:
    path: str
    getter: Callable[[Any], Any]

    def tracker(self) -> Tracker:
        return _Last(self.getter, self.path, by_page=True)

    def merge(self, stored: Any, mine: Any) -> Any:
        return None

    def describe(self) -> str:
        return f"response_value({self.path!r})"


class _Last:
    __slots__ = ("by_page", "getter", "last", "what")

    def __init__(self, getter: Callable[[Any], Any], what: str, *, by_page: bool) -> None:
        self.getter = getter
        self.what = what
        self.by_page = by_page
        self.last: Any = None

    def record(self, record: Any) -> None:
        if not self.by_page:
            self._see(self.getter(record))

    def page(self, data: Any) -> None:
        if self.by_page:
            self._see(self.getter(data))

    def _see(self, value: Any) -> None:
        if value is not None and value != "":
            self.last = _plain(value, self.what)

    def result(self, previous: Any) -> Any:
        return None if self.last is None or self.last == previous else self.last


def max_of(field: str, *, key: Callable[[Any], Any] | None = None) -> MaxOf:
    """The highest value of the record field ``field`` (a dotted path) over the run."""
    return MaxOf(field, key or natural_order, path_getter(field))


def last_of(field: str) -> LastOf:
    """The record field ``field`` (a dotted path) of the run's last record."""
    return LastOf(field, path_getter(field))


def response_value(path: str) -> ResponseValue:
    """The value at the JSON path ``path`` of the last page body that has one."""
    return ResponseValue(path, json_path(path))


@dataclass(frozen=True)
class Watermark:
    """A named watermark in a store; build it with :func:`watermark`."""

    name: str
    advance: Advance
    store: WatermarkStore = field(repr=False)
    initial: Any = None
    advance_on_bound: bool = True

    def describe(self) -> str:
        return f"watermark({self.name!r}, {self.advance.describe()})"


def watermark(
    name: str,
    advance: Advance,
    *,
    store: WatermarkStore | None = None,
    initial: Any = None,
    advance_on_bound: bool = True,
) -> Watermark:
    """The watermark ``name`` in ``store`` (default: SQLite, ``state/watermarks.db``), its next
    value from ``advance``, and ``initial`` for the first run (None: ``{watermark}`` is empty).

    ``advance_on_bound``: a run that stopped at ``max_pages`` or ``max_duration`` moves the
    watermark to what it delivered, so a backlog bigger than one run is worked off run by run.
    That needs the API to give records in watermark order (oldest first, as an
    ``updated_since`` query sorted by ``updated_at`` does); set it to False for one that does
    not, and such a run leaves the watermark alone.
    """
    if not name:
        raise ValueError("a watermark needs a name")
    if store is None:
        from eip.stores.watermark_sqlite import SqliteWatermarkStore

        store = SqliteWatermarkStore(DEFAULT_PATH)
    return Watermark(name, advance, store, initial, advance_on_bound)
