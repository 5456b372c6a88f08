"""Field-level encryption: round trips, rotation, tampering, keys checked at start, the DLC."""

from __future__ import annotations

import base64
import logging
import os

import msgspec
import pytest

from eip import Context, RouteBuilder, dead_letter_channel
from eip import headers as H
from eip.dataformats import json
from eip.errors import RouteDefinitionError
from eip.security import DecryptionError, FieldCipher, KeyRing, crypto, is_token


def new_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


K1, K2 = new_key(), new_key()
RING_1 = f"k1:{K1}"
RING_2 = f"k2:{K2},k1:{K1}"  # rotated: k2 encrypts, k1 still decrypts


class Address(msgspec.Struct):
    street: str
    city: str


class Customer(msgspec.Struct):
    id: str
    email: str | None
    phone: str
    address: Address
    credit_limit: int = 0


def record() -> dict[str, object]:
    return {
        "id": "c-1",
        "email": "ada@example.com",
        "phone": "+49 30 1234567",
        "address": {"street": "Unter den Linden 1", "city": "Berlin"},
        "contacts": [{"phone": "111"}, {"phone": "222"}],
        "credit_limit": 5000,
    }


FIELDS = ["email", "phone", "address.street", "contacts.*.phone", "credit_limit"]


def test_dict_round_trip_keeps_types_and_leaves_the_original_alone() -> None:
    cipher = FieldCipher(FIELDS, RING_1)
    original = record()
    sealed = cipher.encrypt(original)
    assert original == record()  # copied, not changed in place
    assert is_token(sealed["email"])
    assert is_token(sealed["address"]["street"])
    assert all(is_token(c["phone"]) for c in sealed["contacts"])
    assert sealed["address"]["city"] == "Berlin"
    assert "ada@example.com" not in msgspec.json.encode(sealed).decode()
    assert cipher.decrypt(sealed) == record()  # the int comes back an int


def test_struct_round_trip_and_missing_or_none_fields() -> None:
    cipher = FieldCipher(["email", "phone", "address.street", "nickname"], RING_1)
    customer = Customer("c-1", None, "555", Address("Main St 1", "Springfield"))
    sealed = cipher.encrypt(customer)
    assert sealed.email is None  # None stays None
    assert is_token(sealed.phone)
    assert is_token(sealed.address.street)
    assert customer.phone == "555"
    assert cipher.decrypt(sealed) == customer


def test_rotation_new_key_encrypts_old_tokens_still_decrypt() -> None:
    old_token = FieldCipher(["email"], RING_1).encrypt(record())["email"]
    rotated = FieldCipher(["email"], RING_2)
    assert old_token.startswith("eip1.k1.")
    new_token = rotated.encrypt(record())["email"]
    assert new_token.startswith("eip1.k2.")
    assert rotated.decrypt({"email": old_token}) == {"email": "ada@example.com"}
    assert rotated.decrypt({"email": new_token}) == {"email": "ada@example.com"}
    with pytest.raises(DecryptionError, match="unknown key id 'k2'"):
        FieldCipher(["email"], RING_1).decrypt({"email": new_token})


def test_encrypting_twice_does_not_wrap_a_token() -> None:
    cipher = FieldCipher(["email"], RING_1)
    once = cipher.encrypt(record())
    assert cipher.encrypt(once) == once


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"), "authentication failed"),
        (lambda t: t[:20], "truncated token"),
        (lambda t: t.replace("eip1.k1.", "eip1.k9."), "unknown key id 'k9'"),
        (lambda t: "eip1.k1", "truncated token"),
        (lambda t: "plain text", "not an eip token"),
    ],
    ids=["tampered", "truncated", "unknown-key", "no-payload", "plaintext"],
)
def test_bad_tokens_fail_naming_the_field_not_the_secret(damage: object, reason: str) -> None:
    cipher = FieldCipher(["email"], RING_1)
    token = cipher.encrypt(record())["email"]
    with pytest.raises(DecryptionError) as failure:
        cipher.decrypt({"email": damage(token)})  # type: ignore[operator]
    text = str(failure.value)
    assert "'email'" in text
    assert reason in text
    assert "ada@example.com" not in text
    assert K1 not in text


def test_a_token_moved_to_another_field_does_not_decrypt() -> None:
    cipher = FieldCipher(["email", "phone"], RING_1)
    sealed = cipher.encrypt(record())
    swapped = {**sealed, "email": sealed["phone"], "phone": sealed["email"]}
    with pytest.raises(DecryptionError, match="authentication failed"):
        cipher.decrypt(swapped)


