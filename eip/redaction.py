"""Credential redaction for everything that shows an endpoint URI or a URL: log lines, errors,
spans, ``eip routes``.

One more regex is not enough, because a URI reaches us in many shapes: ``user:pw@host``;
a password holding a raw or encoded ``@`` or ``:``; ``url=`` options whose value is an AMQP or
HTTP URL, raw or percent-encoded once, twice, or in a mix; secret query options
(``password=``, ``token=``, ``api_key=``, ``sig=`` ...), whose names may be encoded too; and
fragments (``#access_token=``). So the text is parsed, in three passes:

1. **userinfo**: at every ``//`` that opens an authority, what follows the first ``:`` of
   the userinfo (up to the *last* ``@`` before the host) becomes ``***``. The user name stays
   (operators need it); a userinfo without a password is left as it is.
2. **options**: the text is cut at ``? & ; #`` into ``key=value`` parts; a key that names a
   secret (compared decoded, ignoring case and separators) has its value replaced.
3. **nested values**: every part that holds ``%`` is decoded again and again until it is
   stable, and each decoded form is redacted by these same passes. When a decoded form held a
   secret, the part is shown decoded and redacted, quoted once so it cannot break the outer
   URI; otherwise it is left exactly as written.

Redacting too much is harmless, too little is a leak, so ambiguous text is read the
suspicious way. Results are cached: this runs at start for every endpoint and when an error
is made, not per message.
"""

from __future__ import annotations

import functools
import re
from urllib.parse import quote, unquote

__all__ = ["MARK", "is_credential_header", "is_secret_option", "redact_uri"]

#: What a secret is replaced with.
MARK = "***"

_DEPTH = 4  # nested values decoded within values, and decoding rounds per value
_AUTHORITY = re.compile(r"(?<![^:=?&;#,\s])//")  # '//' at the start, after a scheme or '='
_HOST_PORT = re.compile(r"(?:\[[^\]]*\]|[^:\[\]@]*)(?::\d*)?")
_ENCODED_COLON = re.compile(r"%(?:25)*3a", re.IGNORECASE)
_DELIMITERS = re.compile(r"([?&;#])")
_NOT_ALNUM = re.compile(r"[^a-z0-9]")
_SAFE = "/:@[]*,{}=?!$'()+~"  # kept readable when a decoded value is quoted again

# Option names are compared lower-cased with separators removed (api-key = api_key = apiKey).
_SECRET_NAMES = frozenset({"key", "sig", "pw", "auth", "authorization", "bearer", "jwt", "sas"})
_SECRET_STEMS = (
    "pass",  # password, passwd, passphrase, pass, and typos such as pasword
    "pwd",
    "secret",
    "token",
    "apikey",
    "accesskey",
    "privatekey",
    "secretkey",
    "accountkey",
    "subscriptionkey",
    "signature",
    "credential",
    "sessionid",
    "cookie",
)
# Names of where a secret is kept, or of a flag about it, are not secrets themselves:
# secret_env, ws_password_env, jwt_key_file, ws_password_digest, auth_header, token_type.
_NOT_SECRET_SUFFIXES = ("env", "file", "digest", "header", "type", "scheme", "mode")
# 'auth' alone names a scheme in eip's options (auth=basic); it is only a secret elsewhere.
_EIP_NAMES = frozenset({"auth"})


#: Values of secret placeholders resolved in this process (longest first), hidden wherever
#: they stand in a URI, a path included; see :func:`add_secret`.
_secret_values: tuple[str, ...] = ()


def add_secret(value: str) -> None:
    """Hide ``value`` in every URI redacted from now on (a secret resolved from a
    placeholder may stand anywhere, in a path too); the cache is cleared, so it is never
    served from an answer made before."""
    global _secret_values
    if value and value not in _secret_values:
        _secret_values = tuple(sorted((*_secret_values, value), key=len, reverse=True))
        redact_uri.cache_clear()


@functools.lru_cache(maxsize=4096)
def redact_uri(uri: str) -> str:
    """Hide passwords and secret options (in every encoding) so a URI is safe to show."""
    text = _redact(uri, _DEPTH)
    for value in _secret_values:
        if value in text:
            text = text.replace(value, "***")
    return text


#: Headers that carry credentials or session state although their names do not say "secret".
_CREDENTIAL_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "www-authenticate"}
)


