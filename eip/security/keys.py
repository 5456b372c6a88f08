"""Encryption keys with ids, so keys rotate: encrypt with the newest, decrypt with any listed.

A key ring is written as text, newest first: ``k2:<key>,k1:<key>``, each key 32 bytes (AES-256)
as base64 (standard or URL-safe, padding optional) or 64 hex digits. Put it in the environment
or a file and refer to it with a placeholder (``key="{{env:CRM_FIELD_KEYS}}"`` or
``{{file:/run/secrets/field-keys}}``): the placeholder's value is a secret, so it is scrubbed
from every log line, error and API answer. Everything wrong with a ring fails when the route
compiles (``eip check`` and start), naming the key id, never the key.

To rotate: put the new key first (``k3:...,k2:...``) and reload; new tokens carry ``k3`` and
old ones still decrypt with ``k2``. Drop ``k2`` only when nothing encrypted with it remains.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from eip.errors import RouteDefinitionError

__all__ = ["KEY_BYTES", "KeyRing"]

KEY_BYTES = 32
_KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")


@dataclass(frozen=True, slots=True)
class KeyRing:
    """Keys by id; ``current`` encrypts, all of them decrypt."""

    current: str
    keys: dict[str, bytes]

    def __repr__(self) -> str:  # never the key material
        return f"KeyRing(current={self.current!r}, ids={list(self.keys)})"

    @classmethod
    def parse(cls, text: str, where: str = "key") -> KeyRing:
        """A ring from ``id:key,id:key`` (newest first); a single key with no id is ``k1``."""
        entries = [part.strip() for part in text.split(",") if part.strip()]
        if not entries:
            raise RouteDefinitionError(f"{where}: no key given (expected 'id:key,...')")
        keys: dict[str, bytes] = {}
        for number, entry in enumerate(entries, 1):
            key_id, sep, material = entry.partition(":")
            if not sep:
                if len(entries) > 1:
                    raise RouteDefinitionError(
                        f"{where}: entry {number} has no key id (write 'id:key' for each key)"
                    )
                key_id, material = "k1", entry
            key_id = key_id.strip()
            if not _KEY_ID.fullmatch(key_id):
                raise RouteDefinitionError(
                    f"{where}: key id {key_id!r} must be 1-32 letters, digits, '_' or '-'"
                )
            if key_id in keys:
                raise RouteDefinitionError(f"{where}: key id {key_id!r} is listed twice")
            keys[key_id] = _decode_key(material.strip(), key_id, where)
        return cls(current=next(iter(keys)), keys=keys)

    @classmethod
    def of(cls, value: str | bytes | KeyRing, where: str = "key") -> KeyRing:
        """A ring from a ring, its text, or one raw 32-byte key (id ``k1``)."""
        if isinstance(value, KeyRing):
            return value
        if isinstance(value, bytes):
            if len(value) != KEY_BYTES:
                raise RouteDefinitionError(
                    f"{where}: a raw key must be {KEY_BYTES} bytes, got {len(value)}"
                )
            return cls(current="k1", keys={"k1": value})
        return cls.parse(value, where)


def _decode_key(material: str, key_id: str, where: str) -> bytes:
    if re.fullmatch(r"[0-9a-fA-F]{64}", material):
        return bytes.fromhex(material)
    try:
        padded = material + "=" * (-len(material) % 4)
        raw = base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        raise RouteDefinitionError(
            f"{where}: key {key_id!r} is neither base64 nor 64 hex digits"
        ) from None
    if len(raw) != KEY_BYTES:
        raise RouteDefinitionError(
            f"{where}: key {key_id!r} is {len(raw)} bytes; AES-256 needs {KEY_BYTES} "
            '(generate one with: python -c "import os,base64;'
            'print(base64.b64encode(os.urandom(32)).decode())")'
        )
    return raw
