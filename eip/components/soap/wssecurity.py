"""WS-Security UsernameToken on the SOAP consumer (OASIS WSS 1.1, UsernameToken Profile 1.1).

With ``ws_security=username_token`` a request must carry a ``wsse:Security`` header with a
``wsse:UsernameToken``; the route never runs otherwise. Checked, in this order:

1. the header and the token are there, and say what the profile says they say
   (``wsse:InvalidSecurity`` when the header is missing or malformed,
   ``wsse:UnsupportedSecurityToken`` for a password type other than text or digest);
2. freshness: ``wsu:Created`` (of the token, and of a ``wsu:Timestamp``) is not more than
   ``ws_max_skew`` seconds away from now, and ``wsu:Expires`` has not passed
   (``wsse:MessageExpired``);
3. the password: ``PasswordText`` compared in constant time; ``PasswordDigest`` =
   Base64(SHA-1(nonce + created + password)), which requires a Nonce and a Created
   (``wsse:FailedAuthentication`` for an unknown user, a wrong password, or a missing part);
4. replay: a nonce seen within the freshness window is refused (``wsse:FailedAuthentication``).
   Nonces are kept for twice the skew, at most ``max_nonces`` of them (the oldest go first);
   an old nonce that fell out of the cache is still caught by the freshness check.

Every authentication failure answers the same reason text ("the security token could not be
authenticated"), so a caller cannot tell an unknown user from a wrong password; the real
reason goes to the ``eip.soap.wss`` logger at INFO, never with the password. Credentials come
from an environment variable (``ws_users_env``: ``user:password`` pairs, comma-separated),
read when the consumer starts.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import NoReturn

from lxml import etree

__all__ = ["WSSE", "WSU", "UsernameTokenVerifier", "WsSecurityFault", "parse_users"]

WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
_PROFILE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0"
PASSWORD_TEXT = f"{_PROFILE}#PasswordText"
PASSWORD_DIGEST = f"{_PROFILE}#PasswordDigest"
_BASE64 = (
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-soap-message-security-1.0#Base64Binary"
)
SECURITY = f"{{{WSSE}}}Security"
_NOT_AUTHENTICATED = "the security token could not be authenticated"

log = logging.getLogger("eip.soap.wss")


class WsSecurityFault(Exception):
    """A request refused by WS-Security: ``code`` is the local name of the ``wsse:`` fault
    code (``FailedAuthentication``), ``reason`` what the caller is told."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"wsse:{code}: {reason}")
        self.code = code
        self.reason = reason


def parse_users(text: str, where: str) -> dict[str, str]:
    """``user:password,...`` into a dict; raises ValueError naming ``where``, never a secret."""
    users: dict[str, str] = {}
    for number, entry in enumerate((e.strip() for e in text.split(",")), 1):
        if not entry:
            continue
        user, sep, password = entry.partition(":")
        if not sep or not user or not password:
            raise ValueError(f"{where}: entry {number} is not 'user:password'")
        users[user] = password
    if not users:
        raise ValueError(f"{where}: no 'user:password' entries")
    return users


class UsernameTokenVerifier:
    """Verifies the UsernameToken of a request's SOAP Header; returns the user name."""

    def __init__(
        self,
        users: Mapping[str, str],
        *,
        max_skew: float = 300.0,
        max_nonces: int = 100_000,
        now: Callable[[], float] = time.time,
    ) -> None:
        self._users = {user: password.encode() for user, password in users.items()}
        self._skew = max_skew
        self._max_nonces = max_nonces
        self._now = now
        self._nonces: OrderedDict[bytes, float] = OrderedDict()

    def verify(self, header: etree._Element | None) -> str:
        security = header.find(SECURITY) if header is not None else None
        if security is None:
            raise WsSecurityFault("InvalidSecurity", "a wsse:Security header is required")
        now = self._now()
        self._check_timestamp(security.find(f"{{{WSU}}}Timestamp"), now)
        token = security.find(f"{{{WSSE}}}UsernameToken")
        if token is None:
            raise WsSecurityFault("InvalidSecurity", "the Security header has no UsernameToken")
        user = (token.findtext(f"{{{WSSE}}}Username") or "").strip()
        password = token.find(f"{{{WSSE}}}Password")
        if not user or password is None:
            raise WsSecurityFault("InvalidSecurity", "the UsernameToken needs Username, Password")
        kind = password.get("Type", PASSWORD_TEXT)
        if kind not in (PASSWORD_TEXT, PASSWORD_DIGEST):
            raise WsSecurityFault("UnsupportedSecurityToken", "unsupported password type")
        nonce = _nonce(token.find(f"{{{WSSE}}}Nonce"))
        created_text = (token.findtext(f"{{{WSU}}}Created") or "").strip()
        if created_text:
            self._fresh(created_text, now)
        given = (password.text or "").strip().encode()
        if kind == PASSWORD_DIGEST:
            if nonce is None or not created_text:
                self._refuse(user, "a PasswordDigest without Nonce and Created")
            expected = self._users.get(user, b"")
            digest = hashlib.sha1(
                nonce + created_text.encode() + expected
            ).digest()  # the profile's algorithm
            good = hmac.compare_digest(base64.b64encode(digest), given)
        else:
            expected = self._users.get(user, b"")
            good = hmac.compare_digest(
                hashlib.sha256(given).digest(), hashlib.sha256(expected).digest()
            )
        if not good or user not in self._users:
            self._refuse(user, "unknown user or wrong password")
        if nonce is not None:
            self._remember(nonce, user, now)
        return user

    def _refuse(self, user: str, why: str) -> NoReturn:
        log.info("WS-Security refused user %r: %s", user, why)
        raise WsSecurityFault("FailedAuthentication", _NOT_AUTHENTICATED)

    def _remember(self, nonce: bytes, user: str, now: float) -> None:
        nonces = self._nonces
        while nonces:
            oldest, expires = next(iter(nonces.items()))
            if expires > now and len(nonces) < self._max_nonces:
                break
            del nonces[oldest]
        if nonce in nonces:
            self._refuse(user, "the nonce was used before (a replay)")
        nonces[nonce] = now + 2 * self._skew

    def _check_timestamp(self, timestamp: etree._Element | None, now: float) -> None:
        if timestamp is None:
            return
        created = (timestamp.findtext(f"{{{WSU}}}Created") or "").strip()
        if created:
            self._fresh(created, now)
        expires = (timestamp.findtext(f"{{{WSU}}}Expires") or "").strip()
        if expires and _instant(expires) + self._skew < now:
            raise WsSecurityFault("MessageExpired", "the message has expired (wsu:Expires)")

    def _fresh(self, text: str, now: float) -> None:
        if abs(now - _instant(text)) > self._skew:
            raise WsSecurityFault(
                "MessageExpired",
                f"wsu:Created is more than {self._skew:g}s away from the server's clock",
            )


def _instant(text: str) -> float:
    """An xsd:dateTime (as WS-Security writes it: UTC, ``Z``) as epoch seconds."""
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise WsSecurityFault("InvalidSecurity", f"{text!r} is not an xsd:dateTime") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def _nonce(element: etree._Element | None) -> bytes | None:
    if element is None:
        return None
    encoding = element.get("EncodingType", _BASE64)
    text = (element.text or "").strip()
    if encoding != _BASE64:
        raise WsSecurityFault("UnsupportedSecurityToken", "the Nonce must be Base64Binary")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise WsSecurityFault("InvalidSecurity", "the Nonce is not base64") from None
