"""The generated fast path of ``FieldCipher.encrypt`` against the token format and the slow path:
tokens read by the spec with AESGCM itself, unique nonces, and every case that must fall back."""

from __future__ import annotations

import base64
import os

import msgspec
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from eip import Context, RouteBuilder
from eip.security import FieldCipher, KeyRing, is_token, tokens
from eip.security.tokens import nonce_stream

KEY = os.urandom(32)
RING = KeyRing(current="k7", keys={"k7": KEY})


class Person(msgspec.Struct):
    id: int
    email: str | None
    phone: object
    city: str = "Berlin"


class Partial(msgspec.Struct):
    email: str


class Frozen(msgspec.Struct, frozen=True):
    email: str
    phone: str


class Marked(str):
    """A str subclass: a token held in one is still a token."""


def by_the_spec(token: str, field: str) -> object:
    """Decrypt as the token format says, with nothing of eip: ``eip1.<id>.<b64url(nonce|ct)>``,
    the associated data ``eip1.<id>.<field>``."""
    version, key_id, payload = token.split(".")
    assert (version, key_id) == ("eip1", "k7")
    assert "=" not in payload
    raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    plain = AESGCM(KEY).decrypt(raw[:12], raw[12:], f"eip1.k7.{field}".encode())
    return msgspec.json.decode(plain)


def test_the_generated_path_makes_tokens_of_the_documented_format() -> None:
    cipher = FieldCipher(["email", "phone"], RING)
    people = [Person(i, f"p{i}@example.com", i * 7 if i % 2 else f"+49 {i}") for i in range(50)]
    sealed = [cipher.encrypt(p) for p in people]  # the first teaches the type to the fast path
    assert cipher.encrypt.__name__ == "encrypt"  # the generated function, not a method
    for person, out in zip(people, sealed, strict=True):
        assert type(out) is Person
        assert out.id == person.id
        assert out.city == "Berlin"
        assert by_the_spec(out.email, "email") == person.email
        assert by_the_spec(out.phone, "phone") == person.phone  # an int stays an int
        assert cipher.decrypt(out) == person
    nonces = {
        base64.urlsafe_b64decode(t.split(".")[2] + "==")[:12]
        for s in sealed
        for t in (s.email, s.phone)
    }
    assert len(nonces) == 100


def test_tokens_of_every_length_round_trip_through_both_paths() -> None:
    cipher = FieldCipher(["email", "phone"], RING)
    cipher.encrypt(Person(0, "", ""))  # from now on, Persons take the fast path
    for n in range(40):  # every padding case of base64
        person = Person(n, "x" * n, "y" * (n + 1))
        slow = cipher.encrypt({"email": person.email, "phone": person.phone})
        fast = cipher.encrypt(person)
        for sealed in (slow["email"], fast.email):
            assert by_the_spec(sealed, "email") == "x" * n
        assert by_the_spec(fast.phone, "phone") == "y" * (n + 1)


def test_none_tokens_and_untouched_bodies_as_the_slow_path_does() -> None:
    cipher = FieldCipher(["email", "phone"], RING)
    cipher.encrypt(Person(0, "a@b", "1"))
    nothing = Person(1, None, None)
    assert cipher.encrypt(nothing) is nothing  # nothing to seal: the same object back
    once = cipher.encrypt(Person(2, "c@d", None))
    assert is_token(once.email)
    assert once.phone is None
    assert cipher.encrypt(once) is once  # a token is not wrapped again
    marked = Person(3, Marked(once.email), "5")
    again = cipher.encrypt(marked)
    assert again.email is marked.email  # a token in a str subclass is still a token
    assert is_token(again.phone)
    near = Person(4, "eip1", "eip1/x")  # sort next to the prefix, but are not tokens
    assert by_the_spec(cipher.encrypt(near).email, "email") == "eip1"
    assert by_the_spec(cipher.encrypt(near).phone, "phone") == "eip1/x"


