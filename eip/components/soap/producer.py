"""The SOAP producer: zeep's model of the WSDL, eip's HTTP path, real time-outs, typed faults.

At start the WSDL is loaded once, off the loop (:func:`.zeep_support.load_client`), the port
is chosen and each operation of its binding is prepared (HTTP headers, elements, WSDL faults).
Per exchange: render the body into an envelope, POST it on the endpoint's aiohttp pool
(:class:`~eip.components.http.calls.AiohttpCalls`: one total deadline per call), read the reply.

Not zeep's client: its async constructor blocks the loop, its async path has no time-out
(PITFALLS.md) and it rides httpx, far slower than aiohttp with calls in flight. Not even
zeep's whole message layer for document/literal operations (nearly every WSDL): eip renders
and parses the operation's element with zeep's schema directly, a third less CPU per call than
``create_message``/``process_reply``, and the reply is the output element as data (one dict
per element, the same shape the ``soap:`` consumer hands its routes). Other styles (rpc,
several body parts, WSDL-declared SOAP headers) go through zeep's message model, and their
reply is zeep's result as plain data.

A fault envelope, whatever the HTTP status, raises :class:`~eip.errors.SoapFault` (code and
subcodes resolved by :func:`.envelope.parse_fault`, the WSDL fault's name, its detail as data);
any other error answer raises :class:`~eip.errors.HttpOperationFailed`. WS-Addressing headers
are added when the WSDL asks for them, a WS-Security UsernameToken when configured.
"""

from __future__ import annotations

import contextlib
import importlib
import urllib.parse
from typing import TYPE_CHECKING, Any

import msgspec
from lxml import etree

from eip import headers as H
from eip.components.base import Producer
from eip.components.http.calls import AiohttpCalls
from eip.components.http.spec import HttpClientSpec
from eip.components.http.tracing import ClientSpans
from eip.components.soap._fault import FaultInfo, parse_fault
from eip.components.soap._operations import (
    Operation,
    add_header_blocks,
    choose_port,
    declared_faults,
    prepare,
)
from eip.components.soap._version import SoapEnvelopeError, envelope_version
from eip.components.soap._xml import UnsafeXmlError, clark, parse_untrusted
from eip.components.soap.spec import SoapClientSpec
from eip.components.soap.zeep_support import load_client, plain, to_data
from eip.errors import (
    EndpointError,
    HttpOperationFailed,
    MarshalError,
    RouteDefinitionError,
    SoapFault,
    UnmarshalError,
    redact_uri,
)
from eip.message import Exchange
from eip.tracing import inject_span

if TYPE_CHECKING:
    from eip.components.soap import SoapComponent

__all__ = ["SoapProducer"]