def is_credential_header(name: str) -> bool:
    """Whether a message header called ``name`` holds a credential (a secret option name such
    as ``x-api-key``, or one of the HTTP credential and cookie headers): one rule for the
    failure history, the logs and the dead letter envelopes."""
    return name.lower() in _CREDENTIAL_HEADERS or is_secret_option(name)


@functools.lru_cache(maxsize=1024)
def is_secret_option(name: str) -> bool:
    """Whether a query option called ``name`` (raw or percent-encoded) holds a secret."""
    normal = _NOT_ALNUM.sub("", _decoded(name).lower())
    if not normal or normal.endswith(_NOT_SECRET_SUFFIXES) or normal in _EIP_NAMES:
        return False
    return normal in _SECRET_NAMES or any(stem in normal for stem in _SECRET_STEMS)


def _redact(text: str, depth: int) -> str:
    return _redact_options(_redact_userinfo(text), depth)


def _redact_userinfo(text: str) -> str:
    """Pass 1: the password of every authority (``//user:password@host``)."""
    parts: list[str] = []
    pos = 0
    while (match := _AUTHORITY.search(text, pos)) is not None:
        start = match.end()
        parts.append(text[pos:start])
        pos = start
        at = _userinfo_end(text, start)
        if at is not None:
            parts.append(_hide_password(text[start:at]))
            pos = at
    parts.append(text[pos:])
    return "".join(parts)


def _userinfo_end(text: str, start: int) -> int | None:
    """Index of the ``@`` that ends the userinfo of the authority at ``start``, or None.

    The authority ends at the first ``/``; its last ``@`` ends the userinfo, so a raw ``@``,
    ``?`` or ``#`` in a password is covered. A raw ``/`` in a password (``user:ab/cd@host``)
    is caught too, unless what precedes the ``/`` reads as ``host:port``."""
    slash = text.find("/", start)
    if slash < 0:
        slash = len(text)
    at = text.rfind("@", start, slash)
    if at >= 0:
        return at
    head = text[start:slash]
    if slash == len(text) or ":" not in head or _HOST_PORT.fullmatch(head):
        return None
    stops = [i for i in (text.find("?", slash), text.find("#", slash)) if i >= 0]
    at = text.find("@", slash, min(stops, default=len(text)))
    return at if at >= 0 and "//" not in text[start:at] else None


def _hide_password(userinfo: str) -> str:
    colon = userinfo.find(":")
    if colon >= 0:
        keep = colon + 1
    else:  # user%3Apassword: the colon is encoded (once or more)
        encoded = _ENCODED_COLON.search(userinfo)
        if encoded is None:
            return userinfo  # a user name alone
        keep = encoded.end()
    return userinfo if keep >= len(userinfo) else userinfo[:keep] + MARK


def _redact_options(text: str, depth: int) -> str:
    """Passes 2 and 3: secret ``key=value`` options, and secrets inside encoded parts."""
    pieces = _DELIMITERS.split(text)
    for index in range(0, len(pieces), 2):  # odd indexes are the delimiters
        pieces[index] = _redact_piece(pieces[index], depth, head=index == 0)
    return "".join(pieces)


def _redact_piece(piece: str, depth: int, *, head: bool) -> str:
    key, eq, value = piece.partition("=")
    # The head (``scheme:path`` or ``//host/path``) is an option only in a decoded value
    # that is itself a query (``password=x&y=1``).
    if eq and not (head and (":" in key or "/" in key)):
        if is_secret_option(key):
            return f"{key}={MARK}" if value else piece
        return f"{key}={_redact_nested(value, depth)}"
    return _redact_nested(piece, depth)


def _redact_nested(value: str, depth: int) -> str:
    """Pass 3: decode ``value`` until stable, redacting each form; see the module docstring."""
    if depth <= 0 or "%" not in value:
        return value
    current, found = value, False
    for _ in range(_DEPTH):
        decoded = unquote(current)
        if decoded == current:
            break
        current = _redact(decoded, depth - 1)
        found = found or current != decoded
    return quote(current, safe=_SAFE) if found else value


def _decoded(text: str) -> str:
    for _ in range(_DEPTH):
        decoded = unquote(text)
        if decoded == text:
            break
        text = decoded
    return text
