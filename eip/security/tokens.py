"""The ciphertext token: compact, self-describing, bound to where it belongs.

A token is ASCII text, so it fits in a JSON string, a CSV cell, an XML element and an AMQP
header: ``eip1.<key id>.<base64url(nonce ‖ ciphertext ‖ tag)>``.

- ``eip1`` names the format, so a later one can be told apart.
- The key id says which key of the ring decrypts it (rotation).
- AES-256-GCM with a unique 96-bit nonce per value (a random 64-bit field per cipher and a
  counter, NIST SP 800-38D's deterministic construction): the tag authenticates the ciphertext,
  and the *associated data* is the format, the key id and the field's path (``email``), so a
  token copied into another field, or given another key id, fails to decrypt instead of
  passing as that field's value.

The plaintext is the value as JSON (msgspec), so a number decrypts to the same number and a
string to the same string. Each value costs 28 bytes plus base64 (a 20-character email
becomes a ~75-character token).
"""

from __future__ import annotations

import base64
import binascii
import itertools
import os
from typing import Any

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from eip.errors import ExchangeError
from eip.security.keys import KeyRing

__all__ = ["PREFIX", "DecryptionError", "TokenCipher", "is_token"]

PREFIX = "eip1."
_NONCE = 12
_TAG = 16
_COUNTER_LIMIT = 2**32
_encode = msgspec.json.encode
_decode = msgspec.json.decode


class DecryptionError(ExchangeError):
    """A token that cannot be decrypted: tampered, truncated, not a token, or encrypted with a
    key that is not in the ring. The message names the field and the reason, never the
    plaintext or key material."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"cannot decrypt field {field!r}: {reason}")
        self.field = field
        self.reason = reason


def is_token(value: object) -> bool:
    """Whether ``value`` looks like an eip token (for steps that skip plaintext)."""
    return isinstance(value, str) and value.startswith(PREFIX)


class TokenCipher:
    """Encrypts values to tokens with the ring's current key; decrypts with any of its keys."""

    __slots__ = ("_ciphers", "_counter", "_current", "_current_id", "_header", "_prefix")

    def __init__(self, ring: KeyRing) -> None:
        self._ciphers = {key_id: AESGCM(key) for key_id, key in ring.keys.items()}
        self._current_id = ring.current
        self._current = self._ciphers[ring.current]
        self._header = f"{PREFIX}{ring.current}."
        self._new_prefix()

    def _new_prefix(self) -> None:
        # Nonces by NIST SP 800-38D 8.2.1: a random 64-bit field for this cipher object and a
        # 32-bit counter, so no nonce repeats under a key (two objects colliding on 64 random
        # bits is negligible) without a system call per value; renewed before the counter wraps.
        self._prefix = os.urandom(8)
        self._counter = itertools.count()

    def _nonce(self) -> bytes:
        number = next(self._counter)
        if number >= _COUNTER_LIMIT:
            self._new_prefix()
            number = next(self._counter)
        return self._prefix + number.to_bytes(4, "big")

    def encrypt(self, value: Any, field: str) -> str:
        """The token of ``value`` (as JSON) for ``field``."""
        return self.seal(_encode(value), field)

    def decrypt(self, token: Any, field: str) -> Any:
        """The value a token of ``field`` holds."""
        return _decode(self.open(token, field))

    def seal(self, plain: bytes, field: str) -> str:
        """The token of raw bytes (the ``crypto`` data format's whole bodies)."""
        nonce = self._nonce()
        header = self._header
        sealed = self._current.encrypt(nonce, plain, (header + field).encode())
        return header + base64.urlsafe_b64encode(nonce + sealed).rstrip(b"=").decode("ascii")

    def open(self, token: Any, field: str) -> bytes:
        """The raw bytes of a token; raises DecryptionError naming ``field``."""
        if isinstance(token, bytes | bytearray | memoryview):
            try:
                token = bytes(token).decode("ascii")
            except UnicodeDecodeError:
                raise DecryptionError(field, "not an eip token (binary data)") from None
        if not isinstance(token, str) or not token.startswith(PREFIX):
            raise DecryptionError(field, f"not an eip token (a {type(token).__name__})")
        key_id, sep, payload = token[len(PREFIX) :].partition(".")
        if not sep:
            raise DecryptionError(field, "truncated token (no key id)")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            known = ", ".join(self._ciphers)
            raise DecryptionError(field, f"unknown key id {key_id!r} (keys: {known})")
        try:
            raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        except (binascii.Error, ValueError):
            raise DecryptionError(field, "the token is not valid base64url") from None
        if len(raw) < _NONCE + _TAG:
            raise DecryptionError(field, "truncated token")
        header = f"{PREFIX}{key_id}."
        try:
            plain = cipher.decrypt(raw[:_NONCE], raw[_NONCE:], (header + field).encode())
        except InvalidTag:
            raise DecryptionError(
                field, "authentication failed (tampered, truncated, or from another field)"
            ) from None
        return plain
