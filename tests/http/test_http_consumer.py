"""The HTTP consumer against a real uvicorn server on 127.0.0.1 and a real httpx client."""

from __future__ import annotations

import asyncio
import base64
import socket
import time
from typing import Any, Literal

import jwt
import msgspec
import pytest

from eip import RouteBuilder, dead_letter_channel
from eip.components.http import AuthSpec, http_server
from eip.errors import LifecycleError, RouteDefinitionError
from tests.http.conftest import Served, ServeFactory


class Address(msgspec.Struct):
    street: str
    city: str
    zip: str


class Customer(msgspec.Struct):
    id: int
    name: str
    email: str
    status: Literal["active", "blocked"]
    addresses: list[Address] = []


GOOD = {
    "id": 1001,
    "name": "Ada",
    "email": "ada@example.com",
    "status": "active",
    "addresses": [{"street": "1 Main", "city": "Berlin", "zip": "10115"}],
}


def customer_routes(**options: Any) -> RouteBuilder:
    class Routes(RouteBuilder):
        def configure(self) -> None:
            (
                self.from_(
                    http_server("/api/customers", methods=["POST"], body=Customer, **options)
                )
                .route_id("upsert")
                .transform(lambda ex: {"id": ex.body.id, "city": ex.body.addresses[0].city})
            )

    return Routes()


async def test_typed_json_body_is_bound_and_the_reply_is_json(serve: ServeFactory) -> None:
    served: Served = await serve(customer_routes())
    response = await served.client.post(f"{served.url}/api/customers", json=GOOD)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"id": 1001, "city": "Berlin"}


async def test_xml_body_is_bound_to_the_same_type(serve: ServeFactory) -> None:
    served = await serve(customer_routes())
    xml = (
        b"<customer><id>7</id><name>Bo</name><email>bo@example.com</email>"
        b"<status>active</status><addresses><street>2 High</street><city>Oslo</city>"
        b"<zip>0150</zip></addresses></customer>"
    )
    response = await served.client.post(
        f"{served.url}/api/customers", content=xml, headers={"content-type": "application/xml"}
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"id": 7, "city": "Oslo"}


