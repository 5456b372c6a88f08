"""Unit tests of eip.components.http.auth: every scheme, its denials and its config errors."""

from __future__ import annotations

import base64
import datetime
import hmac
import logging
import re
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from eip.components.http.auth import Authenticator, AuthSpec, Denial, Principal

SECRET = "s3cret-hs256-key-that-is-32-bytes!!"
UNAUTHORIZED = b'{"error":"unauthorized"}'


def auth(**options: Any) -> Authenticator:
    return Authenticator(AuthSpec(**options))


def denied(result: Principal | Denial, status: int = 401) -> Denial:
    assert isinstance(result, Denial), result
    assert result.status == status
    assert (b"content-type", b"application/json") in result.headers
    return result


def basic(user_pass: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(user_pass.encode()).decode()}


def hs_token(secret: str = SECRET, alg: str = "HS256", **claims: Any) -> str:
    payload = {"sub": "alice", "exp": int(time.time()) + 60, **claims}
    return jwt.encode({k: v for k, v in payload.items() if v is not None}, secret, algorithm=alg)


@pytest.fixture(scope="module")
def rsa_keys() -> tuple[rsa.RSAPrivateKey, str]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public.decode()


# --- none -------------------------------------------------------------------------------------


def test_none_always_lets_through_anonymously() -> None:
    a = auth()
    result = a.check({"authorization": "Bearer whatever"})
    assert isinstance(result, Principal)
    assert (result.name, result.scheme, result.claims) == (None, "none", None)
    assert a.secret_headers == ()
    assert a.security_scheme() is None


# --- api key ----------------------------------------------------------------------------------


def test_api_key_accepts_any_of_several_keys_and_never_names_the_principal() -> None:
    a = auth(scheme="api_key", credentials="key-one, key-two,key-three")
    for key in ("key-one", "key-two", "key-three"):
        result = a.check({"x-api-key": key})
        assert isinstance(result, Principal)
        assert (result.name, result.scheme, result.claims) == (None, "api_key", None)


def test_api_key_missing_and_wrong_get_the_same_constant_401() -> None:
    a = auth(scheme="api_key", credentials="key-one")
    missing = denied(a.check({}))
    wrong = denied(a.check({"x-api-key": "key-on"}))
    longer = denied(a.check({"x-api-key": "key-one-and-more"}))
    empty = denied(a.check({"x-api-key": "  "}))
    assert missing.body == wrong.body == longer.body == empty.body == UNAUTHORIZED
    assert missing.headers == wrong.headers == longer.headers == empty.headers
    assert (b"www-authenticate", b'ApiKey realm="eip"') in missing.headers


def test_api_key_custom_header_and_secret_headers() -> None:
    a = auth(scheme="api_key", header="X-CRM-Key", credentials="k1")
    assert a.secret_headers == ("x-crm-key",)
    assert isinstance(a.check({"x-crm-key": "k1"}), Principal)
    denied(a.check({"x-api-key": "k1"}))
    assert a.security_scheme() == (
        "apiKey",
        {"type": "apiKey", "in": "header", "name": "X-CRM-Key"},
    )


def test_api_key_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRM_KEYS", "env-key-1,env-key-2")
    a = auth(scheme="api_key", credentials_env="CRM_KEYS")
    assert isinstance(a.check({"x-api-key": "env-key-2"}), Principal)
    denied(a.check({"x-api-key": "CRM_KEYS"}))
    monkeypatch.setenv("CRM_KEYS", "rotated")  # read once, at construction
    assert isinstance(a.check({"x-api-key": "env-key-1"}), Principal)


def test_every_configured_key_is_compared_as_a_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, int]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr("eip.components.http.auth.hmac.compare_digest", spy)
    a = auth(scheme="api_key", credentials="first,second,third")
    assert isinstance(a.check({"x-api-key": "first"}), Principal)  # matches the first ...
    assert calls == [(32, 32)] * 3  # ... and still compares all three, SHA-256 to SHA-256
    calls.clear()
    denied(a.check({"x-api-key": "a-much-longer-wrong-key-than-any-configured"}))
    assert calls == [(32, 32)] * 3


# --- bearer -----------------------------------------------------------------------------------


def test_bearer_success_missing_wrong_malformed() -> None:
    a = auth(scheme="bearer", credentials="tok-a,tok-b")
    assert isinstance(a.check({"authorization": "Bearer tok-b"}), Principal)
    assert isinstance(a.check({"authorization": "bearer   tok-a"}), Principal)  # word: any case
    results = [
        a.check({}),
        a.check({"authorization": "Bearer tok-c"}),
        a.check({"authorization": "Bearer"}),
        a.check({"authorization": "Basic tok-a"}),
        a.check({"authorization": "tok-a"}),
        a.check({"authorization": ""}),
    ]
    first = denied(results[0])
    assert (b"www-authenticate", b'Bearer realm="eip"') in first.headers
    for result in results:
        assert denied(result).body == first.body
        assert denied(result).headers == first.headers
    assert a.secret_headers == ("authorization",)
    assert a.security_scheme() == ("bearerAuth", {"type": "http", "scheme": "bearer"})


