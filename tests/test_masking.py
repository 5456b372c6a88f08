"""Masking and pseudonymisation converters (eip.mapping), alone and in a field mapper."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from eip.errors import RouteDefinitionError
from eip.mapping import FieldMapper, field, hash_with_salt, mask, redact

SALT = "a-salt-of-at-least-16-bytes"


def test_mask_keeps_the_last_characters() -> None:
    assert mask(keep_last=4)("4111111111111111") == "************1111"
    assert mask(keep_last=2, keep_first=1, char="#")("+4930123456") == "+########56"
    assert mask()(None) is None


def test_a_value_too_short_is_masked_whole() -> None:
    assert mask(keep_last=4)("12345") == "*****"  # would show 4 of 5
    assert mask(keep_last=4)("") == ""


def test_hash_with_salt_is_a_stable_keyed_pseudonym() -> None:
    pseudonym = hash_with_salt(SALT)
    first, again = pseudonym("ada@example.com"), pseudonym("ada@example.com")
    assert first == again  # stable: two exports join on it
    assert first == hmac.new(SALT.encode(), b"ada@example.com", hashlib.sha256).hexdigest()
    assert first != hashlib.sha256(b"ada@example.com").hexdigest()  # not a plain hash
    assert hash_with_salt("another-salt-16-bytes!")("ada@example.com") != first
    assert hash_with_salt(SALT, length=16, prefix="p_")("x").startswith("p_")
    assert len(hash_with_salt(SALT, length=16)("x")) == 16
    assert pseudonym(None) is None


def test_redact() -> None:
    assert redact()("secret") == "[REDACTED]"
    assert redact("***")(42) == "***"
    assert redact()(None) is None


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: hash_with_salt("short"), "at least 16 bytes"),
        (lambda: hash_with_salt(SALT, length=8), "16..64"),
        (lambda: mask(keep_last=-1), ">= 0"),
        (lambda: mask(char="**"), "one character"),
    ],
)
def test_bad_options_fail_when_the_route_is_defined(make: object, message: str) -> None:
    with pytest.raises(RouteDefinitionError, match=message):
        make()  # type: ignore[operator]


def test_in_a_field_mapper_for_an_export() -> None:
    export = FieldMapper(
        field("customer", source="id"),
        field("email_id", source="email", convert=hash_with_salt(SALT, length=20)),
        field("card", source="card", convert=mask(keep_last=4)),
        field("notes", source="notes", convert=redact()),
    )
    row = export(
        {"id": "c-1", "email": "ada@example.com", "card": "4111111111111111", "notes": "x"}
    )
    assert row == {
        "customer": "c-1",
        "email_id": hash_with_salt(SALT, length=20)("ada@example.com"),
        "card": "************1111",
        "notes": "[REDACTED]",
    }
