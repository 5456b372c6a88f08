"""The whole eip exception tree.

::

    EipError                         every error eip raises
    ├── RouteDefinitionError         a route is wrong: unknown scheme/option, bad value, missing
    │                                predicate. Raised at compile/start, never per message.
    ├── LifecycleError               the context or a route cannot start/stop as asked
    └── ExchangeError                processing one exchange failed; carries route id,
        │                            exchange id and endpoint (credentials redacted)
        ├── DataFormatError          marshal/unmarshal failed
        │   ├── UnmarshalError       bad input: names the format and the place (JSON path,
        │   │                        XML line/column, CSV row/column)
        │   └── MarshalError         a body could not be written in the format
        ├── MappingError             the field mapper met an unknown field or a bad value
        ├── NoConsumerError          ``direct:`` send with no route consuming that name
        ├── ExchangeTimeoutError     a request-reply or bounded wait ran out of time
        ├── NoMessageIdError         the idempotent consumer's id expression gave no id
        ├── InvalidCorrelationKeyError  the aggregator's correlation expression gave no key
        ├── ClosedCorrelationKeyError   an exchange arrived for a closed aggregation group
        ├── ResolveEndpointError     a recipient list named an invalid endpoint
        ├── ThrottledError           the throttler rejected an exchange (reject mode)
        ├── CircuitOpenError         a circuit breaker is open and has no fallback
        ├── PartFailedError          a split part or a multicast/recipient list output failed:
        │                            names the EIP, the index and the output's endpoint; the
        │                            original failure is ``__cause__`` (clauses match on it)
        └── EndpointError            a transport failed; third-party faults are mapped here
            │                        at the component boundary with ``raise ... from exc``
            ├── OutcomeUnknownError  a send whose outcome is unknown (the connection died
            │                        before the confirm, the confirm timed out, the broker
            │                        blocked publishing): never dead-lettered; requeued
            ├── HttpOperationFailed  an HTTP call answered status >= 400: status, URL
            │                        (credentials redacted), response body excerpt
            ├── PageFetchError       ``poll_pages`` could not fetch or read a page: names the
            │                        page number, its URL (redacted) and the attempts made
            └── SoapFault            a SOAP Fault: code (namespace resolved), subcodes, reason,
                                     detail (typed data when the WSDL declares it); raised by
                                     the soap: producer, and raised by routes to answer one

Control flow (stopping a route, filtering) is not expressed with exceptions.
"""

from __future__ import annotations

from eip.redaction import redact_uri

__all__ = [
    "CircuitOpenError",
    "ClosedCorrelationKeyError",
    "DataFormatError",
    "EipError",
    "EndpointError",
    "ExchangeError",
    "ExchangeTimeoutError",
    "HttpOperationFailed",
    "InvalidCorrelationKeyError",
    "LifecycleError",
    "MappingError",
    "MarshalError",
    "NoConsumerError",
    "NoMessageIdError",
    "OutcomeUnknownError",
    "PageFetchError",
    "PartFailedError",
    "ResolveEndpointError",
    "RouteDefinitionError",
    "SoapFault",
    "ThrottledError",
    "UnmarshalError",
    "redact_uri",
]


class EipError(Exception):
    """Root of every error raised by eip."""


class RouteDefinitionError(EipError):
    """A route definition is invalid; raised before any message flows.

    ``location`` says where in the route files (``routes/orders.py:12, OrderRoutes``),
    ``route_id`` and ``step`` where in the route, ``option`` which option was wrong, and
    ``valid`` what would have been right, listed under ``valid_label`` ("valid schemes", ...).
    """

    def __init__(
        self,
        message: str,
        *,
        route_id: str | None = None,
        step: str | None = None,
        option: str | None = None,
        valid: list[str] | None = None,
        valid_label: str = "valid options",
        location: str | None = None,
    ) -> None:
        self.route_id = route_id
        self.step = step
        self.option = option
        self.valid = valid
        self.valid_label = valid_label
        self.location = location
        self.reason = message
        super().__init__(message)

    def __str__(self) -> str:
        where = [self.location] if self.location else []
        if self.route_id:
            where.append(f"route '{self.route_id}'")
        if self.step:
            where.append(f"step {self.step}")
        text = f"{', '.join(where)}: {self.reason}" if where else self.reason
        if self.valid:
            text += f" ({self.valid_label}: {', '.join(sorted(self.valid))})"
        return text