def test_denial_headers_are_a_fresh_list_each_time() -> None:
    a = auth(scheme="bearer", credentials="tok")
    first = denied(a.check({}))
    first.headers.append((b"x-extra", b"1"))
    assert (b"x-extra", b"1") not in denied(a.check({})).headers


# --- basic ------------------------------------------------------------------------------------


def test_basic_success_names_the_user() -> None:
    a = auth(scheme="basic", credentials="alice:pa:ss, bob:hunter2")
    result = a.check(basic("alice:pa:ss"))  # the password may contain colons
    assert isinstance(result, Principal)
    assert (result.name, result.scheme) == ("alice", "basic")
    bob = a.check(basic("bob:hunter2"))
    assert isinstance(bob, Principal)
    assert bob.name == "bob"
    assert a.security_scheme() == ("basicAuth", {"type": "http", "scheme": "basic"})


def test_basic_unknown_user_and_wrong_password_look_alike() -> None:
    a = auth(scheme="basic", credentials="alice:secret")
    unknown = denied(a.check(basic("mallory:secret")))
    wrong = denied(a.check(basic("alice:secre")))
    missing = denied(a.check({}))
    assert unknown.body == wrong.body == missing.body == UNAUTHORIZED
    assert unknown.headers == wrong.headers == missing.headers
    assert (b"www-authenticate", b'Basic realm="eip", charset="UTF-8"') in missing.headers


@pytest.mark.parametrize(
    "value",
    [
        "Basic !!!not-base64!!!",
        "Basic " + base64.b64encode(b"no-colon-here").decode(),
        "Basic " + base64.b64encode(b"\xff\xfe:\xff").decode(),  # not UTF-8
        "Basic YWxpY2U6c2VjcmV",  # "alice:secret" with its last character cut off
        "Basic ålice",
        "Bearer " + base64.b64encode(b"alice:secret").decode(),
        "Basic",
    ],
)
def test_basic_malformed_is_401_not_an_exception(value: str) -> None:
    a = auth(scheme="basic", credentials="alice:secret")
    assert denied(a.check({"authorization": value})).body == UNAUTHORIZED


def test_basic_utf8_user() -> None:
    a = auth(scheme="basic", credentials="jürgen:pässword")
    result = a.check(basic("jürgen:pässword"))
    assert isinstance(result, Principal)
    assert result.name == "jürgen"


# --- jwt --------------------------------------------------------------------------------------


