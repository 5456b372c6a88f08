"""The SOAP producer's preparation at route start: choosing the service and port, and each
operation of the binding made ready to call (HTTP headers, the elements eip writes and reads
itself with compiled codecs, or zeep's message model where those do not apply); and putting a
message's own header blocks into its envelope."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lxml import etree

from eip import headers as H
from eip.components.soap._version import SoapVersion
from eip.components.soap.codec import compile_reader, compile_writer
from eip.components.soap.spec import SoapClientSpec
from eip.errors import MarshalError, RouteDefinitionError, redact_uri

__all__ = ["Operation", "add_header_blocks", "choose_port", "declared_faults", "prepare"]

_VERSIONS = {version.namespace: version for version in SoapVersion}


@dataclass(frozen=True, slots=True)
class Operation:
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


def prepare(client: Any, binding: Any, name: str, version: SoapVersion) -> Operation:
    op = binding.get(name)
    request, output = _element_of(op.input), _element_of(op.output)
    return Operation(
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


def declared_faults(binding: Any) -> dict[str, tuple[str, Any]]:
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
        raise RouteDefinitionError(
            f"WSDL {redact_uri(wsdl)} has no {kind} '{wanted}' ({kind}s: {names})"
        )
    if not wanted and len(found) != 1:
        option = "wsdl_port (or soap_version)" if kind == "port" else kind
        raise RouteDefinitionError(
            f"WSDL {redact_uri(wsdl)} has {len(found)} {kind}s ({names}): set {option}="
        )
    return found[wanted] if wanted else next(iter(found.values()))


def choose_port(client: Any, spec: SoapClientSpec) -> tuple[Any, Any, SoapVersion]:
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
            f"WSDL {redact_uri(spec.wsdl)}: port '{port.name}' is SOAP {version.value}, "
            f"not the soap_version={spec.soap_version} asked for"
        )
    return service, port, version


def add_header_blocks(envelope: etree._Element, version: SoapVersion, blocks: Any) -> None:
    """Put ``blocks`` (an lxml element or a list of them) into the envelope's Header."""
    items = [blocks] if isinstance(blocks, etree._Element) else list(blocks)
    for item in items:
        if not isinstance(item, etree._Element):
            raise MarshalError(
                "soap",
                f"{H.SOAP_REQUEST_HEADERS} must hold lxml elements, not {type(item).__name__}",
            )
    ns = version.namespace
    header = envelope.find(f"{{{ns}}}Header")
    if header is None:
        header = etree.Element(f"{{{ns}}}Header")
        envelope.insert(0, header)
    for item in items:
        header.append(copy.deepcopy(item))
