"""Authentication for the HTTP consumer: API key, bearer token, JWT and HTTP Basic.

Everything that can be wrong with the configuration fails in :class:`Authenticator`'s
constructor, at route start, with a message naming the option; env vars and key files are read
there too, so a request only hashes, compares or verifies.

What a client learns is deliberately little. Every 401 of an authenticator has the same body
and headers, whether the credential was missing, malformed, unknown, expired or of another
audience; the real reason goes to the ``eip.http.auth`` logger at DEBUG, never with the secret.
Presented keys, tokens and ``user:password`` pairs are hashed with SHA-256 and compared with
:func:`hmac.compare_digest` against *every* configured digest, so neither the position of the
match nor a difference in length shows in the timing.

``WWW-Authenticate`` on 401: ``ApiKey realm="eip"`` (api_key; a non-standard scheme word, since
no standard one exists), ``Bearer realm="eip"`` (bearer, jwt; RFC 6750, without ``error=`` so
that "missing" and "invalid" look alike) and ``Basic realm="eip", charset="UTF-8"`` (RFC 7617).
A valid JWT without the required scopes gets 403 with ``error="insufficient_scope"``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

__all__ = ["AuthSpec", "Authenticator", "Denial", "Principal"]

log = logging.getLogger("eip.http.auth")

_HMAC_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}  # RFC 7518 3.2: key >= hash output
_RSA = ("RS256", "RS384", "RS512")
_EC = ("ES256",)
_JWT_ONLY = ("jwt_key_file", "jwt_audience", "jwt_issuer", "jwt_leeway", "required_scopes")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 header field name
_UNAUTHORIZED = b'{"error":"unauthorized"}'
_FORBIDDEN = b'{"error":"forbidden"}'
_JSON = (b"content-type", b"application/json")


class AuthSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How an HTTP consumer authenticates requests. ``credentials`` is comma-separated for
    api_key, bearer and basic (``user:password`` pairs; entries are stripped, so a key or password
    cannot contain a comma or begin or end with a space); for jwt it is one key, not split.
    Prefer ``credentials_env`` or ``jwt_key_file``: a spec's repr never shows ``credentials``,
    but the spec may still be written down where you keep routes."""

    scheme: Literal["none", "api_key", "bearer", "jwt", "basic"] = "none"
    header: str = "x-api-key"
    credentials: str = ""
    credentials_env: str = ""
    jwt_algorithms: list[str] = msgspec.field(default_factory=lambda: ["HS256"])
    jwt_key_file: str = ""
    jwt_audience: str = ""
    jwt_issuer: str = ""
    jwt_leeway: float = 0.0
    jwt_require_exp: bool = True
    required_scopes: list[str] = msgspec.field(default_factory=list)
    realm: str = "eip"

    def __repr__(self) -> str:  # the options that differ from the defaults, never the secret
        default = AuthSpec()
        shown = [
            f"{name}={'***' if name == 'credentials' else repr(getattr(self, name))}"
            for name in self.__struct_fields__
            if name == "scheme" or getattr(self, name) != getattr(default, name)
        ]
        return f"AuthSpec({', '.join(shown)})"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request is from. ``name`` is the Basic user or the JWT ``sub``; for api_key and
    bearer it is None, because the only identity there is the secret itself."""

    name: str | None
    scheme: str
    claims: dict[str, Any] | None = None

    def __repr__(self) -> str:  # claims may hold personal data; keep them out of logs
        return f"Principal(name={self.name!r}, scheme={self.scheme!r})"


@dataclass(frozen=True, slots=True)
class Denial:
    """The response to send instead of running the route: raw ASGI headers, constant body.
    Each denial gets its own ``headers`` list, so a consumer may append to it."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


_ANONYMOUS = Principal(None, "none")


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()


def _matches(presented: str, digests: tuple[bytes, ...]) -> bool:
    """Compare with every digest, without an early exit, so timing says nothing of which."""
    probe = _digest(presented)
    hit = False
    for expected in digests:
        hit |= hmac.compare_digest(probe, expected)
    return hit


