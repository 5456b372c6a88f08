"""Names of the headers and properties eip itself sets. Prefixed ``eip.`` so they never clash
with a user's own, and so transports can choose not to forward them."""

from __future__ import annotations

__all__ = [
    "AGGREGATED_COMPLETED_BY",
    "AGGREGATED_ID",
    "AGGREGATED_KEY",
    "AGGREGATED_REDELIVERED",
    "AGGREGATED_REDELIVERY_COUNT",
    "AGGREGATED_SIZE",
    "CRON_FIRE",
    "CRON_PREVIOUS_TIME",
    "CRON_SCHEDULED_TIME",
    "DUPLICATE",
    "EXCEPTION_MESSAGE",
    "EXCEPTION_PROPERTY",
    "EXCEPTION_TYPE",
    "FAILURE_ENDPOINT",
    "FAILURE_ROUTE",
    "FILE_MODIFIED",
    "FILE_NAME",
    "FILE_PATH",
    "FILE_SIZE",
    "HTTP_CLAIMS",
    "HTTP_METHOD",
    "HTTP_PATH",
    "HTTP_PRINCIPAL",
    "HTTP_QUERY",
    "HTTP_REQUEST_METHOD",
    "HTTP_REQUEST_PATH",
    "HTTP_REQUEST_QUERY",
    "HTTP_REQUEST_URL",
    "HTTP_RESPONSE_HEADERS",
    "HTTP_RESPONSE_STATUS",
    "HTTP_STATUS",
    "MESSAGE_ID",
    "REDELIVERED",
    "REDELIVERY_COUNT",
    "SOAP_ACTION",
    "SOAP_HEADERS",
    "SOAP_OPERATION",
    "SOAP_REQUEST_HEADERS",
    "SOAP_REQUEST_OPERATION",
    "SOAP_VERSION",
    "SPLIT_COMPLETE",
    "SPLIT_INDEX",
    "SPLIT_SIZE",
    "TIMER_COUNTER",
    "TIMER_FIRED_TIME",
    "TIMER_NAME",
]

EXCEPTION_TYPE = "eip.exception.type"
EXCEPTION_MESSAGE = "eip.exception.message"
EXCEPTION_PROPERTY = "eip.exception"
FAILURE_ENDPOINT = "eip.failure.endpoint"
FAILURE_ROUTE = "eip.failure.route"
REDELIVERED = "eip.redelivered"
REDELIVERY_COUNT = "eip.redelivery.count"

TIMER_NAME = "eip.timer.name"
TIMER_COUNTER = "eip.timer.counter"
TIMER_FIRED_TIME = "eip.timer.fired_time"
#: cron: why it runs: "schedule" (on time), "misfire" (late, once, for times missed while no
#: instance was up), "recovery" (again, for a run whose instance died) or "manual" (trigger)
CRON_FIRE = "eip.cron.fire"
#: cron: the fire time the run stands for (epoch seconds; absent for a manual run)
CRON_SCHEDULED_TIME = "eip.cron.scheduled_time"
#: cron: the fire time of the run before (epoch seconds, or None): a run covers
#: (previous, scheduled]
CRON_PREVIOUS_TIME = "eip.cron.previous_time"

FILE_NAME = "eip.file.name"
FILE_PATH = "eip.file.path"
FILE_SIZE = "eip.file.size"
FILE_MODIFIED = "eip.file.modified"

#: A stable id of the message, set by transports that have one (AMQP message_id, file name);
#: the aggregator uses it by default to recognise a redelivered input.
MESSAGE_ID = "eip.message.id"

# Exchange properties set on split parts.
SPLIT_INDEX = "eip.split.index"
SPLIT_SIZE = "eip.split.size"
SPLIT_COMPLETE = "eip.split.complete"

# Exchange properties set on completed aggregation groups.
AGGREGATED_KEY = "eip.aggregated.key"
AGGREGATED_SIZE = "eip.aggregated.size"
AGGREGATED_COMPLETED_BY = "eip.aggregated.completed_by"
AGGREGATED_ID = "eip.aggregated.id"
AGGREGATED_REDELIVERED = "eip.aggregated.redelivered"
AGGREGATED_REDELIVERY_COUNT = "eip.aggregated.redelivery_count"

#: Exchange property set to True by the idempotent consumer on a duplicate it lets through.
DUPLICATE = "eip.duplicate"

# HTTP consumer (server side): what came in, and the status to answer with.
HTTP_METHOD = "eip.http.method"
HTTP_PATH = "eip.http.path"
HTTP_QUERY = "eip.http.query"
#: Set by a route to choose the reply's status (default 200, or 202 for in-only routes).
HTTP_STATUS = "eip.http.status"
#: The authenticated user (basic: the user name, JWT: ``sub``); never the credential itself.
HTTP_PRINCIPAL = "eip.http.principal"
#: Exchange property: the verified JWT claims.
HTTP_CLAIMS = "eip.http.claims"

# HTTP producer (client side): what to send, and what came back. Separate names from the
# consumer's, so a request that came in by HTTP is never re-sent with its method and path.
HTTP_REQUEST_METHOD = "eip.http.request.method"
#: Appended to the endpoint's URL path (``/1001``).
HTTP_REQUEST_PATH = "eip.http.request.path"
#: Query parameters: a ``str`` (``a=1&b=2``) or a dict.
HTTP_REQUEST_QUERY = "eip.http.request.query"
#: A whole URL replacing the endpoint's (same host rules: one pool per endpoint).
HTTP_REQUEST_URL = "eip.http.request.url"
HTTP_RESPONSE_STATUS = "eip.http.response.status"
#: Exchange property: the response's headers (a case-insensitive mapping).
HTTP_RESPONSE_HEADERS = "eip.http.response.headers"

# SOAP consumer: the operation called, the request's SOAP version ("1.1"/"1.2") and its
# SOAPAction.
SOAP_OPERATION = "eip.soap.operation"
SOAP_VERSION = "eip.soap.version"
SOAP_ACTION = "eip.soap.action"
#: Exchange property: the request's SOAP header blocks (lxml elements).
SOAP_HEADERS = "eip.soap.headers"
#: SOAP producer: the operation to call (wins over the endpoint's ``operation``). A separate
#: name from the consumer's, so a route from one SOAP service to another never calls the
#: incoming operation's name by accident.
SOAP_REQUEST_OPERATION = "eip.soap.request.operation"
#: Exchange property: SOAP header blocks (an lxml element or a list of them) the producer
#: puts into the request's Header; the reply's header blocks come back in ``SOAP_HEADERS``.
SOAP_REQUEST_HEADERS = "eip.soap.request.headers"