def test_jwt_hs256_success_carries_sub_and_claims() -> None:
    a = auth(scheme="jwt", credentials=SECRET)
    result = a.check({"authorization": f"Bearer {hs_token(role='admin')}"})
    assert isinstance(result, Principal)
    assert (result.name, result.scheme) == ("alice", "jwt")
    assert result.claims is not None
    assert result.claims["role"] == "admin"
    assert "admin" not in repr(result)  # claims stay out of logs
    assert a.secret_headers == ("authorization",)
    assert a.security_scheme() == (
        "bearerJwt",
        {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
    )


def test_jwt_rs256_with_generated_key(rsa_keys: tuple[rsa.RSAPrivateKey, str]) -> None:
    private, public_pem = rsa_keys
    a = auth(scheme="jwt", credentials=public_pem, jwt_algorithms=["RS256"])
    token = jwt.encode({"sub": "svc", "exp": int(time.time()) + 60}, private, algorithm="RS256")
    result = a.check({"authorization": f"Bearer {token}"})
    assert isinstance(result, Principal)
    assert result.name == "svc"
    forged = jwt.encode({"sub": "svc", "exp": int(time.time()) + 60}, SECRET, algorithm="HS256")
    denied(a.check({"authorization": f"Bearer {forged}"}))


def test_jwt_rs256_key_file(tmp_path: Path, rsa_keys: tuple[rsa.RSAPrivateKey, str]) -> None:
    private, public_pem = rsa_keys
    key_file = tmp_path / "jwt.pem"
    key_file.write_text(public_pem)
    a = auth(scheme="jwt", jwt_key_file=str(key_file), jwt_algorithms=["RS256", "RS512"])
    token = jwt.encode({"sub": "x", "exp": int(time.time()) + 60}, private, algorithm="RS512")
    assert isinstance(a.check({"authorization": f"Bearer {token}"}), Principal)


def test_jwt_es256() -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    a = auth(scheme="jwt", credentials=pem.decode(), jwt_algorithms=["ES256"])
    token = jwt.encode({"sub": "e", "exp": int(time.time()) + 60}, private, algorithm="ES256")
    assert isinstance(a.check({"authorization": f"Bearer {token}"}), Principal)


def test_jwt_key_may_be_a_certificate(rsa_keys: tuple[rsa.RSAPrivateKey, str]) -> None:
    private, _ = rsa_keys
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "idp")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder(subject_name=name, issuer_name=name)
        .public_key(private.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(private, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    a = auth(scheme="jwt", credentials=pem, jwt_algorithms=["RS256"])
    token = jwt.encode({"sub": "c", "exp": int(time.time()) + 60}, private, algorithm="RS256")
    assert isinstance(a.check({"authorization": f"Bearer {token}"}), Principal)


def test_es256_needs_a_p256_key() -> None:
    p384 = ec.generate_private_key(ec.SECP384R1()).public_key()
    pem = p384.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(ValueError, match="P-256"):
        auth(scheme="jwt", credentials=pem.decode(), jwt_algorithms=["ES256"])


def test_jwt_rejections_share_one_constant_401(caplog: pytest.LogCaptureFixture) -> None:
    a = auth(scheme="jwt", credentials=SECRET, jwt_audience="crm", jwt_issuer="https://idp")
    now = int(time.time())
    good = hs_token(aud="crm", iss="https://idp")
    assert isinstance(a.check({"authorization": f"Bearer {good}"}), Principal)
    bad_tokens = {
        "expired": hs_token(aud="crm", iss="https://idp", exp=now - 10),
        "wrong audience": hs_token(aud="erp", iss="https://idp"),
        "no audience": hs_token(iss="https://idp"),
        "wrong issuer": hs_token(aud="crm", iss="https://evil"),
        "wrong secret": hs_token(secret="another-secret-of-at-least-32-bytes", aud="crm"),
        "not yet valid": hs_token(aud="crm", iss="https://idp", nbf=now + 60),
        "garbage": "not.a.jwt",
        "no exp": hs_token(aud="crm", iss="https://idp", exp=None),
    }
    reference = denied(a.check({}))
    assert (b"www-authenticate", b'Bearer realm="eip"') in reference.headers
    with caplog.at_level(logging.DEBUG, logger="eip.http.auth"):
        for name, token in bad_tokens.items():
            result = denied(a.check({"authorization": f"Bearer {token}"}))
            assert (result.body, result.headers) == (reference.body, reference.headers), name
    assert "ExpiredSignatureError" in caplog.text  # the real reason, at DEBUG
    for token in bad_tokens.values():
        assert token not in caplog.text
    assert SECRET not in caplog.text


def test_jwt_none_algorithm_token_is_rejected() -> None:
    a = auth(scheme="jwt", credentials=SECRET)
    unsigned = jwt.encode({"sub": "admin", "exp": int(time.time()) + 60}, "", algorithm="none")
    assert denied(a.check({"authorization": f"Bearer {unsigned}"})).body == UNAUTHORIZED


def test_jwt_leeway_and_optional_exp() -> None:
    expired = hs_token(exp=int(time.time()) - 5)
    lenient = auth(scheme="jwt", credentials=SECRET, jwt_leeway=30)
    assert isinstance(lenient.check({"authorization": f"Bearer {expired}"}), Principal)
    no_exp = hs_token(exp=None)
    denied(auth(scheme="jwt", credentials=SECRET).check({"authorization": f"Bearer {no_exp}"}))
    relaxed = auth(scheme="jwt", credentials=SECRET, jwt_require_exp=False)
    assert isinstance(relaxed.check({"authorization": f"Bearer {no_exp}"}), Principal)


def test_jwt_missing_scope_is_403() -> None:
    a = auth(scheme="jwt", credentials=SECRET, required_scopes=["crm.read", "crm.write"])
    both = hs_token(scope="crm.read crm.write other")
    as_list = hs_token(scp=["crm.write", "crm.read"])
    one = hs_token(scope="crm.read")
    none = hs_token()
    assert isinstance(a.check({"authorization": f"Bearer {both}"}), Principal)
    assert isinstance(a.check({"authorization": f"Bearer {as_list}"}), Principal)
    forbidden = denied(a.check({"authorization": f"Bearer {one}"}), 403)
    assert forbidden.body == b'{"error":"forbidden"}'
    assert (
        b"www-authenticate",
        b'Bearer realm="eip", error="insufficient_scope"',
    ) in forbidden.headers
    assert denied(a.check({"authorization": f"Bearer {none}"}), 403).body == forbidden.body
    denied(a.check({}), 401)  # no token at all is still 401, not 403


def test_jwt_secret_from_env_and_several_hs_algorithms(monkeypatch: pytest.MonkeyPatch) -> None:
    long_secret = SECRET + "-padded-to-48-bytes-for-hs384"
    monkeypatch.setenv("JWT_SECRET", long_secret)
    a = auth(scheme="jwt", credentials_env="JWT_SECRET", jwt_algorithms=["HS256", "HS384"])
    for alg in ("HS256", "HS384"):
        token = hs_token(secret=long_secret, alg=alg)
        assert isinstance(a.check({"authorization": f"Bearer {token}"}), Principal)
    hs512 = hs_token(secret=long_secret + "x" * 16, alg="HS512")  # not an allowed algorithm
    denied(a.check({"authorization": f"Bearer {hs512}"}))


# --- configuration errors ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"scheme": "api_key"}, "auth=api_key needs credentials or credentials_env"),
        ({"scheme": "basic", "credentials": " , "}, "credentials contain no entry"),
        ({"scheme": "basic", "credentials": "alice"}, "entry 1 is not 'user:password'"),
        ({"scheme": "basic", "credentials": "a:b,:pw"}, "entry 2 is not 'user:password'"),
        ({"scheme": "api_key", "credentials_env": "EIP_TEST_UNSET"}, "'EIP_TEST_UNSET' is not set"),
        ({"scheme": "bearer", "credentials": "x", "credentials_env": "Y"}, "set only one of"),
        ({"scheme": "api_key", "credentials": "k", "header": "bad header"}, "auth header"),
        ({"scheme": "bearer", "credentials": "k", "header": "x-key"}, "auth header applies"),
        ({"scheme": "api_key", "credentials": "k", "required_scopes": ["a"]}, "required_scopes"),
        ({"scheme": "bearer", "credentials": "k", "jwt_audience": "a"}, "jwt_audience"),
        ({"credentials": "k"}, "auth scheme is 'none'"),
        ({"scheme": "bearer", "credentials": "k", "realm": 'a"b'}, "auth realm"),
        (
            {"scheme": "jwt", "credentials": SECRET, "jwt_algorithms": ["none"]},
            "unknown jwt algorithm 'none'",
        ),
        ({"scheme": "jwt", "credentials": SECRET, "jwt_algorithms": []}, "jwt_algorithms"),
        (
            {"scheme": "jwt", "credentials": SECRET, "jwt_algorithms": ["HS256", "RS256"]},
            "jwt_algorithms",
        ),
        ({"scheme": "jwt", "credentials": "short"}, "at least 32 bytes"),
        (
            {"scheme": "jwt", "credentials": SECRET, "jwt_algorithms": ["HS512"]},
            "at least 64 bytes",
        ),
        ({"scheme": "jwt", "credentials": SECRET, "jwt_algorithms": ["RS256"]}, "PEM public key"),
        ({"scheme": "jwt", "credentials": SECRET, "jwt_leeway": -1}, "jwt_leeway"),
        ({"scheme": "jwt"}, "needs credentials or credentials_env or jwt_key_file"),
        (
            {"scheme": "jwt", "jwt_key_file": "/nonexistent/jwt.pem"},
            "jwt_key_file '/nonexistent/jwt.pem' cannot be read",
        ),
    ],
)
def test_config_errors_name_the_option(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=r"auth|jwt") as info:
        Authenticator(AuthSpec(**options))
    assert message in str(info.value)
    secret = options.get("credentials")
    if secret and len(secret) > 3:
        assert secret not in str(info.value)


