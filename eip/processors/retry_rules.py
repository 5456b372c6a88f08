"""Which failures a redelivery can cure: the default rule of :class:`RedeliveryPolicy`.

Camel redelivers every failure unless told otherwise. Many failures are *deterministic*: the
same message through the same step fails the same way, so redelivering only delays the dead
letter (and keeps a consumer's slot busy in backoff). The default rule leaves those out:

======================================================  =========  ==============================
failure                                                 retried?   why
======================================================  =========  ==============================
``OutcomeUnknownError`` (a send with no confirm)        yes        the send may not have happened
``HttpOperationFailed`` 408, 429, 5xx                   yes        the server may answer later
``HttpOperationFailed`` other 4xx (400, 401, 404, 409)  no         the server refused the request
``SoapFault`` of kind ``server`` (Server/Receiver)      yes        the service failed, may recover
``SoapFault`` of kind ``client`` (Client/Sender,        no         the service refused the request
VersionMismatch, MustUnderstand; typed WSDL faults
answered as Client)
``DataFormatError``: ``UnmarshalError`` (incl. the      no         the same bytes fail again
SOAP schema's ``SchemaValidationError`` and typed
HTTP bodies), ``MarshalError``
``MappingError``                                        no         the same record fails again
``msgspec.DecodeError`` / ``ValidationError``,          no         raised by route code decoding
``UnicodeError``                                                   or converting the same data
``NoMessageIdError``, ``InvalidCorrelationKeyError``,   no         an expression over the same
``ClosedCorrelationKeyError``, ``ResolveEndpointError``,           message gives the same answer
``RouteDefinitionError``
anything else (time-outs, connection errors, your own   yes        it may be transient
exceptions)
======================================================  =========  ==============================

A policy's ``retry_on`` replaces this rule and ``no_retry_on`` narrows it (see
:class:`~eip.processors.error_handler.RedeliveryPolicy`). The error's own type is classified,
not its ``__cause__``: components map third-party faults to the tree at their boundary.
"""

from __future__ import annotations

import msgspec

from eip.errors import (
    ClosedCorrelationKeyError,
    DataFormatError,
    HttpOperationFailed,
    InvalidCorrelationKeyError,
    MappingError,
    NoMessageIdError,
    OutcomeUnknownError,
    ResolveEndpointError,
    RouteDefinitionError,
    SoapFault,
)

__all__ = ["RETRYABLE_HTTP_4XX", "deterministic_reason", "is_retryable"]

#: The 4xx answers that say "try again later" rather than "this request is wrong".
RETRYABLE_HTTP_4XX = frozenset({408, 429})

_DETERMINISTIC: tuple[tuple[type[BaseException], str], ...] = (
    (DataFormatError, "a data format error: the same input fails the same way"),
    (MappingError, "a mapping error: the same record fails the same way"),
    (msgspec.DecodeError, "a decoding or validation error: the same data fails the same way"),
    (UnicodeError, "a text encoding error: the same data fails the same way"),
    (NoMessageIdError, "the message id expression gives no id for this message"),
    (InvalidCorrelationKeyError, "the correlation expression gives no key for this message"),
    (ClosedCorrelationKeyError, "its aggregation group is closed"),
    (ResolveEndpointError, "the endpoint it names is invalid"),
    (RouteDefinitionError, "the route definition is invalid"),
)


def deterministic_reason(error: BaseException) -> str | None:
    """Why a redelivery of ``error`` cannot succeed, or None when it might (see the table)."""
    if isinstance(error, OutcomeUnknownError):
        return None
    if isinstance(error, HttpOperationFailed):
        status = error.status_code
        if 400 <= status < 500 and status not in RETRYABLE_HTTP_4XX:
            return f"HTTP {status} is a client error: the server refused the request"
        return None
    if isinstance(error, SoapFault):
        if error.kind == "client":
            return "a SOAP Client/Sender fault: the service refused the request"
        return None
    for kind, reason in _DETERMINISTIC:
        if isinstance(error, kind):
            return reason
    return None


def is_retryable(error: BaseException) -> bool:
    """True when the default rule redelivers ``error`` (see the module's table)."""
    return deterministic_reason(error) is None
