"""The SOAP benchmark's target: a hand-written raw ASGI SOAP 1.1 endpoint, no framework.

:data:`credit_app` answers ``POST`` of a ``CheckCredit`` envelope (``tests/soap/wsdl/
crm_erp.wsdl``) with a canned ``CheckCreditResponse``, valid per that WSDL. It parses every
request with a hardened lxml parser (no entities, no network, no DTD: what any server facing
the network must do) and checks that the Body holds a ``CheckCredit`` with a ``customerId``,
so a client sending a wrong envelope gets a Client fault, never a silent success. Everything
else is left out, so the server costs the benchmark as little of the shared CPU as possible:
both clients measured call this same server.

Run it as ``start_server_process("benchmarks._soap_apps:credit_app")``.

The consumer benchmark's baselines are services doing the eip route's work by hand:
:data:`credit_service_app` (parse, read two fields, decide, write the reply with lxml) and
:data:`credit_validating_app`, which also validates the request against the WSDL's XSD with
lxml, compiled once at import by :func:`compile_wsdl_schema` (the recipe in
``shared/PITFALLS.md``: each inline ``xs:schema`` re-serialised with the WSDL root's
namespaces, one wrapper schema importing them, a resolver serving them).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Final

from lxml import etree

from benchmarks._http_apps import Receive, Scope, Send, read_body

__all__ = [
    "CHECK_CREDIT_RESPONSE",
    "WSDL",
    "compile_wsdl_schema",
    "credit_app",
    "credit_service_app",
    "credit_validating_app",
]

_S11: Final = "http://schemas.xmlsoap.org/soap/envelope/"
_CUST: Final = "http://erp.example.com/schemas/customer"
_CHECK_CREDIT: Final = f"{{{_S11}}}Body/{{{_CUST}}}CheckCredit/{{{_CUST}}}customerId"
_XML: Final = (b"content-type", b"text/xml; charset=utf-8")

CHECK_CREDIT_RESPONSE: Final = (
    '<?xml version="1.0" encoding="utf-8"?>'
    f'<soapenv:Envelope xmlns:soapenv="{_S11}"><soapenv:Body>'
    f'<c:CheckCreditResponse xmlns:c="{_CUST}"><c:approved>true</c:approved>'
    "<c:limit>5000.00</c:limit><c:reason>within limit</c:reason></c:CheckCreditResponse>"
    "</soapenv:Body></soapenv:Envelope>"
).encode()

_CLIENT_FAULT: Final = (
    '<?xml version="1.0" encoding="utf-8"?>'
    f'<soapenv:Envelope xmlns:soapenv="{_S11}"><soapenv:Body><soapenv:Fault>'
    "<faultcode>soapenv:Client</faultcode><faultstring>expected a CheckCredit request"
    "</faultstring></soapenv:Fault></soapenv:Body></soapenv:Envelope>"
).encode()

_PARSER: Final = etree.XMLParser(
    resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False
)


def _is_check_credit(body: bytes) -> bool:
    try:
        root = etree.fromstring(body, _PARSER)
    except etree.XMLSyntaxError:
        return False
    docinfo = root.getroottree().docinfo
    if docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        return False  # SOAP forbids DTDs
    return root.tag == f"{{{_S11}}}Envelope" and root.find(_CHECK_CREDIT) is not None


async def _answer(send: Send, status: int, body: bytes) -> None:
    headers = [_XML, (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def credit_app(scope: Scope, receive: Receive, send: Send) -> None:
    """POST a CheckCredit envelope: 200 and the canned reply; anything else a fault (500)."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    body = await read_body(receive)
    if scope["method"] == "POST" and body is not None and _is_check_credit(body):
        await _answer(send, 200, CHECK_CREDIT_RESPONSE)
    else:
        await _answer(send, 500, _CLIENT_FAULT)


_REQUEST: Final = f"{{{_S11}}}Body/{{{_CUST}}}CheckCredit"
_LIMIT: Final = 1000


def _credit_reply(request: etree._Element) -> bytes:
    """The hand-written service's work: read the request's fields, decide, write the reply."""
    amount = float(request.findtext(f"{{{_CUST}}}amount") or "0")
    envelope = etree.Element(f"{{{_S11}}}Envelope", nsmap={"soapenv": _S11})
    body = etree.SubElement(envelope, f"{{{_S11}}}Body")
    reply = etree.SubElement(body, f"{{{_CUST}}}CheckCreditResponse", nsmap={"c": _CUST})
    etree.SubElement(reply, f"{{{_CUST}}}approved").text = "true" if amount <= _LIMIT else "false"
    etree.SubElement(reply, f"{{{_CUST}}}limit").text = f"{_LIMIT:.2f}"
    etree.SubElement(reply, f"{{{_CUST}}}reason").text = "within limit"
    return etree.tostring(envelope, xml_declaration=True, encoding="utf-8")


