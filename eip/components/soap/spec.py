"""The ``soap:`` endpoint specs: a service eip serves, a service eip calls.

Like ``http:``, one scheme and two forms, told apart by the leading slash:

- ``soap:/services/customer?wsdl=wsdl/customer.wsdl`` (a path): a SOAP service eip serves from
  the WSDL on its shared HTTP server (the WSDL itself at ``/services/customer?wsdl``), for
  ``from_``; typed form :func:`soap_server`;
- ``soap:legacy-erp?wsdl=wsdl/erp.wsdl&operation=UpsertCustomer`` (a name): a service eip
  calls, for ``to``; typed form :func:`soap_client`.

Decisions, where the issue left room:

- ``wsdl_port`` (not ``port``) names the WSDL port to call, because ``port`` is the HTTP port a
  served service listens on, as for ``http:``.
- ``address`` overrides the WSDL's ``soap:address`` (WSDLs often carry a development host).
- WS-Security UsernameToken takes its password from ``ws_password_env``, never the URI.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar, Literal

import msgspec

from eip.components.base import EndpointSpec
from eip.components.http.spec import ServedAuth
from eip.components.typed import make_spec, typed_spec

__all__ = ["SoapClientSpec", "SoapServerSpec", "soap_client", "soap_server"]


class SoapServerSpec(ServedAuth, frozen=True, kw_only=True):
    """A SOAP service served from a WSDL (see :mod:`eip.components.soap.consumer`)."""

    scheme: ClassVar[str] = "soap"
    path_field: ClassVar[str] = "path"

    path: str
    wsdl: str
    host: str = ""
    port: int = -1
    max_body_size: int = -1
    #: Validate every request against the WSDL's XSD (off only for trusted, broken clients).
    validate: bool = True
    #: Show the failure's type and message in Server faults (off: internals never leak).
    expose_errors: bool = False
    #: SOAP header blocks (Clark names, ``{ns}Local``) the route handles itself: a request
    #: with any other mustUnderstand header addressed to eip gets a MustUnderstand fault.
    understood_headers: list[str] = []
    #: ``username_token``: every request must carry a WS-Security UsernameToken (text or
    #: digest password) of a user in ``ws_users_env`` (see :mod:`.wssecurity`).
    ws_security: Literal["none", "username_token"] = "none"
    #: The environment variable holding the users, ``user:password`` pairs, comma-separated.
    ws_users_env: str = ""
    #: Seconds a request's wsu:Created may be away from the server's clock (and how long
    #: nonces are remembered: twice this).
    ws_max_skew: float = 300.0
    #: The service's address as clients reach it (``https://erp-gw.example.com``), written
    #: into the served WSDL's soap:address; else the request's Host header is used.
    public_url: str = ""
    #: Take the scheme and host for the served WSDL from X-Forwarded-Proto/-Host (only behind
    #: a proxy that sets them: a client could otherwise choose the address others are sent).
    trust_forwarded: bool = False

    def ws_users(self) -> dict[str, str]:
        """The WS-Security users (read when the consumer starts; never logged)."""
        from eip.components.soap.wssecurity import parse_users

        value = os.environ.get(self.ws_users_env)
        if value is None:
            raise ValueError(f"ws_users_env '{self.ws_users_env}' is not set")
        return parse_users(value, f"ws_users_env '{self.ws_users_env}'")


class SoapClientSpec(EndpointSpec, frozen=True):
    """A SOAP service to call (see :mod:`eip.components.soap.producer`)."""

    scheme: ClassVar[str] = "soap"
    path_field: ClassVar[str] = "name"

    name: str
    wsdl: str
    service: str = ""
    wsdl_port: str = ""
    #: The operation; the ``eip.soap.request.operation`` header wins (one endpoint, many
    #: operations).
    operation: str = ""
    address: str = ""
    timeout: float = 30.0
    connect_timeout: float = 10.0
    #: Seconds loading the WSDL may take at route start (it is read off the event loop).
    load_timeout: float = 30.0
    max_connections: int = 100
    ws_username: str = ""
    ws_password_env: str = ""
    ws_password_digest: bool = False
    verify: bool = True
    ca_file: str = ""
    #: The reply: plain data (dicts and lists), or ``reply_type`` (typed form only) built from it.
    reply_type: Any = None
    soap_version: Literal["", "1.1", "1.2"] = ""

    def ws_password(self) -> str:
        """The UsernameToken password (read when the producer starts; never logged)."""
        if not self.ws_password_env:
            return ""
        value = os.environ.get(self.ws_password_env)
        if value is None:
            raise ValueError(f"ws_password_env '{self.ws_password_env}' is not set")
        return value


@typed_spec(SoapServerSpec)
def soap_server(path: str, **options: Any) -> SoapServerSpec:
    """Typed form of ``soap:/path?wsdl=...``."""
    return make_spec(SoapServerSpec, {"path": path, **options})


@typed_spec(SoapClientSpec)
def soap_client(name: str, **options: Any) -> SoapClientSpec:
    """Typed form of ``soap:name?wsdl=...&operation=...``; ``reply_type`` may be a Struct."""
    reply_type = options.pop("reply_type", None)
    spec = make_spec(SoapClientSpec, {"name": name, **options})
    return msgspec.structs.replace(spec, reply_type=reply_type) if reply_type else spec
