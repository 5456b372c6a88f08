"""TLS for ``amqps://``: the client context, built from the options real deployments need.

Decisions:

- **A private CA replaces the system store.** With ``ca_file`` only that CA (bundle) is
  trusted, as aio-pika's ``cafile`` and a Java truststore do: an enterprise broker's private
  CA should not widen to "anything a public CA signed". Without it the system store is used.
- **Verification is on unless said otherwise.** ``verify=False`` turns off both the chain and
  the host-name check, and logs a WARNING each time such a context is made, so it shows in
  the logs of whoever runs it.
- **Files are checked here, at start**, with a ``ValueError`` naming the option and the path:
  a missing or unreadable file, a file without the expected PEM block, a key that does not
  match its certificate, or an encrypted key (it would otherwise make OpenSSL prompt for a
  password on the terminal, which hangs a server). OpenSSL's own "PEM lib" says none of that.
- **A client certificate is remembered** (in a weak set), so :func:`connect` can refuse SASL
  EXTERNAL up front when the context it got has none, rather than let the broker refuse it.
"""

from __future__ import annotations

import logging
import ssl
import weakref

__all__ = ["has_client_certificate", "tls_context"]

log = logging.getLogger("eip.rabbitmq")

_WITH_CLIENT_CERT: weakref.WeakSet[ssl.SSLContext] = weakref.WeakSet()
_MADE_HERE: weakref.WeakSet[ssl.SSLContext] = weakref.WeakSet()


def tls_context(
    *, ca_file: str = "", cert_file: str = "", key_file: str = "", verify: bool = True
) -> ssl.SSLContext:
    """A client TLS context for :func:`connect`.

    ``ca_file``: PEM CA certificate(s) to trust instead of the system store. ``cert_file``:
    the client certificate (PEM), with its key in ``key_file`` or in the same file.
    ``verify=False``: do not check the broker's certificate at all (logged as a warning).
    """
    if key_file and not cert_file:
        raise ValueError(f"key_file {key_file!r} is given without cert_file")
    context = _context_trusting(ca_file)
    if cert_file:
        _load_client_certificate(context, cert_file, key_file)
        _WITH_CLIENT_CERT.add(context)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        log.warning(
            "rabbitmq TLS: verify=false, the broker's certificate is not verified "
            "(neither its CA nor its host name): anyone in the path can impersonate it"
        )
    _MADE_HERE.add(context)
    return context


def has_client_certificate(context: ssl.SSLContext) -> bool | None:
    """Whether ``context`` holds a client certificate; ``None`` when it was not made by
    :func:`tls_context` (Python cannot tell from a context what was loaded into it)."""
    if context in _WITH_CLIENT_CERT:
        return True
    return False if context in _MADE_HERE else None


def _read(option: str, path: str) -> str:
    try:
        with open(path, "rb") as file:
            return file.read().decode("latin-1")
    except OSError as exc:
        raise ValueError(f"{option} {path!r} cannot be read: {exc.strerror or exc}") from exc


def _context_trusting(ca_file: str) -> ssl.SSLContext:
    """A client context that trusts ``ca_file`` only, or the system store without it."""
    if not ca_file:
        return ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    pem = _read("ca_file", ca_file)
    if "-----BEGIN CERTIFICATE-----" not in pem:
        raise ValueError(f"ca_file {ca_file!r} holds no PEM certificate")
    try:
        return ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=pem)
    except ssl.SSLError as exc:
        raise ValueError(f"ca_file {ca_file!r} holds no usable CA certificate: {exc}") from exc


def _load_client_certificate(context: ssl.SSLContext, cert_file: str, key_file: str) -> None:
    cert_pem = _read("cert_file", cert_file)
    if "-----BEGIN CERTIFICATE-----" not in cert_pem:
        raise ValueError(f"cert_file {cert_file!r} holds no PEM certificate")
    key_option, key_path = ("key_file", key_file) if key_file else ("cert_file", cert_file)
    key_pem = _read("key_file", key_file) if key_file else cert_pem
    if "PRIVATE KEY-----" not in key_pem:
        if key_file:
            raise ValueError(f"key_file {key_file!r} holds no PEM private key")
        raise ValueError(
            f"cert_file {cert_file!r} holds no private key: give key_file, or put the key "
            "in the same file"
        )

    def refuse_password() -> str:
        raise ValueError(
            f"{key_option} {key_path!r} holds an encrypted private key; a key password is "
            "not supported, give an unencrypted key (readable by this process only)"
        )

    try:
        context.load_cert_chain(cert_file, key_file or None, password=refuse_password)
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise ValueError(
                f"{key_option} {key_path!r}: the private key does not match the certificate "
                f"in cert_file {cert_file!r}"
            ) from exc
        raise ValueError(
            f"cannot load the client certificate from cert_file {cert_file!r}"
            f"{f' and key_file {key_file!r}' if key_file else ''}: {exc}"
        ) from exc