async def test_invalid_json_gets_400_naming_the_field_path(serve: ServeFactory) -> None:
    served = await serve(customer_routes())
    bad = {**GOOD, "addresses": [{"street": "1 Main", "city": 5, "zip": "1"}]}
    response = await served.client.post(f"{served.url}/api/customers", json=bad)
    assert response.status_code == 400
    payload = response.json()
    assert payload["error"] == "invalid request body"
    assert payload["location"] == "$.addresses[0].city"
    assert "expected str, got int" in payload["detail"]
    wrong_enum = await served.client.post(
        f"{served.url}/api/customers", json={**GOOD, "status": "gone"}
    )
    assert wrong_enum.status_code == 400
    assert wrong_enum.json()["location"] == "$.status"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"id": 1, "name": ', "input ended early"),
        (b'{"id": 1, "name": "\xff\xfe"}', "invalid UTF-8"),
        (b"", "empty input"),
    ],
)
async def test_malformed_json_gets_400_not_500(
    serve: ServeFactory, body: bytes, reason: str
) -> None:
    served = await serve(customer_routes())
    response = await served.client.post(
        f"{served.url}/api/customers", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert reason in response.json()["detail"]


async def test_deeply_nested_untyped_json_gets_400(serve: ServeFactory) -> None:
    class Routes(RouteBuilder):
        def configure(self) -> None:
            self.from_(http_server("/any", body=dict[str, Any])).route_id("any").set_body("ok")

    served = await serve(Routes())
    deep = b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    response = await served.client.post(
        f"{served.url}/any", content=deep, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert "nested too deeply" in response.json()["detail"]
    fine = await served.client.post(f"{served.url}/any", json={"a": [[1]]})
    assert fine.text == "ok"


async def test_unsupported_media_type_gets_415(serve: ServeFactory) -> None:
    served = await serve(customer_routes())
    response = await served.client.post(
        f"{served.url}/api/customers",
        content=b"id,name\n1,Ada",
        headers={"content-type": "text/csv"},
    )
    assert response.status_code == 415
    assert "text/csv" in response.json()["detail"]


async def test_oversized_body_gets_413_by_content_length(serve: ServeFactory) -> None:
    served = await serve(customer_routes(max_body_size=1000))
    big = {**GOOD, "name": "x" * 2000}
    response = await served.client.post(f"{served.url}/api/customers", json=big)
    assert response.status_code == 413
    assert response.json() == {"error": "request body too large"}


async def test_oversized_chunked_body_gets_413_counting_bytes(serve: ServeFactory) -> None:
    served = await serve(customer_routes(max_body_size=1000))

    async def chunks() -> Any:
        for _ in range(50):
            yield b"x" * 100

    response = await served.client.post(
        f"{served.url}/api/customers",
        content=chunks(),
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 413


async def test_a_client_dribbling_its_body_gets_408(serve: ServeFactory) -> None:
    served = await serve(customer_routes(), request_timeout=0.3)
    host, port = served.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    began = time.monotonic()
    writer.write(
        b"POST /api/customers HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        b"content-length: 100\r\n\r\n{"
    )
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(4096), 5)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 408")
    assert time.monotonic() - began < 2.0


async def test_path_and_query_parameters_become_headers(serve: ServeFactory) -> None:
    seen: dict[str, Any] = {}

    class Routes(RouteBuilder):
        def configure(self) -> None:
            (
                self.from_("http:/api/customers/{customer_id}/orders/{order_id}")
                .route_id("orders")
                .process(lambda ex: seen.update(ex.headers))
                .set_body("ok")
            )

    served = await serve(Routes())
    response = await served.client.get(
        f"{served.url}/api/customers/C-1/orders/42?expand=lines&tag=a&tag=b",
        headers={"x-request-id": "r-1", "eip.http.status": "500", "eip.evil": "1"},
    )
    assert response.status_code == 200
    assert response.text == "ok"
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert seen["customer_id"] == "C-1"
    assert seen["order_id"] == "42"
    assert seen["expand"] == "lines"
    assert seen["tag"] == ["a", "b"]
    assert seen["x-request-id"] == "r-1"
    assert seen["eip.http.method"] == "GET"
    assert seen["eip.http.path"] == "/api/customers/C-1/orders/42"
    assert "eip.evil" not in seen  # a client cannot set engine headers
    assert "eip.http.status" not in seen


async def test_reply_status_and_headers_come_from_the_route(serve: ServeFactory) -> None:
    class Routes(RouteBuilder):
        def configure(self) -> None:
            (
                self.from_("http:/api/customers?methods=POST")
                .route_id("create")
                .set_header("eip.http.status", 201)
                .set_header("Location", "/api/customers/9")
                .set_header("x-request-id", "changed")
                .set_body({"id": 9})
            )

    served = await serve(Routes())
    response = await served.client.post(
        f"{served.url}/api/customers", json={}, headers={"x-request-id": "r-1", "x-other": "o"}
    )
    assert response.status_code == 201
    assert response.headers["location"] == "/api/customers/9"
    assert response.headers["x-request-id"] == "changed"
    assert "x-other" not in response.headers  # request headers are not echoed back
    assert response.json() == {"id": 9}


async def test_in_only_route_answers_202_after_the_route_completed(serve: ServeFactory) -> None:
    done: list[bytes] = []

    async def slow(exchange: Any) -> None:
        await asyncio.sleep(0.05)
        done.append(exchange.body)

    class Routes(RouteBuilder):
        def configure(self) -> None:
            self.from_("http:/hooks/crm?pattern=in-only").route_id("hook").process(slow)

    served = await serve(Routes())
    response = await served.client.post(f"{served.url}/hooks/crm", content=b"event")
    assert response.status_code == 202
    assert response.content == b""
    assert done == [b"event"]


async def test_unknown_path_404_and_wrong_method_405(serve: ServeFactory) -> None:
    served = await serve(customer_routes())
    missing = await served.client.get(f"{served.url}/nowhere")
    assert missing.status_code == 404
    wrong = await served.client.delete(f"{served.url}/api/customers")
    assert wrong.status_code == 405
    assert wrong.headers["allow"] == "POST"
    trailing = await served.client.post(f"{served.url}/api/customers/", json=GOOD)
    assert trailing.status_code == 200


async def test_route_failure_answers_500_without_internals(serve: ServeFactory) -> None:
    def boom(exchange: Any) -> None:
        raise RuntimeError("password=hunter2 in a stack somewhere")

    class Routes(RouteBuilder):
        def configure(self) -> None:
            self.from_("http:/fail").route_id("fail").process(boom)
            self.from_("http:/fail-loud?expose_errors=true").route_id("loud").process(boom)

    served = await serve(Routes())
    response = await served.client.post(f"{served.url}/fail", content=b"x")
    assert response.status_code == 500
    payload = response.json()
    assert payload["error"] == "route failed"
    assert "hunter2" not in response.text
    assert payload["exchange_id"]
    loud = await served.client.post(f"{served.url}/fail-loud", content=b"x")
    assert "RuntimeError" in loud.json()["detail"]


async def test_a_dead_lettered_failure_counts_as_delivered(serve: ServeFactory) -> None:
    class Routes(RouteBuilder):
        def configure(self) -> None:
            self.error_handler(dead_letter_channel("mock:dead"))
            (
                self.from_("http:/hooks/erp?pattern=in-only")
                .route_id("hook")
                .process(lambda ex: 1 / 0)
            )

    served = await serve(Routes())
    response = await served.client.post(f"{served.url}/hooks/erp", content=b"evt")
    assert response.status_code == 202
    dead = served.context.mock("dead")
    assert dead.received_bodies == [b"evt"]


async def test_bad_input_found_by_the_route_answers_400(serve: ServeFactory) -> None:
    from eip.dataformats import json

    class Routes(RouteBuilder):
        def configure(self) -> None:
            self.from_("http:/raw").route_id("raw").unmarshal(json(Customer))

    served = await serve(Routes())
    response = await served.client.post(f"{served.url}/raw", content=b'{"id": "x"}')
    assert response.status_code == 400
    assert response.json()["location"] == "$.id"


async def test_concurrency_limit_sheds_load_with_503(serve: ServeFactory) -> None:
    release = asyncio.Event()
    entered = asyncio.Event()

    async def hold(exchange: Any) -> None:
        entered.set()
        await release.wait()

    class Routes(RouteBuilder):
        def configure(self) -> None:
            self.from_("http:/slow").route_id("slow").process(hold).set_body("done")

    served = await serve(Routes(), max_concurrency=1)
    first = asyncio.create_task(served.client.post(f"{served.url}/slow", content=b"1"))
    await asyncio.wait_for(entered.wait(), 5)
    second = await served.client.post(f"{served.url}/slow", content=b"2")
    assert second.status_code == 503
    assert second.headers["retry-after"] == "1"
    release.set()
    assert (await first).status_code == 200


async def test_a_stopped_route_answers_503(serve: ServeFactory) -> None:
    served = await serve(customer_routes())
    await served.context.stop_route("upsert")
    response = await served.client.post(f"{served.url}/api/customers", json=GOOD)
    assert response.status_code == 503
    await served.context.start_route("upsert")
    again = await served.client.post(f"{served.url}/api/customers", json=GOOD)
    assert again.status_code == 200


# -- authentication ------------------------------------------------------------------------


async def test_api_key_auth_rejects_missing_and_wrong_keys_alike(
    serve: ServeFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRM_KEYS", "key-one,key-two")
    seen: list[dict[str, Any]] = []

    class Routes(RouteBuilder):
        def configure(self) -> None:
            (
                self.from_(
                    "http:/hooks?auth=api_key&auth_header=x-api-key&credentials_env=CRM_KEYS"
                )
                .route_id("hooks")
                .process(lambda ex: seen.append(dict(ex.headers)))
                .set_body("ok")
            )

    served = await serve(Routes())
    url = f"{served.url}/hooks"
    missing = await served.client.post(url, content=b"x")
    wrong = await served.client.post(url, content=b"x", headers={"x-api-key": "nope"})
    good = await served.client.post(url, content=b"x", headers={"x-api-key": "key-two"})
    assert missing.status_code == wrong.status_code == 401
    assert missing.content == wrong.content
    assert missing.headers["www-authenticate"] == wrong.headers["www-authenticate"]
    assert good.status_code == 200
    assert len(seen) == 1
    assert "x-api-key" not in seen[0]  # the secret never reaches the route


async def test_basic_auth_sets_the_principal(serve: ServeFactory) -> None:
    principals: list[str] = []

    class Routes(RouteBuilder):
        def configure(self) -> None:
            (
                self.from_(http_server("/erp/callback", auth="basic", credentials="erp:s3cret:pw"))
                .route_id("callback")
                .process(lambda ex: principals.append(ex.headers["eip.http.principal"]))
            )

    served = await serve(Routes())
    token = base64.b64encode(b"erp:s3cret:pw").decode()
    ok = await served.client.post(
        f"{served.url}/erp/callback", content=b"x", headers={"authorization": f"Basic {token}"}
    )
    bad = await served.client.post(
        f"{served.url}/erp/callback", content=b"x", headers={"authorization": "Basic !!!"}
    )
    assert ok.status_code == 200
    assert bad.status_code == 401
    assert principals == ["erp"]


async def test_jwt_bearer_auth_and_scopes(serve: ServeFactory) -> None:
    secret = "a-very-long-test-secret-of-32-bytes-or-more!"
    claims_seen: list[dict[str, Any]] = []

    class Routes(RouteBuilder):
        def configure(self) -> None:
            (
                self.from_(
                    http_server(
                        "/api/orders",
                        auth="jwt",
                        credentials=secret,
                        jwt_audience="eip",
                        required_scopes=["orders:write"],
                    )
                )
                .route_id("orders")
                .process(lambda ex: claims_seen.append(ex.properties["eip.http.claims"]))
            )

    served = await serve(Routes())
    url = f"{served.url}/api/orders"
    now = int(time.time())
    good = jwt.encode(
        {"sub": "crm", "aud": "eip", "exp": now + 60, "scope": "orders:write"}, secret, "HS256"
    )
    no_scope = jwt.encode({"sub": "crm", "aud": "eip", "exp": now + 60}, secret, "HS256")
    expired = jwt.encode(
        {"sub": "crm", "aud": "eip", "exp": now - 60, "scope": "orders:write"}, secret, "HS256"
    )

    async def call(token: str | None) -> int:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return (await served.client.post(url, content=b"x", headers=headers)).status_code

    assert await call(good) == 200
    assert await call(no_scope) == 403
    assert await call(expired) == 401
    assert await call(None) == 401
    assert claims_seen[0]["sub"] == "crm"


async def test_global_auth_applies_unless_a_route_opts_out(
    serve: ServeFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPS_TOKEN", "t0ken")

    class Routes(RouteBuilder):
        def configure(self) -> None:
            self.from_("http:/private").route_id("private").set_body("secret")
            self.from_("http:/public?auth=none").route_id("public").set_body("hello")

    served = await serve(Routes(), auth=AuthSpec(scheme="bearer", credentials_env="OPS_TOKEN"))
    assert (await served.client.get(f"{served.url}/private")).status_code == 401
    authorized = await served.client.get(
        f"{served.url}/private", headers={"authorization": "Bearer t0ken"}
    )
    assert authorized.text == "secret"
    assert (await served.client.get(f"{served.url}/public")).text == "hello"


async def test_auth_misconfiguration_fails_at_start_naming_the_option(
    serve: ServeFactory,
) -> None:
    class Routes(RouteBuilder):
        def configure(self) -> None:
            self.from_("http:/x?auth=api_key&credentials_env=EIP_TEST_UNSET_VAR").route_id("x")

    with pytest.raises((RouteDefinitionError, LifecycleError), match="EIP_TEST_UNSET_VAR"):
        await serve(Routes())


# -- definition errors, shared server, TLS ------------------------------------------------


async def test_unknown_option_fails_at_start_listing_valid_ones(serve: ServeFactory) -> None:
    class Routes(RouteBuilder):
        def configure(self) -> None:
            self.from_("http:/x?metods=POST").route_id("x")

    with pytest.raises(RouteDefinitionError) as caught:
        await serve(Routes())
    assert caught.value.option == "metods"
    assert "methods" in (caught.value.valid or [])


async def test_two_routes_on_one_path_and_method_are_refused(serve: ServeFactory) -> None:
    class Routes(RouteBuilder):
        def configure(self) -> None:
            self.from_("http:/x?methods=POST").route_id("a")
            self.from_("http:/x?methods=POST").route_id("b")

    with pytest.raises((RouteDefinitionError, LifecycleError), match="already served"):
        await serve(Routes())


async def test_routes_share_one_server_and_split_by_method(serve: ServeFactory) -> None:
    class Routes(RouteBuilder):
        def configure(self) -> None:
            self.from_("http:/api/items?methods=GET").route_id("list").set_body("list")
            self.from_("http:/api/items?methods=POST").route_id("add").set_body("added")

    served = await serve(Routes())
    assert len(served.context.component("http").servers) == 1
    assert (await served.client.get(f"{served.url}/api/items")).text == "list"
    assert (await served.client.post(f"{served.url}/api/items")).text == "added"


async def test_a_taken_port_fails_start_clearly(serve: ServeFactory) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        with pytest.raises(LifecycleError, match=f"cannot listen on 127.0.0.1:{port}"):
            await serve(customer_routes(), port=port)
    finally:
        taken.close()


async def test_tls_via_server_settings(serve: ServeFactory, tmp_path: Any) -> None:
    import datetime
    import ipaddress

    import httpx
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    served = await serve(customer_routes(), ssl_certfile=str(cert_file), ssl_keyfile=str(key_file))
    assert served.url.startswith("https://")
    import ssl

    async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=cert_file)) as client:
        response = await client.post(f"{served.url}/api/customers", json=GOOD)
    assert response.status_code == 200
    assert response.json()["id"] == 1001


async def test_connections_do_not_wait_for_delayed_acks(serve: ServeFactory) -> None:
    """Replies go out in two writes (headers, body): without TCP_NODELAY on the accepted
    sockets each sequential request waited ~40 ms for the client's delayed ACK."""
    served = await serve(customer_routes())
    server = served.context.component("http").server
    listening = server._socket
    assert listening is not None
    assert listening.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    response = await served.client.post(f"{served.url}/api/customers", json=GOOD)
    assert response.status_code == 200


async def test_idle_keep_alive_connections_are_closed_after_the_timeout(
    serve: ServeFactory,
) -> None:
    served = await serve(customer_routes(), keep_alive_timeout=1)
    host, port = served.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    body = msgspec.json.encode(GOOD)
    writer.write(
        b"POST /api/customers HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    await writer.drain()
    answer = await asyncio.wait_for(reader.readuntil(b"}"), 5)
    assert answer.startswith(b"HTTP/1.1 200")
    began = time.monotonic()
    rest = await asyncio.wait_for(reader.read(), 5)  # b"" once the server closes the socket
    assert rest == b""
    assert 0.5 < time.monotonic() - began < 3.0
    writer.close()
