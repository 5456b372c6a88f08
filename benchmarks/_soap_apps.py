"""The SOAP benchmark's target: a hand-written raw ASGI SOAP 1.1 endpoint, no framework.

:data:`credit_app` answers ``POST`` of a ``CheckCredit`` envelope (``tests/soap/wsdl/
crm_erp.wsdl``) with a canned ``CheckCreditResponse``, valid per that WSDL. It parses every
request with a hardened lxml parser (no entities, no network, no DTD: what any server facing
the network must do) and checks that the Body holds a ``CheckCredit`` with a ``customerId``,
so a client sending a wrong envelope gets a Client fault, never a silent success. Everything
else is left out, so the server costs the benchmark as little of the shared CPU as possible:
both clients measured call this same server.

Run it as ``start_server_process("benchmarks._soap_apps:credit_app")``.
"""

from __future__ import annotations

from typing import Final

from lxml import etree

from benchmarks._http_apps import Receive, Scope, Send, read_body

__all__ = ["CHECK_CREDIT_RESPONSE", "credit_app", "credit_service_app"]

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
