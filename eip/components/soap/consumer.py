"""The SOAP consumer: a service served from its WSDL on eip's shared HTTP server.

Per request: authenticate (the ``http:`` options), read the body within the size limit, parse
the envelope with the hardened parser (no DTD, no entities, no network: an XXE or a billion
laughs is a Client fault), find the operation from the QName of the Body's child (SOAPAction
is only a hint, for WSDLs where two operations share a request element), validate the request
against the WSDL's XSD with lxml (zeep alone would read an ``xs:int`` of "abc" as None), read
it into plain data, run the route, and write its body as the operation's output element.

What the route sees: the request as plain data (dicts, lists, Decimal, date), headers
``eip.soap.operation``, ``eip.soap.version`` (``1.1``/``1.2``) and ``eip.soap.action``, the
HTTP request headers (credentials removed), and the SOAP header blocks (lxml elements) in the
``eip.soap.headers`` property. A header block marked mustUnderstand for eip that the route does
not declare in ``understood_headers`` gets a MustUnderstand fault, as SOAP requires: eip
verifies no WS-Security itself, so it never claims to have understood it. One-way
operations run in-only and answer 202 with no envelope once the route completed.

Faults are answered in the version the request used:

- the request's fault (not SOAP, unknown operation, schema-invalid: the message names the
  element): 1.1 ``Client`` (HTTP 500), 1.2 ``Sender`` (HTTP 400);
- the route raised :class:`~eip.errors.SoapFault`: its kind, subcodes and reason, and its
  detail written as the WSDL fault element it names (a typed fault);
- any other failure: 1.1 ``Server`` / 1.2 ``Receiver`` (HTTP 500), saying only that the
  service failed and which exchange (``expose_errors=true`` adds the error itself).

``GET <path>?wsdl`` serves the WSDL with its ``soap:address`` locations pointing at this
server, and ``?xsd=<file>`` the local schemas it imports.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from lxml import etree

from eip import headers as H
from eip.components.base import process_exchange
from eip.components.http.intake import ServedConsumer
from eip.components.http.server import Receive, Scope, Send, respond
from eip.components.soap.envelope import (
    FaultCode,
    SoapEnvelopeError,
    SoapVersion,
    VersionMismatchError,
    build_fault,
    build_response,
    content_type,
    fault_http_status,
    parse_envelope,
)
from eip.components.soap.schema import WsdlSchema
from eip.components.soap.spec import SoapServerSpec
from eip.components.soap.spec_faults import foreign_encoding, not_understood_blocks, upgrade_blocks
from eip.components.soap.wsdl import WsdlOperation
from eip.components.soap.wsdl_document import ServedWsdl
from eip.components.soap.wssecurity import SECURITY, WSSE, UsernameTokenVerifier, WsSecurityFault
from eip.components.soap.zeep_support import (
    data_to_element,
    element_reader,
    element_writer,
    load_client,
)
from eip.errors import PartFailedError, SoapFault, UnmarshalError
from eip.message import Exchange, ExchangePattern

if TYPE_CHECKING:
    from eip.components.soap import SoapComponent
    from eip.runtime.route import Route

__all__ = ["SoapConsumer"]

log = logging.getLogger("eip.soap")
_HOST = re.compile(r"[A-Za-z0-9.-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")


def _clark(qname: tuple[str, str]) -> str:
    return f"{{{qname[0]}}}{qname[1]}" if qname[0] else qname[1]


def _guess_version(headers: dict[str, Any]) -> SoapVersion:
    media = str(headers.get("content-type", "")).split(";", 1)[0].strip().lower()
    return SoapVersion.SOAP12 if media == "application/soap+xml" else SoapVersion.SOAP11


class SoapConsumer(ServedConsumer):
    def __init__(self, component: SoapComponent, spec: SoapServerSpec, route: Route) -> None:
        http = component.context.component("http")
        super().__init__(
            component.context,
            route,
            http.server_at(spec.host, spec.port),  # type: ignore[attr-defined]
            path=spec.path,
            methods=["GET", "POST"],
            auth=spec.auth_spec(),
            max_body_size=spec.max_body_size,
        )
        self.component = component
        self.spec = spec
        self.schema: WsdlSchema | None = None
        self.client: Any = None
        self.document: ServedWsdl | None = None
        self.understood = frozenset(spec.understood_headers)
        self._by_operation: dict[str, _Codecs] = {}
        #: Set at start when the endpoint requires WS-Security (see :mod:`.wssecurity`).
        self.verifier: UsernameTokenVerifier | None = None
        if spec.ws_security != "none":
            self.understood |= {SECURITY}  # eip checks it now, so it may claim to understand it

    async def start(self) -> None:
        if self.schema is None:
            import asyncio

            self.schema = await asyncio.to_thread(WsdlSchema.load, self.spec.wsdl)
            self.client = await load_client(self.spec.wsdl, 30.0)
            self.document = ServedWsdl(self.spec.wsdl, self.schema)
        if self.spec.ws_security != "none" and self.verifier is None:
            self.verifier = UsernameTokenVerifier(
                self.spec.ws_users(), max_skew=self.spec.ws_max_skew, now=self.context.clock.time
            )
        await super().start()

    # -- one request ---------------------------------------------------------------------
    async def handle(
        self, scope: Scope, receive: Receive, send: Send, params: dict[str, str] | None
    ) -> None:
        admitted = await self.admit(scope, send)
        if admitted is None:
            return
        headers = admitted[0]
        if scope["method"] != "POST":
            await self._serve_document(scope, send)
            return
        server = self.server
        if server.inflight >= server.max_concurrency:
            await server.overloaded(send)
            return
        server.inflight += 1
        try:
            body = await self.read_body(receive, send, headers.get("content-length"))
            if body is not None:
                await self._call(scope, send, headers, body)
        finally:
            server.inflight -= 1

    def _codecs(self, operation: WsdlOperation) -> _Codecs:
        """The operation's element reader and writer, made on its first request (an element
        zeep cannot find fails that request, as ever, not the route's start)."""
        codecs = self._by_operation.get(operation.name)
        if codecs is None:
            tag = _clark(operation.input)
            read = element_reader(self.client, tag)
            output = operation.output
            write = element_writer(self.client, _clark(output)) if output is not None else None
            pattern = ExchangePattern.IN_ONLY if operation.one_way else ExchangePattern.IN_OUT
            codecs = self._by_operation[operation.name] = _Codecs(read, write, pattern)
        return codecs

    async def _call(self, scope: Scope, send: Send, headers: dict[str, Any], body: bytes) -> None:
        assert self.schema is not None
        version: SoapVersion | None = None  # until the envelope says (else the Content-Type)
        try:
            envelope = parse_envelope(body, max_size=self.max_body)
            version = envelope.version
            must = envelope.must_understand
            unknown = [q for q in must if _clark(q) not in self.understood] if must else None
            if unknown:
                names = ", ".join(_clark(q) for q in unknown)
                blocks = not_understood_blocks(version, unknown)
                await self._fault(
                    send, version, "must_understand", f"not understood: {names}", blocks=blocks
                )
                return
            encoding = foreign_encoding(envelope)
            if encoding is not None:
                await self._fault(
                    send,
                    version,
                    "data_encoding_unknown",
                    f"encodingStyle {encoding!r} is not supported (document/literal only)",
                )
                return
            if self.verifier is not None:
                try:
                    headers[H.HTTP_PRINCIPAL] = self.verifier.verify(envelope.header)
                except WsSecurityFault as refused:
                    await self._fault(
                        send,
                        version,
                        "client",
                        refused.reason,
                        ((WSSE, refused.code),),
                        code_11=(WSSE, refused.code),
                    )
                    return
            action = headers.get("soapaction") or _action_parameter(headers)
            operation = self.schema.operation_for(envelope.qname, soap_action=action)
            if operation is None:
                raise UnmarshalError(
                    "soap", f"no operation takes {_clark(envelope.qname)}", location="Body"
                )
            if self.spec.validate:
                self.schema.validate(envelope.payload)
            codecs = self._codecs(operation)
            data = codecs.read(envelope.payload)
        except VersionMismatchError as exc:
            # SOAP 1.2 Appendix A: answer in 1.1's envelope (what an old client reads), with
            # an Upgrade header naming the envelopes this service speaks.
            await self._fault(
                send, SoapVersion.SOAP11, "version_mismatch", exc.reason, blocks=upgrade_blocks()
            )
            return
        except (SoapEnvelopeError, UnmarshalError) as exc:
            reason = f"{exc.location}: {exc.reason}" if exc.location else exc.reason
            if version is None:
                version = _guess_version(headers)
            await self._fault(send, version, "client", f"invalid request: {reason}")
            return
        headers[H.SOAP_OPERATION] = operation.name
        headers[H.SOAP_VERSION] = "1.1" if version is _SOAP11 else "1.2"
        if action:
            headers[H.SOAP_ACTION] = str(action).strip('"')
        exchange = Exchange(data, headers, codecs.pattern)
        if envelope.header is not None and len(envelope.header):
            exchange.properties[H.SOAP_HEADERS] = list(envelope.header)
        spans = self.spans
        span = spans.start(scope, exchange) if spans is not None else None
        await process_exchange(self.route, exchange, expected=operation.declares)
        reply = self._reply(version, exchange, codecs.write)
        if type(reply) is bytes:  # the common case, answered without a coroutine of its own
            status = 200
            await respond(send, 200, reply, _xml_headers(version, reply))
        else:
            assert not isinstance(reply, bytes)
            status = await self._answer(send, version, operation, exchange, reply)
        if span is not None:
            assert spans is not None
            spans.finish(span, status, exchange)

    def _reply(
        self,
        version: SoapVersion,
        exchange: Exchange,
        write: Callable[[Any], etree._Element] | None,
    ) -> bytes | Exception | None:
        """The reply envelope of an exchange that succeeded, written as the operation's output
        element and validated; the exception when the reply does not fit the WSDL; None for a
        failed exchange or a one-way operation (see :meth:`_answer`)."""
        if exchange.exception is not None or write is None:
            return None
        try:
            element = write(exchange.body)
            if self.spec.validate:
                assert self.schema is not None
                self.schema.validate(element)
        except Exception as exc:
            return exc
        return build_response(version, element)

    async def _answer(
        self,
        send: Send,
        version: SoapVersion,
        operation: WsdlOperation,
        exchange: Exchange,
        invalid: Exception | None,
    ) -> int:
        """Answer what :meth:`_reply` did not write: the route's failure, a one-way
        operation's 202, or a reply that does not fit the WSDL (``invalid``: why)."""
        failure = exchange.exception
        if failure is not None:
            return await self._failed(send, version, operation, exchange, failure)
        if operation.output is None:
            await respond(send, 202, b"", [(b"content-length", b"0")])
            return 202
        assert invalid is not None, "_reply writes every other reply"
        log.error(
            "route %s: the reply of %s does not fit the WSDL's %s: %s",
            self.route.id,
            operation.name,
            operation.output[1],
            invalid,
        )
        return await self._fault(
            send, version, "server", self._server_reason(exchange, invalid, "invalid reply")
        )

    async def _failed(
        self,
        send: Send,
        version: SoapVersion,
        operation: WsdlOperation,
        exchange: Exchange,
        failure: BaseException,
    ) -> int:
        failure = PartFailedError.unwrap(failure)  # a fault raised in a split part is still one
        if isinstance(failure, SoapFault):
            detail = self._detail(operation, failure)
            subcodes = tuple(_qname(code) for code in failure.subcodes)
            kind: FaultCode = "client" if failure.kind == "client" else "server"
            return await self._fault(send, version, kind, failure.reason, subcodes, detail)
        if isinstance(failure, UnmarshalError):
            return await self._fault(send, version, "client", f"invalid request: {failure}")
        return await self._fault(
            send, version, "server", self._server_reason(exchange, failure, "service failed")
        )

    def _server_reason(self, exchange: Exchange, failure: BaseException, what: str) -> str:
        reason = f"{what} (exchange {exchange.id})"
        if self.spec.expose_errors:
            reason += f": {type(failure).__name__}: {failure}"
        return reason

    def _detail(self, operation: WsdlOperation, failure: SoapFault) -> etree._Element | None:
        detail = failure.detail
        if isinstance(detail, etree._Element):
            return detail
        declared = operation.fault(failure.fault) if failure.fault else None
        if declared is None:
            if detail is None:
                return None
            element = etree.Element("message")
            element.text = str(detail)
            return element
        try:
            return data_to_element(self.client, _clark(declared.element), detail)
        except Exception as exc:
            log.error(
                "route %s: fault %s detail cannot be written: %s", self.route.id, declared.name, exc
            )
            return None

    async def _fault(
        self,
        send: Send,
        version: SoapVersion,
        code: FaultCode,
        reason: str,
        subcodes: tuple[tuple[str, str], ...] = (),
        detail: etree._Element | None = None,
        *,
        code_11: tuple[str, str] | None = None,
        blocks: list[etree._Element] | None = None,
    ) -> int:
        data = build_fault(
            version,
            code=code,
            reason=reason,
            subcodes=subcodes,
            detail=detail,
            code_11=code_11,
            header_blocks=blocks or (),
        )
        status = fault_http_status(version, code)
        await respond(send, status, data, _xml_headers(version, data))
        return status

    async def _serve_document(self, scope: Scope, send: Send) -> None:
        assert self.document is not None
        query = scope["query_string"].decode("latin-1")
        found = self.document.answer(query, f"{self._public_base(scope)}{self.spec.path}")
        if found is None:
            body = b'{"error":"GET ?wsdl for the WSDL, POST a SOAP envelope to call"}'
            await respond(send, 404, body)
            return
        await respond(send, 200, found, _xml_headers(None, found))

    def _public_base(self, scope: Scope) -> str:
        """Where clients reach this service, for the WSDL's soap:address: ``public_url``, else
        the request's Host (and X-Forwarded-Proto/-Host with ``trust_forwarded``), else the
        bind address (which a client elsewhere cannot use when it is 0.0.0.0)."""
        if self.spec.public_url:
            return self.spec.public_url.rstrip("/")
        headers = dict(scope.get("headers", ()))
        scheme = str(scope.get("scheme", "http"))
        host = headers.get(b"host", b"").decode("latin-1")
        if self.spec.trust_forwarded:
            forwarded_proto = headers.get(b"x-forwarded-proto", b"").decode("latin-1")
            forwarded_host = headers.get(b"x-forwarded-host", b"").decode("latin-1")
            scheme = forwarded_proto.split(",")[0].strip() or scheme
            host = forwarded_host.split(",")[0].strip() or host
        if scheme not in ("http", "https") or not _HOST.fullmatch(host):
            return self.server.base_url
        return f"{scheme}://{host}"


