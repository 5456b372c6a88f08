"""A WSDL 1.1 document's operations, SOAP bindings and ports, as small frozen dataclasses.

The SOAP server dispatches on the QName of the Body's child, answers with the operation's
output element (none for one-way), writes a declared fault's element into the detail, and
speaks the SOAP version of the port it serves; the producer needs the soapAction. Only what
those need is read. Only document/literal is supported: an operation whose message parts use
``type=`` (rpc style) or an ``encoded`` body is refused at load, naming the operation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from lxml import etree

from eip.components.soap._version import SoapVersion
from eip.components.soap._xml import QName, line_of
from eip.errors import RouteDefinitionError

__all__ = [
    "WSDL_NS",
    "WsdlBinding",
    "WsdlBindingOperation",
    "WsdlError",
    "WsdlFault",
    "WsdlModel",
    "WsdlOperation",
    "WsdlPort",
    "read_wsdl_model",
]

WSDL_NS: Final = "http://schemas.xmlsoap.org/wsdl/"
_W: Final = f"{{{WSDL_NS}}}"
_BINDING_NS: Final = {
    "http://schemas.xmlsoap.org/wsdl/soap/": SoapVersion.SOAP11,
    "http://schemas.xmlsoap.org/wsdl/soap12/": SoapVersion.SOAP12,
}


class WsdlError(RouteDefinitionError):
    """A WSDL (or a schema it uses) cannot be read or compiled; names the file and line.

    Raised when a route starts, like any other definition error: a broken WSDL is a
    configuration problem, not a per-message one.
    """

    def __init__(self, message: str, *, path: str, line: int | None = None) -> None:
        self.path = path
        self.line = line
        where = f"{path}, line {line}" if line else path
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True, slots=True)
class WsdlFault:
    """A fault an operation declares: its name and the element carried in the detail."""

    name: str
    element: QName


@dataclass(frozen=True, slots=True)
class WsdlOperation:
    """A portType operation: the Body elements of its request, its reply and its faults."""

    name: str
    input: QName
    output: QName | None
    faults: tuple[WsdlFault, ...] = ()
    documentation: str | None = None

    @property
    def one_way(self) -> bool:
        """No output: the server answers 202 with no envelope."""
        return self.output is None

    def fault(self, name: str) -> WsdlFault | None:
        """The declared fault called ``name``, if any."""
        return next((f for f in self.faults if f.name == name), None)

    def declares(self, failure: BaseException) -> bool:
        """Whether ``failure`` is a fault this operation declares (a route raising
        ``SoapFault(fault="NoSuchCustomer")`` as its intended answer): a business outcome,
        logged at INFO rather than as a failed exchange."""
        from eip.errors import PartFailedError, SoapFault

        failure = PartFailedError.unwrap(failure)
        return (
            isinstance(failure, SoapFault)
            and bool(failure.fault)
            and (self.fault(failure.fault or "") is not None)
        )

    def fault_for(self, element: QName) -> WsdlFault | None:
        """The declared fault whose detail element is ``element``: how a received detail is
        turned back into a typed fault."""
        return next((f for f in self.faults if f.element == element), None)


@dataclass(frozen=True, slots=True)
class WsdlBindingOperation:
    """One operation as a binding exposes it; ``soap_action`` is ``""`` when unset."""

    name: str
    soap_action: str
    style: str


@dataclass(frozen=True, slots=True)
class WsdlBinding:
    """A SOAP binding of a portType: its version, transport and per-operation soapAction."""

    name: QName
    port_type: QName
    version: SoapVersion
    transport: str
    style: str
    operations: tuple[WsdlBindingOperation, ...]

    def soap_action(self, operation: str) -> str | None:
        """The soapAction of ``operation`` in this binding; None if it is not bound here."""
        found = next((op for op in self.operations if op.name == operation), None)
        return found.soap_action if found is not None else None


@dataclass(frozen=True, slots=True)
class WsdlPort:
    """A service port: where a binding is served (the address tests override)."""

    service: str
    name: str
    binding: WsdlBinding
    address: str

    @property
    def version(self) -> SoapVersion:
        return self.binding.version


@dataclass(frozen=True, slots=True)
class WsdlModel:
    """Everything read from the WSDL besides its types."""

    target_namespace: str
    operations: tuple[WsdlOperation, ...]
    bindings: tuple[WsdlBinding, ...]
    ports: tuple[WsdlPort, ...]


def read_wsdl_model(root: etree._Element, path: str) -> WsdlModel:
    """Read operations (all portTypes), SOAP bindings and SOAP ports of a parsed WSDL."""
    tns = root.get("targetNamespace", "")

    def fail(message: str, element: etree._Element) -> WsdlError:
        return WsdlError(message, path=path, line=line_of(element))

    def qname(element: etree._Element, attr: str) -> QName:
        value = (element.get(attr) or "").strip()
        prefix, sep, local = value.rpartition(":")
        namespace = element.nsmap.get(prefix) if sep else element.nsmap.get(None, "")
        if not value or namespace is None:
            raise fail(f"<{element.tag}> {attr}={value!r} is missing or undeclared", element)
        return namespace, local

    messages = {(tns, m.get("name", "")): m for m in root.iterchildren(f"{_W}message")}
    operations: dict[str, WsdlOperation] = {}
    for port_type in root.iterchildren(f"{_W}portType"):
        for element in port_type.iterchildren(f"{_W}operation"):
            op = _operation(element, messages, qname, fail)
            if op is None:
                continue
            if operations.setdefault(op.name, op) != op:
                raise fail(f"operation {op.name!r} is declared twice, differently", element)
    bindings = {}
    for element in root.iterchildren(f"{_W}binding"):
        binding = _binding(element, tns, qname, fail)
        if binding is not None:
            bindings[binding.name] = binding
    ports = []
    for service in root.iterchildren(f"{_W}service"):
        for port in service.iterchildren(f"{_W}port"):
            bound = bindings.get(qname(port, "binding"))
            address = next((a for a in port if _local(a) == "address"), None)
            if bound is not None and address is not None:
                name = service.get("name", "")
                location = address.get("location", "")
                ports.append(WsdlPort(name, port.get("name", ""), bound, location))
    return WsdlModel(tns, tuple(operations.values()), tuple(bindings.values()), tuple(ports))


_QNameOf = Callable[[etree._Element, str], QName]
_Fail = Callable[[str, etree._Element], WsdlError]


def _local(element: etree._Element) -> str:
    tag = element.tag
    return tag.rpartition("}")[2] if isinstance(tag, str) else ""


def _part_element(
    ref: etree._Element, messages: dict[QName, etree._Element], qname: _QNameOf, fail: _Fail
) -> QName:
    """The element of the message ``ref`` points to (its first part with ``element=``)."""
    message = messages.get(qname(ref, "message"))
    if message is None:
        raise fail(f"message {ref.get('message')!r} is not defined", ref)
    parts = list(message.iterchildren(f"{_W}part"))
    for part in parts:
        if part.get("element"):
            return qname(part, "element")
    if parts:
        raise fail(
            f"message {message.get('name')!r} has type= parts (rpc style); "
            "only document/literal is supported",
            message,
        )
    raise fail(f"message {message.get('name')!r} has no part", message)


def _operation(
    element: etree._Element,
    messages: dict[QName, etree._Element],
    qname: _QNameOf,
    fail: _Fail,
) -> WsdlOperation | None:
    """A request-response or one-way operation; notification styles (output only) are
    skipped, as a server cannot serve them."""
    request = element.find(f"{_W}input")
    if request is None:
        return None
    reply = element.find(f"{_W}output")
    faults = tuple(
        WsdlFault(f.get("name", ""), _part_element(f, messages, qname, fail))
        for f in element.iterchildren(f"{_W}fault")
    )
    doc = element.findtext(f"{_W}documentation")
    return WsdlOperation(
        name=element.get("name", ""),
        input=_part_element(request, messages, qname, fail),
        output=_part_element(reply, messages, qname, fail) if reply is not None else None,
        faults=faults,
        documentation=doc.strip() if doc else None,
    )


def _binding(element: etree._Element, tns: str, qname: _QNameOf, fail: _Fail) -> WsdlBinding | None:
    """A SOAP 1.1 or 1.2 binding; other bindings (HTTP GET/POST, MIME) are skipped."""
    soap = next((c for c in element if isinstance(c.tag, str) and _local(c) == "binding"), None)
    namespace = soap.tag[1:].partition("}")[0] if soap is not None else ""
    version = _BINDING_NS.get(namespace)
    if soap is None or version is None:
        return None
    style = soap.get("style", "document")
    operations = []
    for op in element.iterchildren(f"{_W}operation"):
        soap_op = op.find(f"{{{namespace}}}operation")
        soap_action = soap_op.get("soapAction", "") if soap_op is not None else ""
        op_style = soap_op.get("style", style) if soap_op is not None else style
        if op_style != "document":
            raise fail(f"operation {op.get('name')!r}: only document style is supported", op)
        for body in op.iter(f"{{{namespace}}}body"):
            if body.get("use", "literal") != "literal":
                raise fail(f"operation {op.get('name')!r}: only use=literal is supported", body)
        operations.append(WsdlBindingOperation(op.get("name", ""), soap_action, op_style))
    return WsdlBinding(
        name=(tns, element.get("name", "")),
        port_type=qname(element, "type"),
        version=version,
        transport=soap.get("transport", ""),
        style=style,
        operations=tuple(operations),
    )
