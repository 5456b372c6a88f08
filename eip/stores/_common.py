"""Helpers shared by the store implementations (private).

The idempotent stores all keep one expiry instant per key, which makes the claim rule the same
everywhere: a key can be claimed when it is absent or its ``expires_at`` has passed.

- claimed:   ``expires_at = now + lease``  (a crashed claimer's key frees itself)
- confirmed: ``expires_at = now + ttl``, or never when ``ttl`` is None

Aggregation state is any object (the aggregator's ``(body, headers)``): the memory store keeps
the object itself, the persistent stores pickle it (:func:`~eip.stores.base.encode_state`).

The aggregation stores keep the caller's timestamps (``created``, ``updated``, ``completed``)
untouched: the aggregator computes completion timeouts from them with *its* clock, so a store
must not rewrite them with another one. The store's own clock only stamps its bookkeeping
(when a key was closed).
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from eip.stores.base import (
    ConcurrentUpdateError,
    OpenGroup,
    StoreError,
    TimeSource,
    decode_state,
    encode_state,
)

__all__ = [
    "check_durations",
    "conflict",
    "copy_group",
    "decode_ids",
    "default_clock",
    "dump_state",
    "encode_ids",
    "load_state",
    "validate_identifier",
]

# Unquoted-safe SQL identifier, optionally schema-qualified; 63 is PostgreSQL's NAMEDATALEN - 1.
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62})?")

_ids_encoder = msgspec.json.Encoder()
_ids_decoder = msgspec.json.Decoder(list[str])


def validate_identifier(name: str, *, what: str = "table name", qualified: bool = True) -> str:
    """Return ``name`` if it is a plain SQL identifier, else raise ValueError.

    Table names cannot be bound as query parameters, so they are interpolated; this strict
    check (letters, digits, underscore, at most one schema dot) is what keeps that safe.
    """
    if not _IDENTIFIER.fullmatch(name) or (not qualified and "." in name):
        raise ValueError(
            f"invalid {what} {name!r}: use letters, digits and underscores"
            + (", optionally 'schema.table'" if qualified else "")
        )
    return name


def check_durations(ttl: float | None, lease: float) -> None:
    """Reject durations that would make every key expire at once (or never be claimable)."""
    if lease <= 0:
        raise ValueError(f"lease must be > 0 seconds, got {lease!r}")
    if ttl is not None and ttl <= 0:
        raise ValueError(f"ttl must be > 0 seconds or None, got {ttl!r}")


def conflict(group: OpenGroup) -> ConcurrentUpdateError:
    """The error for a failed version check of ``group``."""
    expected = "absent" if group.version == 0 else f"at version {group.version}"
    return ConcurrentUpdateError(
        f"aggregation group {group.key!r} changed concurrently (expected it {expected})"
    )


def default_clock(clock: TimeSource | None) -> TimeSource:
    """The given clock, or the system clock."""
    if clock is not None:
        return clock
    from eip.clock import SystemClock

    return SystemClock()


def copy_group(group: OpenGroup, **changes: object) -> OpenGroup:
    """A copy that shares nothing mutable with ``group`` (``input_ids`` is a list)."""
    fields: dict[str, object] = {"input_ids": list(group.input_ids), **changes}
    return msgspec.structs.replace(group, **fields)


def encode_ids(ids: list[str]) -> bytes:
    """``input_ids`` as JSON, for stores without an array type."""
    return _ids_encoder.encode(ids)


def decode_ids(data: bytes | str) -> list[str]:
    try:
        return _ids_decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise StoreError(f"corrupt input_ids in aggregation store: {exc}") from exc


def dump_state(state: Any) -> bytes:
    """Serialize a group's state for a persistent store; an unpicklable body (an open file,
    a lock, a lambda) is a StoreError naming the cause, not a bare pickle error."""
    try:
        return encode_state(state)
    except Exception as exc:
        raise StoreError(f"aggregation state cannot be serialized: {exc!r}") from exc


def load_state(data: bytes) -> Any:
    try:
        return decode_state(bytes(data))
    except Exception as exc:
        raise StoreError(f"corrupt aggregation state in store: {exc!r}") from exc
