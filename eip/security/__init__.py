"""Data security in routes: field-level encryption, whole-body encryption, masking.

- :class:`KeyRing`: keys with ids, newest first, so keys rotate (:mod:`eip.security.keys`);
- :class:`FieldCipher` and the DSL steps ``encrypt_fields``/``decrypt_fields``: AES-256-GCM per
  field, as self-describing tokens (:mod:`eip.security.tokens`);
- :func:`crypto`: a data format that encrypts whole bodies;
- :func:`mask`, :func:`hash_with_salt`, :func:`redact`: converters for :mod:`eip.mapping`.
"""

from eip.security.crypto_format import CryptoFormat, crypto
from eip.security.fields import FieldCipher
from eip.security.keys import KeyRing
from eip.security.masking import hash_with_salt, mask, redact
from eip.security.tokens import DecryptionError, TokenCipher, is_token

__all__ = [
    "CryptoFormat",
    "DecryptionError",
    "FieldCipher",
    "KeyRing",
    "TokenCipher",
    "crypto",
    "hash_with_salt",
    "is_token",
    "mask",
    "redact",
]