@pytest.mark.parametrize(
    ("ring", "message"),
    [
        ("k1:" + base64.b64encode(os.urandom(16)).decode(), "is 16 bytes; AES-256 needs 32"),
        ("k1:not*base64", "neither base64 nor 64 hex digits"),
        (f"k1:{K1},k1:{K2}", "listed twice"),
        (f"{K1},{K2}", "has no key id"),
        ("", "no key given"),
    ],
    ids=["short", "garbage", "twice", "no-ids", "empty"],
)
def test_wrong_keys_fail_at_start_naming_route_and_step(ring: str, message: str) -> None:
    context = Context()

    class R(RouteBuilder):
        def configure(self) -> None:
            self.from_("direct:in").route_id("secure").encrypt_fields(["email"], key=ring)

    context.add_routes(R())
    with pytest.raises(RouteDefinitionError) as failure:
        context.validate()
    text = str(failure.value)
    assert message in text
    assert "secure" in text
    assert "step 1" in text
    assert K1 not in text


async def test_a_route_encrypts_for_the_queue_and_decrypts_at_the_other_side(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("EIP_TEST_FIELD_KEYS", RING_2)
    key = "{{env:EIP_TEST_FIELD_KEYS}}"
    context = Context()

    class R(RouteBuilder):
        def configure(self) -> None:
            (
                self.from_("direct:crm")
                .route_id("crm-side")
                .unmarshal(json(Customer))
                .encrypt_fields(["email", "phone"], key=key)
                .marshal(json())
                .to("mock:wire", "direct:erp")
            )
            (
                self.from_("direct:erp")
                .route_id("erp-side")
                .unmarshal(json(Customer))
                .decrypt_fields(["email", "phone"], key=key)
                .to("mock:erp")
            )

    context.add_routes(R())
    caplog.set_level(logging.DEBUG)
    async with context:
        raw = msgspec.json.encode(Customer("c-7", "bob@example.com", "999", Address("a", "b")))
        await context.template().send("direct:crm", raw)
    wire = context.mock("wire").received_bodies[0]
    assert b"bob@example.com" not in wire
    assert b"eip1.k2." in wire
    erp = context.mock("erp").received_bodies[0]
    assert erp.email == "bob@example.com"
    assert erp.phone == "999"
    assert K2 not in caplog.text
    assert K1 not in caplog.text


async def test_a_tampered_message_goes_to_the_dead_letter_channel() -> None:
    context = Context()

    class R(RouteBuilder):
        def configure(self) -> None:
            self.error_handler(dead_letter_channel("mock:dead"))
            (
                self.from_("direct:erp")
                .route_id("erp-side")
                .decrypt_fields(["email"], key=RING_1)
                .to("mock:erp")
            )

    context.add_routes(R())
    sealed = FieldCipher(["email"], RING_1).encrypt(record())
    sealed["email"] = sealed["email"][:-2] + "xx"
    async with context:
        await context.template().send("direct:erp", sealed)
    assert context.mock("erp").received_bodies == []
    dead = context.mock("dead").received[0]
    assert dead.headers[H.EXCEPTION_TYPE].endswith("DecryptionError")
    assert "email" in dead.headers[H.EXCEPTION_MESSAGE]
    assert "ada@example.com" not in str(dead.headers)


def test_the_crypto_format_encrypts_whole_bodies() -> None:
    fmt = crypto(RING_2)
    token = fmt.marshal({"id": 1, "email": "x@y"})
    assert token.startswith(b"eip1.k2.")
    assert msgspec.json.decode(fmt.unmarshal(token)) == {"id": 1, "email": "x@y"}
    assert fmt.unmarshal(fmt.marshal(b"\x00raw")) == b"\x00raw"
    assert crypto(RING_1).unmarshal(crypto(RING_1).marshal("text")) == b"text"
    with pytest.raises(DecryptionError, match="authentication failed"):
        fmt.unmarshal(token[:-3] + b"AAA")
    with pytest.raises(DecryptionError, match="not an eip token"):
        fmt.unmarshal(b"\xff\xfe")


def test_key_ring_repr_hides_the_keys() -> None:
    ring = KeyRing.parse(RING_2)
    assert ring.current == "k2"
    assert K1 not in repr(ring)
    assert K2 not in repr(ring)
    assert KeyRing.parse("a" * 64).keys == {"k1": bytes.fromhex("a" * 64)}