class LifecycleError(EipError):
    """The context or a route cannot be started or stopped as asked."""


class ExchangeError(EipError):
    """Processing one exchange failed.

    ``route_id``, ``exchange_id`` and ``endpoint`` are filled in by the engine where the error
    passes a route boundary, so a component only needs to say what went wrong.
    """

    route_id: str | None = None
    exchange_id: str | None = None
    _endpoint: str | None = None

    def __init__(self, message: str, *, endpoint: str | None = None) -> None:
        super().__init__(message)
        if endpoint is not None:
            self.endpoint = endpoint

    @property
    def endpoint(self) -> str | None:
        """The endpoint involved; redacted whenever it is set, by eip or by anybody else."""
        return self._endpoint

    @endpoint.setter
    def endpoint(self, value: str | None) -> None:
        self._endpoint = None if value is None else redact_uri(value)

    def __str__(self) -> str:
        text = super().__str__()
        context = []
        if self.route_id:
            context.append(f"route={self.route_id}")
        if self.exchange_id:
            context.append(f"exchange={self.exchange_id}")
        if self.endpoint:
            context.append(f"endpoint={self.endpoint}")
        return f"{text} [{' '.join(context)}]" if context else text


class DataFormatError(ExchangeError):
    """Marshalling or unmarshalling a body failed."""


class UnmarshalError(DataFormatError):
    """Input could not be read in ``format``; ``location`` says where (path, line, row)."""

    def __init__(self, format: str, reason: str, *, location: str | None = None) -> None:
        self.format = format
        self.reason = reason
        self.location = location
        where = f"{location}: " if location else ""
        super().__init__(f"invalid {format} input: {where}{reason}")


class MarshalError(DataFormatError):
    """A body could not be written in ``format``."""

    def __init__(self, format: str, reason: str) -> None:
        self.format = format
        self.reason = reason
        super().__init__(f"cannot marshal to {format}: {reason}")


