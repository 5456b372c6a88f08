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
    "MESSAGE_ID",
    "REDELIVERED",
    "REDELIVERY_COUNT",
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
