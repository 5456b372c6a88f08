"""WS-Security UsernameToken on the SOAP consumer, against a real server on 127.0.0.1.

zeep's own UsernameToken (text and digest) shows a real client gets through; raw envelopes
show each refusal: wrong password, unknown user, replayed nonce, stale timestamp, missing
header, all answered with the wsse: fault code and without the route running.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import os
from typing import Any

import pytest
import zeep
import zeep.exceptions
from zeep.wsse.username import UsernameToken

from eip import headers as H
from eip.components.soap.wssecurity import PASSWORD_DIGEST, WSSE, WSU
from eip.errors import RouteDefinitionError

from .test_soap_consumer import CHECK, S11, S12, WSDL, in_thread, serve

__all__ = ["serve"]

USERS_ENV = "EIP_TEST_WSS_USERS"


@pytest.fixture(autouse=True)
def users(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(USERS_ENV, "erp-callback:s3cret-pass, auditor:other-pass")


def options(**extra: Any) -> dict[str, Any]:
    return {"ws_security": "username_token", "ws_users_env": USERS_ENV, **extra}


def now_text(offset: float = 0.0) -> str:
    moment = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=offset)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def token(
    user: str = "erp-callback",
    password: str = "s3cret-pass",
    *,
    digest: bool = False,
    nonce: bytes | None = None,
    created: str | None = None,
    timestamp: str = "",
) -> str:
    nonce = os.urandom(16) if nonce is None else nonce
    created = now_text() if created is None else created
    if digest:
        value = base64.b64encode(
            hashlib.sha1(nonce + created.encode() + password.encode()).digest()
        ).decode()
        kind = PASSWORD_DIGEST
    else:
        value, kind = password, PASSWORD_DIGEST.replace("Digest", "Text")
    return (
        f'<wsse:Security xmlns:wsse="{WSSE}" xmlns:wsu="{WSU}">{timestamp}'
        f"<wsse:UsernameToken><wsse:Username>{user}</wsse:Username>"
        f'<wsse:Password Type="{kind}">{value}</wsse:Password>'
        f"<wsse:Nonce>{base64.b64encode(nonce).decode()}</wsse:Nonce>"
        f"<wsu:Created>{created}</wsu:Created></wsse:UsernameToken></wsse:Security>"
    )


def call(security: str, version: str = "1.1") -> bytes:
    ns = S11 if version == "1.1" else S12
    header = f"<e:Header>{security}</e:Header>" if security else ""
    return (
        f'<e:Envelope xmlns:e="{ns}" xmlns:c="http://erp.example.com/schemas/customer">'
        f"{header}<e:Body>{CHECK}</e:Body></e:Envelope>"
    ).encode()


@pytest.mark.parametrize("digest", [False, True], ids=["PasswordText", "PasswordDigest"])
async def test_zeep_with_a_username_token_gets_through(serve: Any, digest: bool) -> None:
    served = await serve(**options())
    wsse = UsernameToken("erp-callback", "s3cret-pass", use_digest=digest)
    client = zeep.Client(WSDL, wsse=wsse)
    service = client.create_service(
        "{http://erp.example.com/services/customer}CustomerSoap11Binding", served.url
    )
    answer = await in_thread(service.CheckCredit, "C000001", "10.00")
    assert answer.approved is True
    headers, _ = served.seen[0]
    assert headers[H.HTTP_PRINCIPAL] == "erp-callback"


@pytest.mark.parametrize(
    ("security", "code"),
    [
        ("", "InvalidSecurity"),
        (token(password="wrong"), "FailedAuthentication"),
        (token(user="nobody"), "FailedAuthentication"),
        (token(password="wrong", digest=True), "FailedAuthentication"),
        (token(created=now_text(-3600)), "MessageExpired"),
        (token(created=now_text(+3600), digest=True), "MessageExpired"),
        (
            token(
                timestamp=f"<wsu:Timestamp><wsu:Expires>{now_text(-900)}</wsu:Expires>"
                "</wsu:Timestamp>"
            ),
            "MessageExpired",
        ),
        (token().replace("PasswordText", "PasswordKerberos"), "UnsupportedSecurityToken"),
        (f'<wsse:Security xmlns:wsse="{WSSE}"/>', "InvalidSecurity"),
    ],
    ids=[
        "missing",
        "wrong-password",
        "unknown-user",
        "wrong-digest",
        "stale",
        "from-the-future",
        "expired-timestamp",
        "unsupported-type",
        "no-token",
    ],
)
@pytest.mark.parametrize("version", ["1.1", "1.2"])
async def test_refused_requests_get_the_wsse_fault_and_never_run(
    serve: Any, security: str, code: str, version: str
) -> None:
    served = await serve(**options())
    response = await served.post(call(security, version), version)
    assert response.status_code == (500 if version == "1.1" else 400)
    text = response.text
    assert code in text
    assert WSSE in text  # the code is a wsse: QName, its namespace declared
    if version == "1.2":
        assert "Sender" in text  # 1.2: Sender, with the wsse code as its Subcode
    assert "s3cret-pass" not in text
    assert served.seen == []


async def test_same_answer_for_unknown_user_and_wrong_password(serve: Any) -> None:
    served = await serve(**options())
    first = await served.post(call(token(user="nobody")))
    second = await served.post(call(token(password="wrong")))
    assert first.text == second.text


async def test_a_replayed_nonce_is_refused(serve: Any) -> None:
    served = await serve(**options())
    once = call(token(nonce=b"0123456789abcdef", digest=True))
    assert (await served.post(once)).status_code == 200
    replay = await served.post(once)
    assert replay.status_code == 500
    assert "FailedAuthentication" in replay.text
    assert len(served.seen) == 1


async def test_the_skew_is_configurable(serve: Any) -> None:
    served = await serve(**options(ws_max_skew=7200))
    response = await served.post(call(token(created=now_text(-3600))))
    assert response.status_code == 200


def test_a_missing_users_variable_fails_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    from eip import Context, RouteBuilder
    from eip.components.soap import soap_server

    monkeypatch.delenv(USERS_ENV)

    class R(RouteBuilder):
        def configure(self) -> None:
            self.from_(soap_server("/svc", wsdl=WSDL, **options())).route_id("s").to("log:x")

    context = Context()
    context.add_routes(R())
    with pytest.raises(RouteDefinitionError, match=f"ws_users_env '{USERS_ENV}' is not set"):
        context.validate()


async def test_zeep_sees_the_fault_code(serve: Any) -> None:
    served = await serve(**options())
    client = zeep.Client(WSDL, wsse=UsernameToken("erp-callback", "nope"))
    service = client.create_service(
        "{http://erp.example.com/services/customer}CustomerSoap11Binding", served.url
    )
    with pytest.raises(zeep.exceptions.Fault) as fault:
        await in_thread(service.CheckCredit, "C000001", "10.00")
    assert "FailedAuthentication" in str(fault.value.code)
