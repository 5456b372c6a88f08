"""The HTTP producer against a real (fake) ERP server: requests, replies, auth, failures."""

from __future__ import annotations

import base64
import json
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import msgspec
import pytest
from aiohttp import web

from eip import Context, RedeliveryPolicy, RouteBuilder, dead_letter_channel
from eip import headers as H
from eip.components.http import http_client
from eip.errors import (
    EndpointError,
    ExchangeTimeoutError,
    HttpOperationFailed,
    ResolveEndpointError,
    RouteDefinitionError,
)
from eip.message import Exchange
from tests.http.fake_erp import FakeErp, Reply
from tests.inline import inline_routes

CREATED = b'{"erp_id":"E-1"}'


class Customer(msgspec.Struct):
    id: int
    name: str


@pytest.fixture
async def erp() -> AsyncIterator[FakeErp]:
    async with FakeErp() as server:
        yield server


@asynccontextmanager
async def running(configure: Callable[[RouteBuilder], Any]) -> AsyncIterator[Context]:
    context = Context(shutdown_timeout=5)
    context.add_routes(inline_routes(configure))
    async with context:
        yield context


def calling(target: Any) -> Callable[[RouteBuilder], Any]:
    """Routes: ``direct:x`` calls ``target``."""
    return lambda b: b.from_("direct:x").route_id("call").to(target)


async def exchange_for(
    target: Any, body: Any = None, headers: dict[str, Any] | None = None
) -> Exchange:
    async with running(calling(target)) as context:
        return await context.template().request_exchange("direct:x", body, headers)


