from eip.dsl.model import endpoint_text
from eip.errors import ExchangeError, redact_uri


def test_passwords_and_secret_options_are_redacted() -> None:
    assert (
        redact_uri("amqp://guest:guest@localhost:5672/vh") == "amqp://guest:***@localhost:5672/vh"
    )
    assert (
        redact_uri("http://erp/api?api_key=abc&page=2&token=t0k")
        == "http://erp/api?api_key=***&page=2&token=***"
    )
    assert (
        endpoint_text("https://u:pw@erp.local/x?password=p")
        == "https://u:***@erp.local/x?password=***"
    )


def test_exchange_error_carries_redacted_endpoint() -> None:
    error = ExchangeError("boom", endpoint="http://u:secret@h/x")
    error.route_id = "r"
    assert str(error) == "boom [route=r endpoint=http://u:***@h/x]"