_SOAP11 = SoapVersion.SOAP11
_CONTENT_TYPES = {
    None: (b"content-type", b"text/xml; charset=utf-8"),
    _SOAP11: (b"content-type", content_type(_SOAP11).encode()),
    SoapVersion.SOAP12: (b"content-type", content_type(SoapVersion.SOAP12).encode()),
}

_CONTENT_TYPE_11 = _CONTENT_TYPES[_SOAP11]


class _Codecs(NamedTuple):
    """An operation's request reader, reply writer (None: one-way) and exchange pattern."""

    read: Callable[[etree._Element], Any]
    write: Callable[[Any], etree._Element] | None
    pattern: ExchangePattern


def _xml_headers(version: SoapVersion | None, data: bytes) -> list[tuple[bytes, bytes]]:
    kind = _CONTENT_TYPES[version] if version is not _SOAP11 else _CONTENT_TYPE_11
    return [kind, (b"content-length", b"%d" % len(data))]


def _action_parameter(headers: dict[str, Any]) -> str | None:
    """SOAP 1.2 carries the action as a ``Content-Type`` parameter."""
    for part in str(headers.get("content-type", "")).split(";")[1:]:
        name, _, value = part.strip().partition("=")
        if name.lower() == "action":
            return value.strip('"')
    return None


def _qname(code: str) -> tuple[str, str]:
    if code.startswith("{"):
        namespace, _, local = code[1:].partition("}")
        return namespace, local
    return "", code
