"""eip: an async, Camel-class integration engine for Python.

Write routes of Enterprise Integration Patterns in a Python DSL, run them in a
:class:`Context`, test them with :mod:`eip.testing`. Data formats live in
:mod:`eip.dataformats`, the field mapper in :mod:`eip.mapping`, endpoint specs in
:mod:`eip.components`. This module is the curated public API (pinned by
``tests/test_public_api.py``).
"""

from eip.components.direct import direct
from eip.components.file import file
from eip.components.http import http_client, http_server
from eip.components.log import log_endpoint
from eip.components.mock import mock
from eip.components.seda import seda
from eip.components.soap import soap_client, soap_server
from eip.components.timer import cron, timer
from eip.dsl.builder import (
    RouteBuilder,
    dead_letter_channel,
    default_error_handler,
    otherwise,
    pipeline,
    when,
)
from eip.errors import (
    CircuitOpenError,
    ClosedCorrelationKeyError,
    DataFormatError,
    EipError,
    EndpointError,
    ExchangeError,
    ExchangeTimeoutError,
    HttpOperationFailed,
    InvalidCorrelationKeyError,
    LifecycleError,
    MappingError,
    MarshalError,
    NoConsumerError,
    NoMessageIdError,
    OutcomeUnknownError,
    PageFetchError,
    PartFailedError,
    ResolveEndpointError,
    RouteDefinitionError,
    SoapFault,
    ThrottledError,
    UnmarshalError,
)
from eip.expressions import Expression, body, constant, exchange_property, header
from eip.message import Exchange, ExchangePattern, Message
from eip.processors.error_handler import RedeliveryPolicy
from eip.processors.pagination import body_cursor, link_header, page_number, page_offset
from eip.processors.paging import PollReport
from eip.processors.strategies import collect_bodies, concat, merge_dicts, use_latest, use_original
from eip.processors.watermark import last_of, max_of, response_value, watermark
from eip.runtime.context import Context
from eip.runtime.template import ProducerTemplate

__version__ = "0.1.0"

__all__ = [
    "CircuitOpenError",
    "ClosedCorrelationKeyError",
    "Context",
    "DataFormatError",
    "EipError",
    "EndpointError",
    "Exchange",
    "ExchangeError",
    "ExchangePattern",
    "ExchangeTimeoutError",
    "Expression",
    "HttpOperationFailed",
    "InvalidCorrelationKeyError",
    "LifecycleError",
    "MappingError",
    "MarshalError",
    "Message",
    "NoConsumerError",
    "NoMessageIdError",
    "OutcomeUnknownError",
    "PageFetchError",
    "PartFailedError",
    "PollReport",
    "ProducerTemplate",
    "RedeliveryPolicy",
    "ResolveEndpointError",
    "RouteBuilder",
    "RouteDefinitionError",
    "SoapFault",
    "ThrottledError",
    "UnmarshalError",
    "body",
    "body_cursor",
    "collect_bodies",
    "concat",
    "constant",
    "cron",
    "dead_letter_channel",
    "default_error_handler",
    "direct",
    "exchange_property",
    "file",
    "header",
    "http_client",
    "http_server",
    "last_of",
    "link_header",
    "log_endpoint",
    "max_of",
    "merge_dicts",
    "mock",
    "otherwise",
    "page_number",
    "page_offset",
    "pipeline",
    "response_value",
    "seda",
    "soap_client",
    "soap_server",
    "timer",
    "use_latest",
    "use_original",
    "watermark",
    "when",
]
