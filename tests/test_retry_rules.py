"""Which failures are redelivered: the default rule (eip/processors/retry_rules.py), a policy's
``retry_on`` / ``no_retry_on``, and the rule at work against a real HTTP server."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import msgspec
import pytest

from eip import Context, RedeliveryPolicy, RouteBuilder, dead_letter_channel
from eip import headers as H
from eip.components.soap.schema import SchemaValidationError
from eip.errors import (
    EndpointError,
    ExchangeTimeoutError,
    HttpOperationFailed,
    MappingError,
    MarshalError,
    NoMessageIdError,
    OutcomeUnknownError,
    ResolveEndpointError,
    SoapFault,
    UnmarshalError,
)
from eip.processors.redelivery import error_line
from eip.processors.retry_rules import deterministic_reason, is_retryable
from tests.http.fake_erp import FakeErp, Reply
from tests.inline import inline_routes


def _http(status: int) -> HttpOperationFailed:
    return HttpOperationFailed("PUT", "http://erp/api/customers/1", status, b"{}")


def _validation_error() -> msgspec.ValidationError:
    try:
        msgspec.convert({"id": "x"}, dict[str, int])
    except msgspec.ValidationError as exc:
        return exc
    raise AssertionError("msgspec accepted a str as an int")


DETERMINISTIC = [
    UnmarshalError("json", "expected an int", location="$.id"),
    SchemaValidationError("unexpected element", location="UpsertCustomer/customer/x"),
    MarshalError("xml", "cannot write a set"),
    MappingError("$.email", "required field is missing"),
    _validation_error(),
    msgspec.DecodeError("truncated"),
    UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid"),
    SoapFault("closed", kind="client", fault="CustomerFault"),
    SoapFault("version", kind="client", code="{ns}VersionMismatch"),
    _http(400),
    _http(401),
    _http(404),
    _http(409),
    _http(422),
    NoMessageIdError("no id"),
    ResolveEndpointError("bad uri"),
]
RETRYABLE = [
    OutcomeUnknownError("no confirm"),
    SoapFault("database unavailable", kind="server"),
    _http(408),
    _http(429),
    _http(500),
    _http(503),
    EndpointError("connection refused"),
    ExchangeTimeoutError("timed out"),
    TimeoutError("timed out"),
    ConnectionResetError("reset"),
    ValueError("anything of the user's"),
]


@pytest.mark.parametrize("error", DETERMINISTIC, ids=lambda e: type(e).__name__)
def test_deterministic_failures_are_not_retryable(error: BaseException) -> None:
    assert not is_retryable(error)
    assert deterministic_reason(error)  # says why, for the log line


@pytest.mark.parametrize("error", RETRYABLE, ids=lambda e: type(e).__name__)
def test_failures_that_may_pass_are_retryable(error: BaseException) -> None:
    assert is_retryable(error)
    assert deterministic_reason(error) is None


def test_http_reason_names_the_status() -> None:
    assert deterministic_reason(_http(404)) == (
        "HTTP 404 is a client error: the server refused the request"
    )


def test_retry_on_replaces_the_default_rule_and_no_retry_on_wins() -> None:
    default = RedeliveryPolicy(max_redeliveries=3)
    assert not default.retries(_http(404))
    assert default.retries(_http(503))
    assert default.retries(ValueError("x"))

    only_http = RedeliveryPolicy(max_redeliveries=3, retry_on=(HttpOperationFailed,))
    assert only_http.retries(_http(404))  # named explicitly: retried, deterministic or not
    assert not only_http.retries(ValueError("x"))
    assert only_http.refusal(ValueError("x")) == "ValueError is not in the policy's retry_on"

    camel = RedeliveryPolicy(max_redeliveries=3, retry_on=(Exception,))
    assert camel.retries(UnmarshalError("json", "bad"))

    narrowed = RedeliveryPolicy(max_redeliveries=3, no_retry_on=(KeyError,))
    assert not narrowed.retries(KeyError("k"))
    assert narrowed.retries(TimeoutError())
    assert not narrowed.retries(_http(404))  # the default rule still applies

    both = RedeliveryPolicy(retry_on=(LookupError,), no_retry_on=(KeyError,))
    assert both.retries(IndexError())
    assert not both.retries(KeyError())
    assert both.refusal(KeyError()) == "KeyError is in the policy's no_retry_on"


def test_retry_on_takes_one_type_or_any_iterable_and_refuses_anything_else() -> None:
    assert RedeliveryPolicy(retry_on=TimeoutError).retry_on == (TimeoutError,)  # type: ignore[arg-type]
    assert RedeliveryPolicy(no_retry_on=[KeyError, ValueError]).no_retry_on == (  # type: ignore[arg-type]
        KeyError,
        ValueError,
    )
    with pytest.raises(ValueError, match="retry_on takes exception types, got 'TimeoutError'"):
        RedeliveryPolicy(retry_on=("TimeoutError",))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no_retry_on takes exception types"):
        RedeliveryPolicy(no_retry_on="KeyError")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="got <class 'int'>"):
        RedeliveryPolicy(retry_on=(int,))  # type: ignore[arg-type]


@pytest.fixture
async def erp() -> AsyncIterator[FakeErp]:
    async with FakeErp() as server:
        yield server


async def _put_through_dead_letter(erp: FakeErp, policy: RedeliveryPolicy) -> Context:
    url = f"{erp.url}/api/customers/1"

    def configure(b: RouteBuilder) -> None:
        b.error_handler(dead_letter_channel("mock:dead", redelivery=policy))
        b.from_("direct:x").route_id("to-erp").set_header(H.HTTP_METHOD, "PUT").to(url)

    context = Context(shutdown_timeout=5)
    context.add_routes(inline_routes(configure))
    await context.start()
    await context.template().send("direct:x", b'{"name": "Ada"}')
    return context


@pytest.mark.parametrize(
    ("status", "calls"), [(404, 1), (400, 1), (503, 4), (429, 4), (408, 4)], ids=str
)
async def test_http_client_errors_are_sent_once_and_the_rest_retried(
    erp: FakeErp, status: int, calls: int, caplog: pytest.LogCaptureFixture
) -> None:
    erp.reply("/api/customers/1", Reply(status, json={"error": "nope"}))
    with caplog.at_level(logging.INFO, logger="eip.error_handler"):
        context = await _put_through_dead_letter(erp, RedeliveryPolicy(max_redeliveries=3, delay=0))
    try:
        dead = context.mock("dead")
        dead.expect_count(1)
        await dead.assert_satisfied(timeout=5)
        assert len(erp.requests) == calls
        assert dead.received[0].headers[H.REDELIVERY_COUNT] == calls - 1
        records = [r for r in caplog.records if r.name == "eip.error_handler"]
        if calls == 1:
            (skipped,) = [r for r in records if r.levelno == logging.INFO]
            assert skipped.getMessage().startswith("route to-erp, step http://127.0.0.1:")
            assert f"(HTTP {status} is a client error: the server refused the request)" in (
                skipped.getMessage()
            )
            assert not [r for r in records if "redelivery attempt" in r.getMessage()]
        else:
            attempts = [r for r in records if "redelivery attempt" in r.getMessage()]
            assert [r.levelno for r in attempts] == [logging.WARNING] * 3
            assert [f"attempt {n} of 3" in r.getMessage() for n, r in enumerate(attempts, 1)] == [
                True
            ] * 3
    finally:
        await context.stop()


async def test_retry_on_retries_a_404_of_an_eventually_consistent_service(erp: FakeErp) -> None:
    erp.reply(
        "/api/customers/1",
        Reply(404, json={"error": "not yet"}),
        Reply(404, json={"error": "not yet"}),
        Reply(200, json={"erp_id": "E-1"}),
    )
    policy = RedeliveryPolicy(max_redeliveries=3, delay=0, retry_on=(HttpOperationFailed,))
    context = await _put_through_dead_letter(erp, policy)
    try:
        assert len(erp.requests) == 3
        assert context.mock("dead").count == 0
    finally:
        await context.stop()


def test_the_log_line_takes_the_error_first_line_without_its_context() -> None:
    assert error_line(ValueError("bad value\nTraceback-ish detail")) == "ValueError: bad value"
    routed = EndpointError("connection refused", endpoint="http://u:pw@erp/api")
    routed.route_id = "orders"
    assert str(routed).endswith("[route=orders endpoint=http://u:***@erp/api]")
    assert error_line(routed) == "EndpointError: connection refused"
    assert error_line(KeyError()) == "KeyError"
    long = error_line(_http(400))  # message plus a body excerpt of up to 1000 characters
    assert long.startswith("HttpOperationFailed: HTTP 400 from PUT http://erp/api/customers/1")
    assert len(error_line(RuntimeError("x" * 5000))) == len("RuntimeError: ") + 200
    assert error_line(RuntimeError("x" * 5000)).endswith("x…")
