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
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec
from lxml import etree

from eip import headers as H
from eip.components.base import Producer
from eip.components.http.calls import AiohttpCalls
from eip.components.http.spec import HttpClientSpec
from eip.components.http.tracing import ClientSpans
from eip.components.soap._fault import FaultInfo, parse_fault
from eip.components.soap._version import SoapEnvelopeError, SoapVersion, envelope_version
from eip.components.soap._xml import UnsafeXmlError, clark, parse_untrusted
from eip.components.soap.codec import compile_reader, compile_writer
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

_VERSIONS = {version.namespace: version for version in SoapVersion}


@dataclass(frozen=True, slots=True)
class _Operation:
    """One operation of the chosen binding, prepared at start. ``input``/``output`` are the
    elements eip renders/parses itself, or None where zeep's message model does it."""

    name: str
    zeep: Any
    headers: dict[str, str]
    input: Any
    output: Any
    output_tag: str
    one_way: bool
    wsa: bool
    #: The input/output elements' compiled codecs (:mod:`.codec`), None where zeep does it.
    write: Callable[[Any], etree._Element] | None = None
    read: Callable[[etree._Element], Any] | None = None


def _element_of(message: Any) -> Any:
    """The message's one body element (document/literal, no declared headers), else None."""
    if message is None or type(message).__name__ != "DocumentMessage":
        return None
    body = message.body
    if body is None or getattr(message, "_is_body_wrapped", True) or body.qname is None:
        return None
    return None if message.header.type.elements else body


def _headers(version: SoapVersion, action: str) -> dict[str, str]:
    """1.1: text/xml and a quoted SOAPAction; 1.2: the action rides in the content type."""
    if version is SoapVersion.SOAP11:
        return {"content-type": "text/xml; charset=utf-8", "soapaction": f'"{action}"'}
    content_type = "application/soap+xml; charset=utf-8"
    return {"content-type": f'{content_type}; action="{action}"' if action else content_type}


def _operation(client: Any, binding: Any, name: str, version: SoapVersion) -> _Operation:
    op = binding.get(name)
    request, output = _element_of(op.input), _element_of(op.output)
    return _Operation(
        name=name,
        zeep=op,
        headers=_headers(version, op.soapaction or ""),
        input=request,
        output=output,
        output_tag=str(output.qname) if output is not None else "",
        one_way=op.output is None,
        wsa=bool(op.abstract.wsa_action),
        write=compile_writer(client, request.qname.text) if request is not None else None,
        read=compile_reader(client, output.qname.text) if output is not None else None,
    )


def _declared_faults(binding: Any) -> dict[str, tuple[str, Any]]:
    """Detail element (Clark notation) -> (WSDL fault name, zeep element), over the binding."""
    faults: dict[str, tuple[str, Any]] = {}
    for name in binding._operations:
        for fault_name, message in binding.get(name).abstract.fault_messages.items():
            for part in message.parts.values():
                if part.element is not None:
                    faults.setdefault(str(part.element.qname), (fault_name, part.element))
    return faults


def _named(kind: str, wanted: str, found: dict[str, Any], wsdl: str) -> Any:
    """``found[wanted]``, or the only entry when nothing is wanted; else an error listing."""
    names = ", ".join(found) or "none"
    if wanted and wanted not in found:
        raise RouteDefinitionError(f"WSDL {wsdl} has no {kind} '{wanted}' ({kind}s: {names})")
    if not wanted and len(found) != 1:
        option = "wsdl_port (or soap_version)" if kind == "port" else kind
        raise RouteDefinitionError(f"WSDL {wsdl} has {len(found)} {kind}s ({names}): set {option}=")
    return found[wanted] if wanted else next(iter(found.values()))


def _choose_port(client: Any, spec: SoapClientSpec) -> tuple[Any, Any, SoapVersion]:
    """(service, port, version): the ones named, else the only ones, else by soap_version."""
    service = _named("service", spec.service, dict(client.wsdl.services), spec.wsdl)
    ports = {
        name: (port, _VERSIONS[ns])
        for name, port in service.ports.items()
        if (ns := getattr(port.binding, "nsmap", {}).get("soap-env")) in _VERSIONS
    }
    if not spec.wsdl_port and spec.soap_version:
        chosen = {n: p for n, p in ports.items() if p[1].value == spec.soap_version}
        ports = chosen if len(chosen) == 1 else ports
    port, version = _named("port", spec.wsdl_port, ports, spec.wsdl)
    if spec.soap_version and version.value != spec.soap_version:
        raise RouteDefinitionError(
            f"WSDL {spec.wsdl}: port '{port.name}' is SOAP {version.value}, "
            f"not the soap_version={spec.soap_version} asked for"
        )
    return service, port, version


