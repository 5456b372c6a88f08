"""Names of the headers and properties eip itself sets. Prefixed ``eip.`` so they never clash
with a user's own, and so transports can choose not to forward them."""

from __future__ import annotations

__all__ = [
    "EXCEPTION_MESSAGE",
    "EXCEPTION_PROPERTY",
    "EXCEPTION_TYPE",
    "FAILURE_ENDPOINT",
    "FAILURE_ROUTE",
    "FILE_MODIFIED",
    "FILE_NAME",
    "FILE_PATH",
    "FILE_SIZE",
    "REDELIVERED",
    "REDELIVERY_COUNT",
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

FILE_NAME = "eip.file.name"
FILE_PATH = "eip.file.path"
FILE_SIZE = "eip.file.size"
FILE_MODIFIED = "eip.file.modified"