def test_empty_env_var_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRM_KEYS", "  ")
    with pytest.raises(ValueError, match="auth credentials_env 'CRM_KEYS' is empty"):
        auth(scheme="api_key", credentials_env="CRM_KEYS")


def test_rs256_rejects_wrong_key_types() -> None:
    ec_pem = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(ValueError, match="must be an RSA public key"):
        auth(scheme="jwt", credentials=ec_pem.decode(), jwt_algorithms=["RS256"])
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()
    small_pem = small.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(ValueError, match="at least 2048 bits"):
        auth(scheme="jwt", credentials=small_pem.decode(), jwt_algorithms=["RS256"])


# --- secrets stay out of reprs ----------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"scheme": "api_key", "credentials": "super-secret-key-1,super-secret-key-2"},
        {"scheme": "bearer", "credentials": "super-secret-token"},
        {"scheme": "basic", "credentials": "alice:super-secret-password"},
        {"scheme": "jwt", "credentials": SECRET},
    ],
)
def test_repr_and_str_never_show_the_secret(options: dict[str, Any]) -> None:
    spec = AuthSpec(**options)
    a = Authenticator(spec)
    secret_parts = [p for p in re.split("[:,]", options["credentials"]) if len(p) > 5]
    assert secret_parts
    for text in (repr(a), str(a), repr(spec), str(spec), f"{spec}"):
        assert options["scheme"] in text
        for part in secret_parts:
            assert part not in text
    assert "***" in repr(spec)
