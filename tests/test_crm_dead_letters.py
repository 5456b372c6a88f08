"""The dead-letter envelope every example writes (routes/_support.py)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import msgspec

from eip import Exchange
from eip import headers as H
from routes._support import FAILURE_HEADERS, dead_letter, read_dead_letter, safe_file_name

FAILED = {
    H.EXCEPTION_TYPE: "eip.errors.EndpointError",
    H.EXCEPTION_MESSAGE: "broker said no at amqp://crm:s3cret@mq.local:5672/",
    H.FAILURE_ROUTE: "orders",
    H.FAILURE_ENDPOINT: "to(rabbitmq:orders)",
    H.REDELIVERY_COUNT: 2,
}


class Order(msgspec.Struct):
    id: int
    total: Decimal
    placed: dt.date


def test_failure_headers_go_first_and_credentials_never_appear() -> None:
    headers = {
        **FAILED,
        "x-api-key": "k-123",
        "authorization": "Bearer t-456",
        "proxy-authorization": "Basic cDpx",
        "cookie": "session=abc",
        "callback": "https://user:pw-789@erp.local/hook?token=t-000",
        "content-type": "application/json",
        H.FILE_NAME: "order-7.json",
    }
    data = dead_letter(Exchange(Order(7, Decimal("12.50"), dt.date(2026, 11, 23)), headers))
    letter = read_dead_letter(data)
    assert list(letter.failure) == list(FAILURE_HEADERS)
    assert letter.failure[H.REDELIVERY_COUNT] == 2
    assert letter.failure[H.EXCEPTION_MESSAGE] == "broker said no at amqp://crm:***@mq.local:5672/"
    assert letter.headers == {
        "callback": "https://user:***@erp.local/hook?token=***",
        "content-type": "application/json",
        H.FILE_NAME: "order-7.json",
    }
    assert letter.body_encoding == "json"
    assert letter.body == {"id": 7, "total": "12.50", "placed": "2026-11-23"}
    for secret in (b"k-123", b"t-456", b"cDpx", b"abc", b"pw-789", b"t-000", b"s3cret"):
        assert secret not in data


def test_the_body_comes_back_as_it_was() -> None:
    text, binary = "Grüße\n".encode(), b"\xff\x00\xfe"
    for body, encoding, original in [
        (text, "text", text),
        ("plain", "text", b"plain"),
        (binary, "base64", binary),
        (Path("/in/x.csv"), "path", Path("/in/x.csv")),
        ([1, "a"], "json", [1, "a"]),
    ]:
        letter = read_dead_letter(dead_letter(Exchange(body, dict(FAILED))))
        assert (letter.body_encoding, letter.original_body()) == (encoding, original)


def test_a_letter_without_failure_headers_still_has_its_shape() -> None:
    letter = read_dead_letter(dead_letter(Exchange(b"x", {})))
    assert letter.failure == dict.fromkeys(FAILURE_HEADERS)
    assert letter.headers == {}


def test_safe_file_names() -> None:
    assert safe_file_name("evt-1") == "evt-1.json"
    assert safe_file_name("../etc/passwd") == safe_file_name("../etc/passwd")  # stable
    assert safe_file_name("../etc/passwd").startswith("event-")
    assert safe_file_name("a\x00b", prefix="upsert").startswith("upsert-")
    assert "/" not in safe_file_name("a/b")