class Authenticator:
    """Checks one request's headers against an :class:`AuthSpec`; build one per route."""

    __slots__ = ("_401", "_403", "_digests", "_jwt", "_scheme", "_secret_headers", "_spec")

    def __init__(self, spec: AuthSpec) -> None:
        self._spec = spec
        self._scheme = spec.scheme
        self._digests: tuple[bytes, ...] = ()
        self._jwt: dict[str, Any] = {}
        _check_applicable(spec)
        realm = spec.realm
        if not (realm.isascii() and realm.isprintable()) or '"' in realm or "\\" in realm:
            raise ValueError("auth realm must be printable ASCII without quotes or backslashes")
        challenge = {
            "none": "",
            "api_key": f'ApiKey realm="{spec.realm}"',
            "bearer": f'Bearer realm="{spec.realm}"',
            "jwt": f'Bearer realm="{spec.realm}"',
            "basic": f'Basic realm="{spec.realm}", charset="UTF-8"',
        }[spec.scheme]
        self._401 = [_JSON, (b"www-authenticate", challenge.encode("ascii"))]
        scope = f'Bearer realm="{spec.realm}", error="insufficient_scope"'
        self._403 = [_JSON, (b"www-authenticate", scope.encode("ascii"))]
        self._secret_headers: tuple[str, ...] = ()
        if spec.scheme == "api_key":
            if not _TOKEN.fullmatch(spec.header):
                raise ValueError(f"auth header {spec.header!r} is not a valid header name")
            self._secret_headers = (spec.header.lower(),)
        elif spec.scheme != "none":
            self._secret_headers = ("authorization",)
        if spec.scheme == "jwt":
            self._jwt = _jwt_config(spec)
        elif spec.scheme != "none":
            self._digests = _credential_digests(spec)

    def __repr__(self) -> str:  # never the secrets, not even their digests
        return f"Authenticator(scheme={self._scheme!r}, accepted={len(self._digests)})"

    @property
    def secret_headers(self) -> tuple[str, ...]:
        """Lowercase names of the headers carrying credentials, for the consumer to drop."""
        return self._secret_headers

    def check(self, headers: Mapping[str, str]) -> Principal | Denial:
        """Who sent these (lowercase-named) headers, or the 401/403 to answer instead."""
        scheme = self._scheme
        if scheme == "none":
            return _ANONYMOUS
        if scheme == "api_key":
            key = headers.get(self._secret_headers[0], "").strip()
            if not key:
                return self._deny("no api key header")
            ok = _matches(key, self._digests)
            return Principal(None, scheme) if ok else self._deny("unknown api key")
        parts = headers.get("authorization", "").split(None, 1)
        if not parts:
            return self._deny("no authorization header")
        expected = "basic" if scheme == "basic" else "bearer"
        if parts[0].lower() != expected or len(parts) < 2:
            return self._deny(f"authorization is not '{expected} <credentials>'")
        value = parts[1].strip()
        if scheme == "bearer":
            ok = _matches(value, self._digests)
            return Principal(None, scheme) if ok else self._deny("unknown bearer token")
        if scheme == "basic":
            return self._check_basic(value)
        return self._check_jwt(value)

    def security_scheme(self) -> tuple[str, dict[str, Any]] | None:
        """(name, OpenAPI 3.1 securityScheme object) for ``components.securitySchemes``."""
        return {
            "none": None,
            "api_key": ("apiKey", {"type": "apiKey", "in": "header", "name": self._spec.header}),
            "bearer": ("bearerAuth", {"type": "http", "scheme": "bearer"}),
            "jwt": ("bearerJwt", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}),
            "basic": ("basicAuth", {"type": "http", "scheme": "basic"}),
        }[self._scheme]

    def _deny(self, reason: str) -> Denial:
        log.debug("auth=%s: 401 (%s)", self._scheme, reason)
        return Denial(401, list(self._401), _UNAUTHORIZED)

    def _check_basic(self, value: str) -> Principal | Denial:
        try:
            pair = base64.b64decode(value.encode("ascii"), validate=True).decode("utf-8")
        except (UnicodeError, binascii.Error):
            return self._deny("basic credentials are not base64 of UTF-8")
        user, colon, _ = pair.partition(":")
        if not colon:
            return self._deny("basic credentials have no colon")
        ok = _matches(pair, self._digests)  # user and password compared as one, in constant time
        return Principal(user, "basic") if ok else self._deny("unknown user or wrong password")

    def _check_jwt(self, token: str) -> Principal | Denial:
        import jwt  # cached after the first import; only JWT routes pay for it

        cfg = self._jwt
        try:
            claims: dict[str, Any] = jwt.decode(token, **cfg)
        except (jwt.PyJWTError, ValueError, TypeError) as exc:  # untrusted input: never a 500
            return self._deny(f"jwt rejected: {type(exc).__name__}")
        granted = set(_scopes(claims))
        missing = [s for s in self._spec.required_scopes if s not in granted]
        if missing:
            log.debug("auth=jwt: 403 (missing scopes %s)", missing)
            return Denial(403, list(self._403), _FORBIDDEN)
        sub = claims.get("sub")
        return Principal(sub if isinstance(sub, str) else None, "jwt", claims)


def _scopes(claims: Mapping[str, Any]) -> list[str]:
    """Scopes from ``scope`` (space separated, RFC 8693) and ``scp`` (list or string)."""
    found: list[str] = []
    for claim in (claims.get("scope"), claims.get("scp")):
        if isinstance(claim, str):
            found += claim.split()
        elif isinstance(claim, list):
            found += [s for s in claim if isinstance(s, str)]
    return found