class MappingError(ExchangeError):
    """The field mapper met an unknown source field or a value it cannot convert."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class NoConsumerError(ExchangeError):
    """A ``direct:`` (or similar) send found no route consuming from that endpoint."""


class ExchangeTimeoutError(ExchangeError):
    """A request-reply or a bounded wait ran out of time."""


class EndpointError(ExchangeError):
    """A transport failed; the third-party cause is chained as ``__cause__``."""


class HttpOperationFailed(EndpointError):
    """An HTTP call answered with a failure status (>= 400 unless the endpoint says otherwise).

    ``status_code``, ``url`` (credentials redacted), ``method``, ``body`` (the first
    :data:`EXCERPT` characters of the response) and ``headers`` (the response headers) say what
    came back, so error handlers can choose (``on_exception(HttpOperationFailed)``) and dead
    letters carry it.
    """

    EXCERPT = 1000

    def __init__(
        self,
        method: str,
        url: str,
        status_code: int,
        body: bytes,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.method = method
        self.url = redact_uri(url)
        self.status_code = status_code
        self.body = body[: self.EXCERPT].decode("utf-8", "replace")
        self.headers = headers or {}
        excerpt = f": {self.body}" if self.body else ""
        super().__init__(f"HTTP {status_code} from {method} {self.url}{excerpt}", endpoint=self.url)


class SoapFault(EndpointError):
    """A SOAP Fault, in both directions.

    From the ``soap:`` producer: what the service answered. ``code`` is the fault code in
    Clark notation with its namespace resolved (``{http://schemas.xmlsoap.org/soap/envelope/}
    Client``; zeep leaves the prefix unresolved), ``kind`` says ``client`` or ``server``,
    ``subcodes`` are SOAP 1.2's, ``fault`` names the WSDL fault whose element the detail holds
    (``CustomerFault``) and ``detail`` is that detail as plain data (or the raw element's text
    when the WSDL declares none).

    In a route served by a ``soap:`` consumer: raise it to answer a fault, e.g.
    ``SoapFault("customer is locked", kind="client", fault="CustomerFault",
    detail={"code": "LOCKED", "message": "..."})``; the detail is written as the WSDL's fault
    element. Any other failure answers a Server/Receiver fault that says nothing of internals.
    """

    def __init__(
        self,
        reason: str,
        *,
        kind: str = "server",
        code: str | None = None,
        subcodes: tuple[str, ...] = (),
        fault: str | None = None,
        detail: object = None,
        http_status: int | None = None,
        endpoint: str | None = None,
    ) -> None:
        if kind not in ("client", "server"):
            raise ValueError(f"SoapFault kind must be 'client' or 'server', got {kind!r}")
        self.reason = reason
        self.kind = kind
        self.code = code
        self.subcodes = tuple(subcodes)
        self.fault = fault
        self.detail = detail
        self.http_status = http_status
        label = fault or (code.rpartition("}")[2] if code else kind.capitalize())
        super().__init__(f"SOAP fault {label}: {reason}", endpoint=endpoint)


class NoMessageIdError(ExchangeError):
    """The message id expression gave no id (None or empty)."""


class InvalidCorrelationKeyError(ExchangeError):
    """The correlation expression gave no key (None or empty)."""


class ClosedCorrelationKeyError(ExchangeError):
    """An exchange arrived for a group that was completed and closed."""


class ResolveEndpointError(ExchangeError):
    """A recipient list named something that is not a valid endpoint."""


class ThrottledError(ExchangeError):
    """The throttler rejected an exchange: its limit was reached (``reject=True``)."""


class CircuitOpenError(ExchangeError):
    """The circuit breaker is open (or its half-open probes are taken) and has no fallback."""


class OutcomeUnknownError(EndpointError):
    """A send whose outcome is unknown, or that could not be tried for reasons that are not
    the message's: the connection or channel died before the broker confirmed it, the
    confirm did not come within ``confirm_timeout``, or the broker blocked publishing for
    longer than ``publish_timeout``.

    It is not a failure of the message, so the dead letter channel never takes it: redelivery
    policies still retry it, and a RabbitMQ consumer then puts its source message back on its
    queue (bounded by the poison limit) instead of rejecting it.
    """


class PageFetchError(EndpointError):
    """``poll_pages`` could not fetch or read page ``page`` (1-based) at ``url`` (credentials
    redacted) after ``attempts`` tries; ``status`` is the last HTTP status (None when no answer
    came). The cause is chained. The run fails and its watermark stays where it was."""

    def __init__(
        self, page: int, url: str, reason: str, *, attempts: int = 1, status: int | None = None
    ) -> None:
        self.page = page
        self.url = redact_uri(url)
        self.attempts = attempts
        self.status = status
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        super().__init__(f"page {page} ({self.url}) failed{tries}: {reason}", endpoint=self.url)


class PartFailedError(ExchangeError):
    """A split part, or an output of a multicast or recipient list, failed (Camel's "processing
    failed for number 1"): the error says which, and the failure itself is ``__cause__``.

    ``eip`` is ``split``, ``multicast`` or ``recipient_list``; ``index`` the part's or output's
    0-based index (as ``eip.split.index``); ``branch`` the output's endpoint or steps (None for a
    split part); ``where`` all of that in words (``multicast output index 1 (mock:b)``).
    ``original`` is the innermost failure when parts nest (a split inside a multicast output):
    ``on_exception`` clauses, redelivery rules and the failure headers go by its type.
    """

    def __init__(
        self, eip: str, index: int, cause: BaseException, *, branch: str | None = None
    ) -> None:
        self.eip = eip
        self.index = index
        self.branch = None if branch is None else redact_uri(branch)
        self.where = PartFailedError.describe(eip, index, self.branch)
        # The cause's own text, without the context an ExchangeError adds (this error has it).
        text = Exception.__str__(cause) if isinstance(cause, ExchangeError) else str(cause)
        super().__init__(
            f"{self.where} failed: {type(cause).__name__}: {text}", endpoint=self.branch
        )
        self.__cause__ = cause

    @staticmethod
    def describe(eip: str, index: int, branch: str | None = None) -> str:
        """The part in words: ``split part index 2``, ``multicast output index 1 (mock:b)``."""
        noun = {"split": "part", "recipient_list": "recipient"}.get(eip, "output")
        where = f"{eip} {noun} index {index}"
        return f"{where} ({redact_uri(branch)})" if branch else where

    @property
    def original(self) -> BaseException:
        """The failure inside the innermost part (not itself a PartFailedError)."""
        return PartFailedError.unwrap(self)

    @staticmethod
    def unwrap(error: BaseException) -> BaseException:
        """``error``, or the original failure when it is a PartFailedError (for code that
        decides by the failure's type: an HTTP or SOAP consumer choosing its answer)."""
        seen = 0
        while isinstance(error, PartFailedError) and error.__cause__ is not None and seen < 32:
            error = error.__cause__
            seen += 1
        return error
