"""Pins the curated public API: a change here is a deliberate API change."""

import eip
import eip.testing

EXPECTED = [
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


def test_public_api_is_pinned() -> None:
    assert eip.__all__ == EXPECTED
    assert sorted(eip.__all__) == eip.__all__
    for name in eip.__all__:
        assert getattr(eip, name) is not None


def test_testing_api_is_pinned() -> None:
    assert eip.testing.__all__ == [
        "Advice",
        "ManualClock",
        "MockEndpoint",
        "ProducerTemplate",
        "advice",
    ]


def test_error_tree() -> None:
    for name in ["RouteDefinitionError", "LifecycleError", "ExchangeError"]:
        assert issubclass(getattr(eip, name), eip.EipError)
    for name in ["DataFormatError", "MappingError", "NoConsumerError", "EndpointError"]:
        assert issubclass(getattr(eip, name), eip.ExchangeError)
    assert issubclass(eip.UnmarshalError, eip.DataFormatError)


def test_reconcile_api_is_pinned() -> None:
    import eip.reconcile

    assert eip.reconcile.__all__ == [
        "DIFFERS",
        "DUPLICATE",
        "ONLY_LEFT",
        "ONLY_RIGHT",
        "RECONCILE_FIELDS",
        "RECONCILE_KEY",
        "RECONCILE_NAME",
        "RECONCILE_VERDICT",
        "SAME",
        "VERDICTS",
        "FieldValues",
        "KeySpec",
        "Normaliser",
        "ReconcileError",
        "ReconcileMetrics",
        "ReconcileReport",
        "Reconciler",
        "Repair",
        "RepairSink",
        "RepairSummary",
        "Sample",
        "SideSummary",
        "Source",
        "Verdict",
        "callable_source",
        "casefold",
        "collapse_spaces",
        "compose",
        "date",
        "empty_as_none",
        "file_source",
        "http_source",
        "number",
        "reconcile",
        "reconcile_metrics",
        "report_json",
        "trim",
        "write_report",
    ]
    assert issubclass(eip.reconcile.ReconcileError, eip.ExchangeError)
    for name in eip.reconcile.__all__:
        assert getattr(eip.reconcile, name) is not None


def test_mapping_code_lists_are_public() -> None:
    import eip.mapping

    assert {"CsvTable", "lookup"} <= set(eip.mapping.__all__)
    assert eip.mapping.lookup is not None