def unused_port() -> int:
    """A port nobody listens on: bound, then closed."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# --- request bodies and methods -------------------------------------------------------------


@pytest.mark.parametrize(
    "body", [Customer(7, "Ada"), {"id": 7, "name": "Ada"}], ids=["struct", "dict"]
)
async def test_structured_body_is_posted_as_json_and_the_reply_is_the_response(
    erp: FakeErp, body: Any
) -> None:
    exchange = await exchange_for(f"{erp.url}/api/customers", body)

    assert exchange.exception is None
    [sent] = erp.requests
    assert (sent.method, sent.path, sent.query) == ("POST", "/api/customers", "")
    assert sent.headers["content-type"] == "application/json"
    assert json.loads(sent.body) == {"id": 7, "name": "Ada"}
    assert exchange.body == CREATED
    assert exchange.headers[H.HTTP_RESPONSE_STATUS] == 201
    assert exchange.headers["content-type"].startswith("application/json")


@pytest.mark.parametrize(
    ("body", "sent_body", "content_type"),
    [
        (b"<customer id='7'/>", b"<customer id='7'/>", "application/xml"),
        (b"\x00\x01raw", b"\x00\x01raw", "application/octet-stream"),
        ("Grüße, Ada", "Grüße, Ada".encode(), "text/plain; charset=utf-8"),
    ],
    ids=["xml-bytes", "binary-bytes", "str"],
)
async def test_bytes_are_sent_as_they_are_and_str_as_utf8(
    erp: FakeErp, body: Any, sent_body: bytes, content_type: str
) -> None:
    exchange = await exchange_for(f"{erp.url}/api/customers", body)

    assert exchange.exception is None
    [sent] = erp.requests
    assert sent.method == "POST"
    assert sent.body == sent_body
    assert sent.headers["content-type"] == content_type


async def test_the_exchange_content_type_labels_the_body(erp: FakeErp) -> None:
    exchange = await exchange_for(
        f"{erp.url}/api/customers", b"id;name\n7;Ada\n", {"content-type": "text/csv"}
    )

    assert exchange.exception is None
    assert erp.requests[0].headers["content-type"] == "text/csv"
    assert erp.requests[0].body == b"id;name\n7;Ada\n"


async def test_no_body_means_get_and_the_reply_keeps_the_response_type(erp: FakeErp) -> None:
    erp.reply(
        "/api/customers",
        Reply(200, body=b"7;Ada\n", headers={"content-type": "text/csv; charset=utf-8"}),
        method="GET",
    )
    exchange = await exchange_for(f"{erp.url}/api/customers", None)

    assert exchange.exception is None
    [sent] = erp.requests
    assert sent.method == "GET"
    assert sent.body == b""
    assert "content-type" not in sent.headers
    assert exchange.body == b"7;Ada\n"
    assert exchange.headers[H.HTTP_RESPONSE_STATUS] == 200
    assert exchange.headers["content-type"] == "text/csv; charset=utf-8"


async def test_method_comes_from_the_option_and_the_header_wins(erp: FakeErp) -> None:
    erp.reply("/api/customers", Reply(204))
    async with running(calling(f"{erp.url}/api/customers?method=PUT")) as context:
        template = context.template()
        first = await template.request_exchange("direct:x", {"id": 7})
        second = await template.request_exchange(
            "direct:x", None, {H.HTTP_REQUEST_METHOD: "delete"}
        )

    assert first.exception is None
    assert second.exception is None
    assert [r.method for r in erp.requests] == ["PUT", "DELETE"]
    assert json.loads(erp.requests[0].body) == {"id": 7}
    assert first.headers[H.HTTP_RESPONSE_STATUS] == 204
    assert first.body == b""


async def test_request_path_is_appended_to_the_url(erp: FakeErp) -> None:
    erp.reply("/api/customers/*", Reply(200, json={"erp_id": "E-1001"}))
    async with running(calling(f"{erp.url}/api/customers/")) as context:
        template = context.template()
        reply = await template.request("direct:x", None, {H.HTTP_REQUEST_PATH: "/1001"})
        await template.request("direct:x", None, {H.HTTP_REQUEST_PATH: "C 7/contacts"})

    assert reply == b'{"erp_id":"E-1001"}'
    assert [r.path for r in erp.requests] == ["/api/customers/1001", "/api/customers/C 7/contacts"]


async def test_request_query_as_str_and_as_dict(erp: FakeErp) -> None:
    erp.reply("/api/customers", Reply(200, json=[]), method="GET")
    url = f"{erp.url}/api/customers?region=CN"
    async with running(calling(http_client(url))) as context:
        template = context.template()
        await template.request("direct:x", None, {H.HTTP_REQUEST_QUERY: "page=2&size=50"})
        await template.request(
            "direct:x", None, {H.HTTP_REQUEST_QUERY: {"tag": ["vip", "b2b"], "q": "Ada L"}}
        )

    first, second = erp.requests
    assert first.query == "region=CN&page=2&size=50"
    assert second.params == {"region": ["CN"], "tag": ["vip", "b2b"], "q": ["Ada L"]}


INCOMING = {
    "x-request-id": "req-1",
    "X-Request-Source": "crm",
    "accept": "application/json",
    "authorization": "Bearer token-of-the-caller",
    "cookie": "session=abc",
    "eip.custom": "internal",
}


async def test_copy_headers_forwards_only_the_listed_ones(erp: FakeErp) -> None:
    exchange = await exchange_for(
        f"{erp.url}/api/customers?copy_headers=x-request-*,accept", {"id": 1}, dict(INCOMING)
    )

    assert exchange.exception is None
    sent = erp.requests[0].headers
    assert sent["x-request-id"] == "req-1"
    assert sent["x-request-source"] == "crm"
    assert sent["accept"] == "application/json"
    assert "authorization" not in sent
    assert "cookie" not in sent
    assert not [name for name in sent if name.startswith("eip.")]


async def test_nothing_is_forwarded_by_default_and_eip_headers_never(erp: FakeErp) -> None:
    async with running(
        lambda b: (
            b.from_("direct:plain").to(f"{erp.url}/api/customers"),
            b.from_("direct:all").to(f"{erp.url}/api/customers?copy_headers=*"),
        )
    ) as context:
        template = context.template()
        await template.request("direct:plain", {"id": 1}, dict(INCOMING))
        await template.request("direct:all", {"id": 1}, dict(INCOMING))

    plain, everything = (r.headers for r in erp.requests)
    assert not {"x-request-id", "x-request-source", "authorization", "cookie"} & set(plain)
    assert everything["x-request-id"] == "req-1"
    assert everything["cookie"] == "session=abc"
    assert not [name for name in everything if name.startswith("eip.")]


# --- authentication -------------------------------------------------------------------------


async def test_basic_auth_reads_the_secret_from_the_environment(
    erp: FakeErp, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ERP_PASSWORD", "pa:ss wörd")
    target = http_client(
        f"{erp.url}/api/customers", auth="basic", username="crm", secret_env="ERP_PASSWORD"
    )
    exchange = await exchange_for(target, {"id": 1})

    assert exchange.exception is None
    expected = base64.b64encode("crm:pa:ss wörd".encode()).decode()
    assert erp.requests[0].headers["authorization"] == f"Basic {expected}"


async def test_bearer_auth_from_the_uri_form(erp: FakeErp, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ERP_TOKEN", "tok-123")
    exchange = await exchange_for(
        f"{erp.url}/api/customers?auth=bearer&secret_env=ERP_TOKEN", {"id": 1}
    )

    assert exchange.exception is None
    assert erp.requests[0].headers["authorization"] == "Bearer tok-123"


@pytest.mark.parametrize(
    ("options", "header"),
    [({}, "x-api-key"), ({"auth_header": "X-Erp-Key"}, "x-erp-key")],
    ids=["default-header", "own-header"],
)
async def test_api_key_auth(
    erp: FakeErp, monkeypatch: pytest.MonkeyPatch, options: dict[str, str], header: str
) -> None:
    monkeypatch.setenv("ERP_KEY", "key-42")
    target = http_client(
        f"{erp.url}/api/customers", auth="api_key", secret_env="ERP_KEY", **options
    )
    exchange = await exchange_for(target, {"id": 1})

    assert exchange.exception is None
    assert erp.requests[0].headers[header] == "key-42"
    assert "authorization" not in erp.requests[0].headers


async def test_a_missing_secret_variable_fails_at_context_start(
    erp: FakeErp, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ERP_MISSING_TOKEN", raising=False)
    context = Context(shutdown_timeout=5)
    context.add_routes(
        inline_routes(calling(f"{erp.url}/api/customers?auth=bearer&secret_env=ERP_MISSING_TOKEN"))
    )

    with pytest.raises(RouteDefinitionError) as caught:
        await context.start()

    assert "secret_env" in str(caught.value)
    assert "ERP_MISSING_TOKEN" in str(caught.value)
    assert not context.started
    assert erp.requests == []


# --- downstream failures --------------------------------------------------------------------


async def test_a_500_is_redelivered_then_dead_lettered_with_the_failure(erp: FakeErp) -> None:
    erp.reply("/api/customers", Reply(500, json={"error": "database unavailable"}))
    url = f"{erp.url}/api/customers"
    policy = RedeliveryPolicy(max_redeliveries=2, delay=0)

    def configure(b: RouteBuilder) -> None:
        b.error_handler(dead_letter_channel("mock:dlq", redelivery=policy))
        b.from_("direct:x").route_id("to-erp").to(url)

    async with running(configure) as context:
        exchange = await context.template().send("direct:x", {"id": 7})
        dlq = context.mock("dlq")
        await dlq.wait_for(1, timeout=5)

    assert exchange.exception is None  # dead-lettered counts as handled
    assert len(erp.requests) == 3
    assert [r.method for r in erp.requests] == ["POST"] * 3
    assert dlq.count == 1
    dead = dlq.received[0]
    assert dead.headers[H.EXCEPTION_TYPE] == "eip.errors.HttpOperationFailed"
    assert dead.headers[H.REDELIVERY_COUNT] == 2
    assert dead.headers[H.FAILURE_ROUTE] == "to-erp"
    assert dead.body == {"id": 7}
    error = dead.properties[H.EXCEPTION_PROPERTY]
    assert isinstance(error, HttpOperationFailed)
    assert error.status_code == 500
    assert error.url == url
    assert error.method == "POST"
    assert "database unavailable" in error.body
    assert url in dead.headers[H.EXCEPTION_MESSAGE]
    assert "database unavailable" in dead.headers[H.EXCEPTION_MESSAGE]


async def test_without_a_dead_letter_channel_the_caller_sees_the_failure(erp: FakeErp) -> None:
    erp.reply("/api/customers", Reply(500, body=b"boom", headers={"x-erp-trace": "t-9"}))
    url = f"{erp.url}/api/customers"
    async with running(calling(url)) as context:
        with pytest.raises(HttpOperationFailed) as caught:
            await context.template().request("direct:x", {"id": 7})

    error = caught.value
    assert error.status_code == 500
    assert error.body == "boom"
    assert error.headers["x-erp-trace"] == "t-9"
    assert f"HTTP 500 from POST {url}: boom" in str(error)
    assert len(erp.requests) == 1


async def test_throw_on_failure_false_keeps_the_response(erp: FakeErp) -> None:
    erp.reply("/api/customers/*", Reply(404, json={"error": "no customer 9"}))
    exchange = await exchange_for(
        f"{erp.url}/api/customers/9?throw_on_failure=false&method=GET", None
    )

    assert exchange.exception is None
    assert exchange.headers[H.HTTP_RESPONSE_STATUS] == 404
    assert exchange.body == b'{"error":"no customer 9"}'
    assert exchange.headers["content-type"].startswith("application/json")


async def test_a_slow_server_is_cut_at_the_timeout_with_a_clear_error(erp: FakeErp) -> None:
    erp.reply("/api/customers", Reply(201, json={"erp_id": "E-1"}, delay=5.0))
    url = f"{erp.url}/api/customers"
    async with running(calling(f"{url}?timeout=0.3")) as context:
        began = time.monotonic()
        with pytest.raises(ExchangeTimeoutError) as caught:
            await context.template().request("direct:x", {"id": 7})
        elapsed = time.monotonic() - began

    assert elapsed < 2.0
    assert url in str(caught.value)
    assert "0.3s" in str(caught.value)
    assert len(erp.requests) == 1


async def test_a_server_dribbling_its_body_is_cut_at_the_total_deadline(erp: FakeErp) -> None:
    started: list[float] = []

    async def dribble(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=200, headers={"content-type": "application/json"})
        response.content_length = 50
        await response.prepare(request)
        started.append(time.monotonic())
        for _ in range(50):  # one byte every 0.1 s: 5 s in all
            await response.write(b" ")
            if await erp.pause(0.1):
                break
        await response.write_eof()
        return response

    erp.reply("/api/customers", dribble)
    url = f"{erp.url}/api/customers"
    async with running(calling(f"{url}?timeout=0.5")) as context:
        began = time.monotonic()
        with pytest.raises(ExchangeTimeoutError) as caught:
            await context.template().request("direct:x", {"id": 7})
        elapsed = time.monotonic() - began

    assert started, "the server began its answer"
    assert elapsed < 2.0
    assert url in str(caught.value)
    assert "0.5s" in str(caught.value)


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
async def test_connection_refused_is_an_endpoint_error_naming_the_url(transport: str) -> None:
    url = f"http://127.0.0.1:{unused_port()}/api/customers"
    async with running(calling(f"{url}?transport={transport}")) as context:
        began = time.monotonic()
        with pytest.raises(EndpointError) as caught:
            await context.template().request("direct:x", {"id": 7})
        elapsed = time.monotonic() - began

    error = caught.value
    assert type(error) is EndpointError  # not a time-out, not an HTTP status
    assert f"POST {url} failed: " in str(error)
    assert "connect" in str(error).lower()
    assert "timed out" not in str(error)
    assert error.route_id == "call"
    assert elapsed < 2.0


async def _failure_with_credentials(kind: str, erp: FakeErp) -> tuple[Exception, str]:
    if kind == "refused":
        host = f"127.0.0.1:{unused_port()}"
    else:
        host = f"127.0.0.1:{erp.port}"
        erp.reply("/api/customers", Reply(500) if kind == "500" else Reply(201, delay=5.0))
    url = f"http://erp-user:hunter2-pw@{host}/api/customers?timeout=0.3"
    async with running(calling(url)) as context:
        with pytest.raises((EndpointError, ExchangeTimeoutError)) as caught:
            await context.template().request("direct:x", {"id": 7})
    return caught.value, host


@pytest.mark.parametrize("kind", ["refused", "500", "timeout"])
async def test_credentials_in_the_url_never_appear_in_errors(erp: FakeErp, kind: str) -> None:
    error, host = await _failure_with_credentials(kind, erp)

    expected = {"refused": EndpointError, "500": HttpOperationFailed}
    assert isinstance(error, expected.get(kind, ExchangeTimeoutError))
    texts = [str(error), repr(error), str(getattr(error, "endpoint", "")), str(error.args)]
    if isinstance(error, HttpOperationFailed):
        texts.append(error.url)
    for text in texts:
        assert "hunter2-pw" not in text
    assert f"{host}/api/customers" in str(error)  # the URL is still named
    if kind != "refused":  # the credentials were still used, as basic auth
        sent = erp.requests[0].headers["authorization"]
        assert sent == "Basic " + base64.b64encode(b"erp-user:hunter2-pw").decode()


# --- transports, dynamic endpoints, definitions ---------------------------------------------


async def test_httpx_transport_makes_the_same_round_trip(erp: FakeErp) -> None:
    exchange = await exchange_for(
        f"{erp.url}/api/customers?transport=httpx", Customer(7, "Ada"), {"x-id": "1"}
    )

    assert exchange.exception is None
    [sent] = erp.requests
    assert (sent.method, sent.path) == ("POST", "/api/customers")
    assert sent.headers["content-type"] == "application/json"
    assert json.loads(sent.body) == {"id": 7, "name": "Ada"}
    assert "x-id" not in sent.headers
    assert exchange.body == CREATED
    assert exchange.headers[H.HTTP_RESPONSE_STATUS] == 201


async def test_a_users_own_httpx_client_is_used_and_left_open() -> None:
    """The in-memory twin for users' unit tests: httpx.MockTransport behind the same route."""
    import httpx

    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(202, json={"queued": True})

    client = httpx.AsyncClient(transport=httpx.MockTransport(answer))
    exchange = await exchange_for(
        http_client("http://erp.test/api/customers", client=client), {"id": 1}
    )
    assert exchange.exception is None
    assert exchange.headers[H.HTTP_RESPONSE_STATUS] == 202
    assert json.loads(exchange.body) == {"queued": True}
    assert exchange.properties[H.HTTP_RESPONSE_HEADERS]["content-type"] == "application/json"
    assert [(r.method, str(r.url)) for r in seen] == [("POST", "http://erp.test/api/customers")]
    assert not client.is_closed  # eip does not close a client it did not make
    await client.aclose()