class SoapProducer(Producer):
    #: This producer opens its own CLIENT span; the generic send span would only repeat it.
    traces_itself = True

    def __init__(self, component: SoapComponent, spec: SoapClientSpec) -> None:
        self.component = component
        self.spec = spec
        self.address = self.endpoint = ""
        self.operations: dict[str, _Operation] = {}
        self.default_operation = spec.operation
        self.calls: AiohttpCalls | None = None
        self._spans: ClientSpans | None = None

    async def start(self) -> None:
        spec = self.spec
        client = await load_client(spec.wsdl, spec.load_timeout)
        service, port, self._version = _choose_port(client, spec)
        self.address = spec.address or (port.binding_options or {}).get("address") or ""
        if not self.address:
            raise RouteDefinitionError(
                f"WSDL {spec.wsdl}: port '{port.name}' has no soap:address; set address="
            )
        binding = port.binding
        self.operations = {
            n: _operation(client, binding, n, self._version) for n in binding._operations
        }
        if spec.operation and spec.operation not in self.operations:
            raise RouteDefinitionError(
                f"WSDL {spec.wsdl} has no operation '{spec.operation}' in port '{port.name}' "
                f"(operations: {', '.join(self.operations)})"
            )
        if not spec.operation and len(self.operations) == 1:
            self.default_operation = next(iter(self.operations))
        self._faults = _declared_faults(binding)
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
        content = self._envelope(operation, exchange.body)
        headers = dict(operation.headers)
        if self.calls is None:
            raise EndpointError(f"SOAP producer {self.uri} is not started", endpoint=self.uri)
        spans, span, status = self._spans, None, 0
        if spans is not None:  # a CLIENT span, its context sent as traceparent
            span = spans.start(exchange, "POST", self.address)
            spans.spans.annotate(span, {**self._rpc, "rpc.method": operation.name})
            inject_span(span, headers)
        try:
            status, reply_headers, data = await self.calls.call(
                "POST", self.address, headers, content
            )
            reply = self._reply(operation, status, reply_headers, data)
        except Exception as exc:
            if spans is not None:
                if status:
                    spans.spans.annotate(span, {"http.response.status_code": status})
                spans.fail(span, exc)
            raise
        if spans is not None:
            spans.finish(span, status)
        exchange.body = reply

    def _operation_for(self, exchange: Exchange) -> _Operation:
        name = exchange.headers.get(H.SOAP_REQUEST_OPERATION) or self.default_operation
        operation = self.operations.get(name)
        if operation is not None:
            return operation
        what = (
            f"no operation '{name}'" if name else f"no operation= and no {H.SOAP_REQUEST_OPERATION}"
        )
        known = ", ".join(self.operations)
        raise EndpointError(
            f"WSDL {self.spec.wsdl}: {what} (operations: {known})", endpoint=self.uri
        )

    def _envelope(self, operation: _Operation, body: Any) -> bytes:
        """The request envelope: the body (a dict, a Struct or None) as the input element."""
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
        if operation.wsa:
            self._wsa.egress(envelope, {}, operation.zeep, {"address": self.address})
        if self._wsse is not None:
            self._wsse.apply(envelope, {})
        return etree.tostring(envelope, xml_declaration=True, encoding="utf-8")

    def _reply(self, operation: _Operation, status: int, headers: Any, data: bytes) -> Any:
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
            return None
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
                return self._typed(operation, operation.read(payload))
            else:
                value = operation.output.parse(payload, self._schema, context=self._context)
        except (TypeError, ValueError, self._zeep_error) as exc:
            raise UnmarshalError("soap", f"{operation.name} reply: {exc}") from exc
        return self._typed(operation, to_data(value))

    def _typed(self, operation: _Operation, data: Any) -> Any:
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
