"""The ``crypto`` data format: a whole body encrypted into one token (Camel's crypto format).

``marshal(crypto(key))`` turns the body into the token's ASCII bytes (bytes are taken as they
are, text as UTF-8, anything else as JSON first); ``unmarshal(crypto(key))`` gives the
plaintext bytes back, for the next ``unmarshal(json(...))``. The token is bound to the
format's ``name`` (``body`` unless given), as field tokens are bound to their field's path.
"""

from __future__ import annotations

from typing import Any

import msgspec

from eip.errors import MarshalError
from eip.security.keys import KeyRing
from eip.security.tokens import TokenCipher

__all__ = ["CryptoFormat", "crypto"]


class CryptoFormat:
    """AES-256-GCM over a whole body; see :mod:`eip.security.tokens` for the token."""

    name = "crypto"

    def __init__(self, key: str | bytes | KeyRing, purpose: str = "body") -> None:
        self._cipher = TokenCipher(KeyRing.of(key, "crypto key"))
        self._purpose = purpose

    def marshal(self, body: Any) -> bytes:
        if isinstance(body, bytes | bytearray | memoryview):
            plain = bytes(body)
        elif isinstance(body, str):
            plain = body.encode("utf-8")
        else:
            try:
                plain = msgspec.json.encode(body)
            except (TypeError, msgspec.EncodeError) as exc:
                raise MarshalError("crypto", f"cannot write the body as JSON: {exc}") from None
        return self._cipher.seal(plain, self._purpose).encode("ascii")

    def unmarshal(self, data: Any) -> bytes:
        return self._cipher.open(data, self._purpose)


def crypto(key: str | bytes | KeyRing, purpose: str = "body") -> CryptoFormat:
    """Encrypt whole bodies with a key ring (``id:key,...``, newest first)."""
    return CryptoFormat(key, purpose)