def test_types_without_every_field_and_frozen_structs() -> None:
    cipher = FieldCipher(["email", "phone"], RING)
    for _ in range(2):  # the second time, after the fast path has seen the type
        partial = cipher.encrypt(Partial("a@b"))
        assert by_the_spec(partial.email, "email") == "a@b"
        frozen = cipher.encrypt(Frozen("e@f", "9"))
        assert by_the_spec(frozen.phone, "phone") == "9"
        assert cipher.decrypt(frozen) == Frozen("e@f", "9")
    assert Frozen in cipher._complete
    assert Partial not in cipher._complete


@pytest.mark.parametrize("fields", [["e-mail", "phone"], ["email", "class"]])
def test_field_names_that_cannot_be_generated_still_work(fields: list[str]) -> None:
    cipher = FieldCipher(fields, RING)
    body = dict.fromkeys(fields, "v")
    sealed = cipher.encrypt(body)
    assert all(by_the_spec(sealed[name], name) == "v" for name in fields)
    assert cipher.decrypt(sealed) == body


def test_the_nonce_stream_never_repeats_and_renews_its_random_field() -> None:
    stream = nonce_stream()
    first = [next(stream) for _ in range(10_000)]  # ten blocks of 1024 (tokens._BLOCK)
    assert len(set(first)) == len(first)
    assert all(len(n) == 12 for n in first)
    field = first[0][:8]
    assert all(n[:8] == field for n in first)  # one random field, a counter from 0
    assert [int.from_bytes(n[8:], "big") for n in first] == list(range(10_000))
    assert next(nonce_stream())[:8] != field  # another stream, another random field


def test_a_new_random_field_before_the_counter_wraps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tokens, "_COUNTER_BITS", 2)  # fields of 4 nonces instead of 2**32
    monkeypatch.setattr(tokens, "_BLOCK", 2)  # made two at a time: two blocks per field
    stream = nonce_stream()
    nonces = [next(stream) for _ in range(12)]
    assert len(set(nonces)) == 12
    numbers = [int.from_bytes(n, "big") for n in nonces]
    assert [n & 3 for n in numbers] == [0, 1, 2, 3] * 3  # the counter, from 0 per block
    assert len({n >> 2 for n in numbers}) == 3  # a fresh random field per block


def test_nonce_blocks_continue_the_counter_and_must_tile_it() -> None:
    blocks = tokens._nonce_blocks(4)
    made = [n for _ in range(5) for n in next(blocks)]  # five blocks under one field
    assert len(set(made)) == 20
    assert [int.from_bytes(n[8:], "big") for n in made] == list(range(20))
    assert len({n[:8] for n in made}) == 1
    with pytest.raises(ValueError, match="divide"):
        next(tokens._nonce_blocks(3))


async def test_a_route_runs_the_fast_path_inline_with_the_same_results() -> None:
    context = Context()

    class R(RouteBuilder):
        def configure(self) -> None:
            (
                self.from_("direct:in")
                .route_id("inline-encrypt")
                .encrypt_fields(["email", "phone"], key=RING)
                .to("mock:out")
            )

    context.add_routes(R())
    people = [Person(n, None if n == 2 else f"p{n}@x", n) for n in range(6)]
    already = FieldCipher(["email"], RING).encrypt(Person(9, "t@x", None))
    async with context:
        template = context.template()
        for body in [*people, already, {"email": "d@x"}]:
            sent = await template.send("direct:in", body)
            assert sent.exception is None
    out = context.mock("out").received_bodies
    for person, sealed in zip(people, out, strict=False):
        assert type(sealed) is Person
        assert sealed.email is None if person.email is None else is_token(sealed.email)
        assert by_the_spec(sealed.phone, "phone") == person.phone
    assert out[2].email is None
    assert by_the_spec(out[3].email, "email") == "p3@x"
    assert out[6] == already  # a token is not wrapped again; the None phone stays None
    assert by_the_spec(out[7]["email"], "email") == "d@x"  # a dict: the slow path