class SoapProducer(Producer):
    #: This producer opens its own CLIENT span; the generic send span would only repeat it.
    traces_itself = True

    def __init__(self, component: SoapComponent, spec: SoapClientSpec) -> None:
        self.component = component
        self.spec = spec
        self.address = self.endpoint = ""
        self.operations: dict[str, Operation] = {}
        self.default_operation = spec.operation
        self.calls: AiohttpCalls | None = None
        self._spans: ClientSpans | None = None

    async def start(self) -> None:
        spec = self.spec
        client = await load_client(spec.wsdl, spec.load_timeout)
        service, port, self._version = choose_port(client, spec)
        self.address = spec.address or (port.binding_options or {}).get("address") or ""
        if not self.address:
            raise RouteDefinitionError(
                f"WSDL {redact_uri(spec.wsdl)}: port '{port.name}' has no soap:address; "
                "set address="
            )
        binding = port.binding
        self.operations = {
            n: prepare(client, binding, n, self._version) for n in binding._operations
        }
        if spec.operation and spec.operation not in self.operations:
            raise RouteDefinitionError(
                f"WSDL {redact_uri(spec.wsdl)} has no operation '{spec.operation}' "
                f"in port '{port.name}' "
                f"(operations: {', '.join(self.operations)})"
            )
        if not spec.operation and len(self.operations) == 1:
            self.default_operation = next(iter(self.operations))
        self._faults = declared_faults(binding)
        self._schema = client.wsdl.types
        self._context = _zeep("zeep.xsd.context").XmlParserContext(settings=client.settings)
        self._zeep_error: type[Exception] = _zeep("zeep.exceptions").Error
        self._wsa = _zeep("zeep.wsa").WsAddressingPlugin()
        self._wsse = _username_token(spec)
        self._rpc = {"rpc.system": "soap", "rpc.service": service.name}
        self.endpoint = redact_uri(self.address)
        http = HttpClientSpec(
            url=self.address,
            timeout=spec.timeout,
            connect_timeout=spec.connect_timeout,
            max_connections=spec.max_connections,
            verify=spec.verify,
            ca_file=spec.ca_file,
        )
        self.calls = AiohttpCalls(http, self.endpoint)
        await self.calls.start()
        tracing = self.component.context.tracing
        if tracing.enabled:
            parts = urllib.parse.urlsplit(self.address)
            port_number = parts.port or (443 if parts.scheme == "https" else 80)
            self._spans = ClientSpans(tracing, parts.hostname or "", port_number)

    async def stop(self) -> None:
        if self.calls is not None:
            await self.calls.stop()

    def process(self, exchange: Exchange) -> Any:
        return self._call(exchange)

    async def _call(self, exchange: Exchange) -> None:
        operation = self._operation_for(exchange)
        blocks = exchange.properties.get(H.SOAP_REQUEST_HEADERS)
        content = self._envelope(operation, exchange.body, blocks)
        headers = dict(operation.headers)
        if self.calls is None:
            raise EndpointError(f"SOAP producer {self.uri} is not started", endpoint=self.uri)
        spans, span, status = self._spans, None, 0
        if spans is not None:  # a CLIENT span, its context sent as traceparent
            span = spans.start(exchange, "POST", self.endpoint)
            spans.spans.annotate(span, {**self._rpc, "rpc.method": operation.name})
            inject_span(span, headers)
        try:
            status, reply_headers, data = await self.calls.call(
                "POST", self.address, headers, content
            )
            reply, blocks = self._reply(operation, status, reply_headers, data)
        except Exception as exc:
            if spans is not None:
                if status:
                    spans.spans.annotate(span, {"http.response.status_code": status})
                spans.fail(span, exc)
            raise
        if spans is not None:
            spans.finish(span, status)
        exchange.body = reply
        if blocks:
            exchange.properties[H.SOAP_HEADERS] = blocks

    def _operation_for(self, exchange: Exchange) -> Operation:
        name = exchange.headers.get(H.SOAP_REQUEST_OPERATION) or self.default_operation
        operation = self.operations.get(name)
        if operation is not None:
            return operation
        what = (
            f"no operation '{name}'" if name else f"no operation= and no {H.SOAP_REQUEST_OPERATION}"
        )
        known = ", ".join(self.operations)
        raise EndpointError(
            f"WSDL {redact_uri(self.spec.wsdl)}: {what} (operations: {known})", endpoint=self.uri
        )

    def _envelope(self, operation: Operation, body: Any, blocks: Any = None) -> bytes:
        """The request envelope: the body (a dict, a Struct or None) as the input element, and
        the exchange's own SOAP header blocks (lxml elements), if any, in its Header."""
        value = plain(body)
        if value is not None and not isinstance(value, dict):
            raise MarshalError(
                "soap",
                f"{operation.name}: the body must be a dict, a msgspec Struct or None, "
                f"not {type(body).__name__}",
            )
        try:
            if operation.input is None:
                envelope = operation.zeep.create(**(value or {})).content
            else:
                ns, prefix = self._version.namespace, self._version.prefix
                envelope = etree.Element(f"{{{ns}}}Envelope", nsmap={prefix: ns})
                body_element = etree.SubElement(envelope, f"{{{ns}}}Body")
                if operation.write is not None:
                    body_element.append(operation.write(value))
                else:
                    operation.input.render(body_element, operation.input(**(value or {})))
        except (TypeError, ValueError, self._zeep_error) as exc:
            raise MarshalError("soap", f"{operation.name}: {exc}") from exc
        if blocks is not None:
            add_header_blocks(envelope, self._version, blocks)
        if operation.wsa:
            self._wsa.egress(envelope, {}, operation.zeep, {"address": self.address})
        if self._wsse is not None:
            self._wsse.apply(envelope, {})
        return etree.tostring(envelope, xml_declaration=True, encoding="utf-8")

    def _reply(
        self, operation: Operation, status: int, headers: Any, data: bytes
    ) -> tuple[Any, list[etree._Element]]:
        """The reply's data and its SOAP header blocks (see :meth:`_reply_data`)."""
        root, value = self._reply_data(operation, status, headers, data)
        if root is None:
            return value, []
        header = root.find(f"{{{envelope_version(root).namespace}}}Header")
        return value, list(header) if header is not None else []

    def _reply_data(
        self, operation: Operation, status: int, headers: Any, data: bytes
    ) -> tuple[etree._Element | None, Any]:
        """A fault envelope raises SoapFault whatever the status, any other error answer
        HttpOperationFailed; a 2xx answer is the output (None for one-way operations)."""
        root = payload = None
        why = "empty"
        try:
            if data.strip():
                root = parse_untrusted(data)
                ns = envelope_version(root).namespace
                payload = next(root.iterfind(f"{{{ns}}}Body/*"), None)
                if payload is not None and payload.tag == f"{{{ns}}}Fault":
                    raise self._fault(parse_fault(root), status)
        except (UnsafeXmlError, SoapEnvelopeError) as exc:
            root, why = None, f"not a SOAP envelope: {exc}"
        if not 200 <= status < 300:
            raise HttpOperationFailed("POST", self.address, status, data, dict(headers))
        if operation.one_way or (status == 202 and not data.strip()):
            return root, None
        if root is None:
            raise EndpointError(
                f"{operation.name}: the HTTP {status} reply from {self.endpoint} is {why}",
                endpoint=self.endpoint,
            )
        try:
            if operation.output is None:
                value = operation.zeep.process_reply(root)
            elif payload is None or payload.tag != operation.output_tag:
                found = "an empty Body" if payload is None else repr(payload.tag)
                raise UnmarshalError("soap", f"expected {operation.output_tag}, got {found}")
            elif operation.read is not None:
                return root, self._typed(operation, operation.read(payload))
            else:
                value = operation.output.parse(payload, self._schema, context=self._context)
        except (TypeError, ValueError, self._zeep_error) as exc:
            raise UnmarshalError("soap", f"{operation.name} reply: {exc}") from exc
        return root, self._typed(operation, to_data(value))

    def _typed(self, operation: Operation, data: Any) -> Any:
        reply_type = self.spec.reply_type
        if reply_type is None:
            return data
        try:
            return msgspec.convert(data, reply_type, strict=False)
        except msgspec.ValidationError as exc:
            name = getattr(reply_type, "__name__", repr(reply_type))
            raise UnmarshalError("soap", f"{operation.name} reply as {name}: {exc}") from exc

    def _fault(self, info: FaultInfo, status: int) -> SoapFault:
        """A detail the WSDL declares (a fault of any operation of the binding) becomes data;
        any other detail (or one that does not parse as declared) stays XML text."""
        fault_name: str | None = None
        detail: Any = None
        node = info.detail
        if node is not None:
            detail = etree.tostring(node, encoding="unicode", with_tail=False)
            declared = self._faults.get(str(node.tag))
            if declared is not None:
                with contextlib.suppress(TypeError, ValueError, self._zeep_error):
                    data = declared[1].parse(node, self._schema, context=self._context)
                    fault_name, detail = declared[0], to_data(data)
        return SoapFault(
            info.reason,
            kind="server" if info.kind in ("server", None) else "client",
            code=clark(info.code),
            subcodes=tuple(clark(code) for code in info.subcodes),
            fault=fault_name,
            detail=detail,
            http_status=status,
            endpoint=self.endpoint,
        )


def _zeep(module: str) -> Any:
    """A zeep module, reached untyped (zeep has no type hints); zeep_support has checked
    that zeep is installed by the time a producer starts."""
    return importlib.import_module(module)


def _username_token(spec: SoapClientSpec) -> Any:
    """zeep's WS-Security UsernameToken (with a digest: a fresh nonce and timestamp per
    message), or None when no ``ws_username`` is set."""
    if not spec.ws_username:
        return None
    try:
        password = spec.ws_password()
    except ValueError as exc:
        raise RouteDefinitionError(str(exc), option="ws_password_env") from exc
    username = _zeep("zeep.wsse.username")
    return username.UsernameToken(spec.ws_username, password, use_digest=spec.ws_password_digest)
