"""``soap:`` - call SOAP services (zeep's WSDL model, eip's HTTP path) and serve them from a
WSDL on eip's HTTP server.

See :mod:`.spec` for both endpoint forms, :mod:`.producer` for calls (faults, time-outs,
WS-Security), :mod:`.consumer` for served services (operation dispatch, XSD validation, SOAP
1.1 and 1.2 faults), :mod:`.schema` and :mod:`.envelope` for the WSDL's schema and the
envelopes, :mod:`.zeep_support` for what eip takes from zeep (the ``soap`` extra).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from eip.components.base import Component, Consumer, EndpointSpec, Producer, parse_uri
from eip.components.soap.spec import SoapClientSpec, SoapServerSpec, soap_client, soap_server
from eip.errors import RouteDefinitionError

if TYPE_CHECKING:
    from eip.runtime.route import Route

__all__ = [
    "SoapClientSpec",
    "SoapComponent",
    "SoapServerSpec",
    "soap_client",
    "soap_server",
]


class SoapComponent(Component):
    scheme: ClassVar[str] = "soap"
    spec_type: ClassVar[type[EndpointSpec]] = SoapClientSpec

    def parse(self, uri: str) -> EndpointSpec:
        path = uri.partition(":")[2].partition("?")[0]
        if path.startswith("/"):
            return parse_uri(uri, SoapServerSpec)
        return parse_uri(uri, SoapClientSpec)

    def validate(self, spec: Any) -> None:
        if not spec.wsdl:
            raise ValueError("soap: endpoints need a wsdl (a file path or URL)")
        if isinstance(spec, SoapClientSpec):
            if spec.timeout <= 0 or spec.connect_timeout <= 0 or spec.load_timeout <= 0:
                raise ValueError("timeout, connect_timeout and load_timeout must be > 0 seconds")
            if spec.ws_username:
                spec.ws_password()  # a missing environment variable fails at start, named
        elif isinstance(spec, SoapServerSpec):
            if spec.port > 65535:
                raise ValueError(f"port must be 0..65535, got {spec.port}")
            if spec.ws_security != "none":
                if not spec.ws_users_env:
                    raise ValueError(
                        "ws_security=username_token needs ws_users_env (the variable holding "
                        "'user:password' pairs)"
                    )
                if spec.ws_max_skew <= 0:
                    raise ValueError(f"ws_max_skew must be > 0 seconds, got {spec.ws_max_skew}")
                spec.ws_users()  # a missing or malformed variable fails at start, named
            if spec.public_url and not spec.public_url.startswith(("http://", "https://")):
                raise ValueError(f"public_url must be an http(s) URL, got {spec.public_url!r}")

    def create_producer(self, spec: Any) -> Producer:
        if not isinstance(spec, SoapClientSpec):
            raise RouteDefinitionError(
                f"soap:{spec.path} is a service eip serves; to call one, name it: "
                "soap:name?wsdl=...&operation=..."
            )
        from eip.components.soap.producer import SoapProducer

        return SoapProducer(self, spec)

    def create_consumer(self, spec: Any, route: Route) -> Consumer:
        if not isinstance(spec, SoapServerSpec):
            raise RouteDefinitionError(
                f"soap:{spec.name} is a service to call; to serve one, give its path: "
                "soap:/services/name?wsdl=..."
            )
        from eip.components.soap.consumer import SoapConsumer

        return SoapConsumer(self, spec, route)