def _check_applicable(spec: AuthSpec) -> None:
    """Reject options the scheme would silently ignore: an unenforced scope is a hole."""
    default = AuthSpec()
    if spec.scheme == "none" and (spec.credentials or spec.credentials_env):
        raise ValueError("auth credentials given but auth scheme is 'none'")
    if spec.scheme != "api_key" and spec.header != default.header:
        raise ValueError("auth header applies only to scheme=api_key")
    if spec.scheme != "jwt":
        for name in (*_JWT_ONLY, "jwt_algorithms", "jwt_require_exp"):
            if getattr(spec, name) != getattr(default, name):
                raise ValueError(f"auth {name} applies only to scheme=jwt")


def _read_credentials(spec: AuthSpec, *, allow_file: bool) -> str:
    """The configured secret from exactly one of credentials, credentials_env, jwt_key_file."""
    given = [n for n in ("credentials", "credentials_env", "jwt_key_file") if getattr(spec, n)]
    if not given:
        extra = " or jwt_key_file" if allow_file else ""
        raise ValueError(f"auth={spec.scheme} needs credentials or credentials_env{extra}")
    if len(given) > 1:
        raise ValueError(f"auth={spec.scheme}: set only one of {', '.join(given)}")
    if spec.credentials_env:
        value = os.environ.get(spec.credentials_env)
        if value is None:
            raise ValueError(f"auth credentials_env {spec.credentials_env!r} is not set")
        if not value.strip():
            raise ValueError(f"auth credentials_env {spec.credentials_env!r} is empty")
        return value
    if spec.jwt_key_file:
        try:
            with open(spec.jwt_key_file, encoding="utf-8") as file:
                return file.read()
        except (OSError, UnicodeError) as exc:
            why = getattr(exc, "strerror", None) or type(exc).__name__
            raise ValueError(
                f"auth jwt_key_file {spec.jwt_key_file!r} cannot be read: {why}"
            ) from None
    return spec.credentials


def _credential_digests(spec: AuthSpec) -> tuple[bytes, ...]:
    entries = [e.strip() for e in _read_credentials(spec, allow_file=False).split(",")]
    entries = [e for e in entries if e]
    if not entries:
        raise ValueError(f"auth={spec.scheme} credentials contain no entry")
    for number, entry in enumerate(entries, 1):
        if spec.scheme == "basic" and entry.find(":") < 1:  # message must not echo the entry
            raise ValueError(f"auth=basic credentials entry {number} is not 'user:password'")
    return tuple(_digest(e) for e in entries)


def _jwt_config(spec: AuthSpec) -> dict[str, Any]:
    """Keyword arguments for :func:`jwt.decode`, with the key parsed and checked once."""
    algorithms = list(spec.jwt_algorithms)
    if not algorithms:
        raise ValueError("auth jwt_algorithms must name at least one algorithm")
    for alg in algorithms:
        if alg not in (*_HMAC_BYTES, *_RSA, *_EC):
            valid = ", ".join((*_HMAC_BYTES, *_RSA, *_EC))
            raise ValueError(
                f"unknown jwt algorithm {alg!r} in auth jwt_algorithms; valid: {valid}"
            )
    families = {alg[:2] for alg in algorithms}
    if len(families) > 1:  # one key cannot serve two families; mixing invites alg confusion
        raise ValueError("auth jwt_algorithms must all be HS*, all RS* or all ES*")
    if spec.jwt_leeway < 0:
        raise ValueError("auth jwt_leeway must be >= 0 seconds")
    raw = _read_credentials(spec, allow_file=True).strip()
    key: Any
    if families == {"HS"}:
        key = raw.encode("utf-8")
        need = max(_HMAC_BYTES[alg] for alg in algorithms)
        if len(key) < need:
            raise ValueError(f"auth jwt secret must be at least {need} bytes (RFC 7518 3.2)")
    else:
        # Imported only for routes that verify signed tokens (~0.2 s of import time).
        from cryptography.hazmat.primitives.asymmetric import ec, rsa
        from cryptography.hazmat.primitives.serialization import load_pem_public_key
        from cryptography.x509 import load_pem_x509_certificate

        try:
            pem = raw.encode("ascii")
            cert = b"-----BEGIN CERTIFICATE-----" in pem
            key = load_pem_x509_certificate(pem).public_key() if cert else load_pem_public_key(pem)
        except (ValueError, TypeError, UnicodeError):
            raise ValueError("auth jwt key is not a PEM public key or certificate") from None
        if families == {"RS"} and not isinstance(key, rsa.RSAPublicKey):
            raise ValueError("auth jwt key must be an RSA public key for RS* algorithms")
        if isinstance(key, rsa.RSAPublicKey) and key.key_size < 2048:
            raise ValueError("auth jwt RSA key must have at least 2048 bits")
        if families == {"ES"} and not (
            isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1)
        ):
            raise ValueError("auth jwt key must be a P-256 EC public key for ES256")
    return {
        "key": key,
        "algorithms": algorithms,
        "audience": spec.jwt_audience or None,
        "issuer": spec.jwt_issuer or None,
        "leeway": spec.jwt_leeway,
        "options": {
            "require": ["exp"] if spec.jwt_require_exp else [],
            "enforce_minimum_key_length": True,
        },
    }
