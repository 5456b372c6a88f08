"""Masking and pseudonymisation: converters for :mod:`eip.mapping` and for logs and exports.

- :func:`mask` keeps the last (or first) few characters and hides the rest:
  ``"4111111111111111" -> "************1111"``.
- :func:`hash_with_salt` is a keyed HMAC-SHA-256: the same input and salt always give the
  same pseudonym, so two exports can still be joined on it, while without the salt nobody can
  test a guess (a plain hash of an email address can be reversed by hashing candidates).
- :func:`redact` replaces the value with a fixed marker.

Each returns a converter (a function of one value), used as ``field(..., convert=mask())``;
None stays None, so optional fields need no special case.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import Any

from eip.errors import RouteDefinitionError

__all__ = ["hash_with_salt", "mask", "redact"]

Converter = Callable[[Any], Any]


def mask(
    keep_last: int = 4, *, keep_first: int = 0, char: str = "*", min_masked: int = 4
) -> Converter:
    """Hide all but ``keep_first`` leading and ``keep_last`` trailing characters. A value too
    short to keep that much and still hide ``min_masked`` characters is masked whole, so a
    short secret is never shown nearly in full."""
    if keep_last < 0 or keep_first < 0 or min_masked < 0:
        raise RouteDefinitionError("mask(): keep_last, keep_first and min_masked must be >= 0")
    if len(char) != 1:
        raise RouteDefinitionError(f"mask(): char must be one character, got {char!r}")

    def masked(value: Any) -> Any:
        if value is None:
            return None
        text = str(value)
        hidden = len(text) - keep_first - keep_last
        if hidden < max(min_masked, 1):
            return char * len(text)
        return text[:keep_first] + char * hidden + (text[-keep_last:] if keep_last else "")

    return masked


def hash_with_salt(salt: str | bytes, *, length: int = 64, prefix: str = "") -> Converter:
    """A stable pseudonym: HMAC-SHA-256 of the value's text under ``salt``, as hex (cut to
    ``length`` characters, at least 16). Keep the salt secret (a placeholder such as
    ``{{env:PSEUDONYM_SALT}}`` resolved by the config), and the same for every export that
    must join."""
    key = salt.encode() if isinstance(salt, str) else salt
    if len(key) < 16:
        raise RouteDefinitionError("hash_with_salt(): the salt must be at least 16 bytes")
    if not 16 <= length <= 64:
        raise RouteDefinitionError("hash_with_salt(): length must be 16..64 hex characters")

    def pseudonym(value: Any) -> Any:
        if value is None:
            return None
        digest = hmac.new(key, str(value).encode(), hashlib.sha256).hexdigest()
        return prefix + digest[:length]

    return pseudonym


def redact(marker: str = "[REDACTED]") -> Converter:
    """Replace the value with ``marker`` (None stays None)."""

    def redacted(value: Any) -> Any:
        return None if value is None else marker

    return redacted