async def credit_service_app(scope: Scope, receive: Receive, send: Send) -> None:
    """The consumer benchmark's baseline: a hand-written lxml CheckCredit service doing what
    the eip route does (parse hardened, read the fields, decide, build and write the reply),
    without eip's XSD validation of request and reply or its WSDL-driven data binding."""
    if scope["type"] != "http":
        return
    body = await read_body(receive)
    request = None
    if body is not None:
        try:
            root = etree.fromstring(body, _PARSER)
        except etree.XMLSyntaxError:
            root = None
        if root is not None and root.getroottree().docinfo.internalDTD is None:
            request = root.find(_REQUEST)
    if request is None:
        await _answer(send, 500, _CLIENT_FAULT)
        return
    await _answer(send, 200, _credit_reply(request))


# -- the validating baseline ---------------------------------------------------------------
WSDL: Final = Path(__file__).resolve().parent.parent / "tests" / "soap" / "wsdl" / "crm_erp.wsdl"
_WSDL_NS: Final = "http://schemas.xmlsoap.org/wsdl/"
_XS_NS: Final = "http://www.w3.org/2001/XMLSchema"


class _Inline(etree.Resolver):
    """Serves the re-serialised inline schemas by their made-up names; files go to libxml2."""

    def __init__(self, documents: dict[str, bytes], base: Path) -> None:
        self.documents = documents
        self.base = base

    def resolve(self, system_url: str, public_id: str, context: Any = None) -> Any:
        name = system_url.rpartition("/")[2]
        data = self.documents.get(name)
        resolve_string: Any = self.resolve_string
        base_url = str(self.base / name)  # so that their own relative imports find the files
        return None if data is None else resolve_string(data, context, base_url=base_url)


def compile_wsdl_schema(path: Path = WSDL) -> etree.XMLSchema:
    """One lxml ``XMLSchema`` for all the schemas of a WSDL's ``types`` (and what they import)."""
    root = etree.parse(str(path), _PARSER).getroot()
    documents: dict[str, bytes] = {}
    namespaces: dict[str, str] = {}
    for number, schema in enumerate(root.iterfind(f"{{{_WSDL_NS}}}types/{{{_XS_NS}}}schema")):
        standalone = etree.Element(schema.tag, dict(schema.attrib), nsmap=schema.nsmap)
        standalone.extend(copy.deepcopy(child) for child in schema)
        name = f"inline-{number}.xsd"
        for imported in standalone.iterfind(f"{{{_XS_NS}}}import"):
            if imported.get("schemaLocation") is None:  # by namespace only: the inline one
                imported.set("schemaLocation", f"inline-for-{imported.get('namespace')}")
        documents[name] = etree.tostring(standalone)
        namespaces[schema.get("targetNamespace", "")] = name
    for namespace, name in namespaces.items():
        documents[f"inline-for-{namespace}"] = documents[name]
    imports = "".join(
        f'<xs:import namespace="{namespace}" schemaLocation="{name}"/>'
        for namespace, name in namespaces.items()
    )
    wrapper = f'<xs:schema xmlns:xs="{_XS_NS}">{imports}</xs:schema>'
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    parser.resolvers.add(_Inline(documents, path.parent))
    return etree.XMLSchema(etree.fromstring(wrapper, parser, base_url=str(path)))


_SCHEMA: Final = compile_wsdl_schema()


async def credit_validating_app(scope: Scope, receive: Receive, send: Send) -> None:
    """The consumer benchmark's main baseline: :data:`credit_service_app`, plus validating
    the request against the WSDL's XSD with lxml (a Client fault when it does not match),
    as eip does before its route runs."""
    if scope["type"] != "http":
        return
    body = await read_body(receive)
    request = None
    if body is not None:
        try:
            root = etree.fromstring(body, _PARSER)
        except etree.XMLSyntaxError:
            root = None
        if root is not None and root.getroottree().docinfo.internalDTD is None:
            request = root.find(_REQUEST)
    if request is None or not _SCHEMA.validate(request):
        await _answer(send, 500, _CLIENT_FAULT)
        return
    await _answer(send, 200, _credit_reply(request))