async def test_to_d_reaches_the_path_the_headers_name(erp: FakeErp) -> None:
    erp.reply("/api/customers/*", Reply(200, json={"ok": True}))
    template = "http://127.0.0.1:{headers[port]}/api/customers/{headers[id]}"
    async with running(lambda b: b.from_("direct:x").to_d(template)) as context:
        first = await context.template().request(
            "direct:x", {"id": 1}, {"port": erp.port, "id": "C-7"}
        )
        await context.template().request("direct:x", {"id": 2}, {"port": erp.port, "id": "C-8"})

    assert first == b'{"ok":true}'
    assert [r.path for r in erp.requests] == ["/api/customers/C-7", "/api/customers/C-8"]


async def test_to_d_with_a_missing_header_fails_to_resolve(erp: FakeErp) -> None:
    template = "http://127.0.0.1:{headers[port]}/api/customers/{headers[id]}"
    async with running(lambda b: b.from_("direct:x").to_d(template)) as context:
        with pytest.raises(ResolveEndpointError) as caught:
            await context.template().request("direct:x", {"id": 1}, {"port": erp.port})

    assert "'id'" in str(caught.value)
    assert erp.requests == []


async def test_an_unknown_option_fails_at_start_listing_the_valid_ones(erp: FakeErp) -> None:
    context = Context(shutdown_timeout=5)
    context.add_routes(inline_routes(calling(f"{erp.url}/api/customers?timout=1")))

    with pytest.raises(RouteDefinitionError) as caught:
        await context.start()

    text = str(caught.value)
    assert "timout" in text
    assert "valid options" in text
    assert caught.value.valid is not None
    assert {"timeout", "connect_timeout", "method", "copy_headers"} <= set(caught.value.valid)
    assert erp.requests == []
