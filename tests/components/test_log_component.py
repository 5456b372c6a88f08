"""``log:`` endpoints (eip/components/log.py) and the ``.log(...)`` DSL step
(eip/processors/log.py)."""

from __future__ import annotations

import logging

import pytest

from eip import Exchange, RouteBuilder, RouteDefinitionError, log_endpoint


def routes(configure):
    class Routes(RouteBuilder):
        def configure(self) -> None:
            configure(self)

    return Routes()


def records(caplog, logger: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == logger]


class CountingRepr:
    """A body that counts how often it is rendered."""

    def __init__(self) -> None:
        self.renders = 0

    def __repr__(self) -> str:
        self.renders += 1
        return "CountingRepr()"

    def __format__(self, spec: str) -> str:
        self.renders += 1
        return "CountingRepr()"


# -- log: endpoint ------------------------------------------------------------------------------


async def test_log_endpoint_logs_body_at_info_by_default(eip_context, caplog):
    await eip_context.start()
    with caplog.at_level(logging.DEBUG, logger="eip.log.orders"):
        exchange = await eip_context.template().send("log:orders", {"a": 1}, {"secret": "x"})
    assert exchange.exception is None
    [record] = records(caplog, "eip.log.orders")
    assert record.levelno == logging.INFO
    message = record.getMessage()
    assert message.startswith(f"Exchange[id={exchange.id}")
    assert "body={'a': 1}" in message
    assert message.endswith("]")
    assert "headers" not in message  # headers only on request
    assert "secret" not in message


async def test_log_endpoint_passes_the_exchange_on(eip_context, caplog):
    eip_context.add_routes(
        routes(lambda b: b.from_("direct:in").route_id("r").to("log:mid").to("mock:out"))
    )
    await eip_context.start()
    with caplog.at_level(logging.INFO, logger="eip.log.mid"):
        await eip_context.template().send("direct:in", "payload", {"k": "v"})
    assert eip_context.mock("out").received_bodies == ["payload"]
    assert eip_context.mock("out").received_headers == [{"k": "v"}]
    assert len(records(caplog, "eip.log.mid")) == 1


@pytest.mark.parametrize(
    ("level", "levelno"),
    [
        ("DEBUG", logging.DEBUG),
        ("INFO", logging.INFO),
        ("WARNING", logging.WARNING),
        ("WARN", logging.WARNING),
        ("ERROR", logging.ERROR),
        ("warn", logging.WARNING),  # case-insensitive
        ("TRACE", 5),
    ],
)
async def test_log_endpoint_level(eip_context, caplog, level, levelno):
    await eip_context.start()
    with caplog.at_level(1, logger="eip.log.lvl"):
        await eip_context.template().send(f"log:lvl?level={level}", "x")
    [record] = records(caplog, "eip.log.lvl")
    assert record.levelno == levelno


async def test_log_endpoint_shows_headers_when_asked(eip_context, caplog):
    await eip_context.start()
    with caplog.at_level(logging.INFO, logger="eip.log.h"):
        await eip_context.template().send("log:h?show_headers=true", "b", {"k": "v", "n": 1})
    [record] = records(caplog, "eip.log.h")
    message = record.getMessage()
    assert "headers={'k': 'v', 'n': 1}" in message
    assert "body='b'" in message


async def test_log_endpoint_can_hide_the_body(eip_context, caplog):
    await eip_context.start()
    with caplog.at_level(logging.INFO, logger="eip.log.nobody"):
        await eip_context.template().send("log:nobody?show_body=false", "hidden-body")
    [record] = records(caplog, "eip.log.nobody")
    assert "hidden-body" not in record.getMessage()
    assert "body=" not in record.getMessage()


async def test_log_endpoint_decodes_bytes(eip_context, caplog):
    await eip_context.start()
    with caplog.at_level(logging.INFO, logger="eip.log.bytes"):
        await eip_context.template().send("log:bytes", "grüße".encode() + b"\xff")
    [record] = records(caplog, "eip.log.bytes")
    assert "body=grüße\ufffd" in record.getMessage()


async def test_log_endpoint_truncates_at_max_chars(eip_context, caplog):
    await eip_context.start()
    long_body = "x" * 50
    text = repr(long_body)  # what the endpoint renders: 52 chars with quotes
    with caplog.at_level(logging.INFO, logger="eip.log.cut"):
        await eip_context.template().send("log:cut?max_chars=10", long_body)
        await eip_context.template().send("log:cut?max_chars=10", "short")
    first, second = records(caplog, "eip.log.cut")
    assert f"body={text[:10]}... [{len(text)} chars]" in first.getMessage()
    assert long_body not in first.getMessage()
    assert "body='short'" in second.getMessage()


async def test_log_endpoint_does_not_cut_at_exactly_max_chars(eip_context, caplog):
    await eip_context.start()
    body = "y" * 8  # repr is 10 chars
    with caplog.at_level(logging.INFO, logger="eip.log.edge"):
        await eip_context.template().send("log:edge?max_chars=10", body)
    [record] = records(caplog, "eip.log.edge")
    assert f"body={body!r}]" in record.getMessage()
    assert "chars]" not in record.getMessage()


async def test_log_endpoint_below_the_logger_level_renders_nothing(eip_context, caplog):
    await eip_context.start()
    body = CountingRepr()
    with caplog.at_level(logging.INFO, logger="eip.log.quiet"):
        exchange = await eip_context.template().send("log:quiet?level=DEBUG", body)
    assert exchange.exception is None
    assert records(caplog, "eip.log.quiet") == []
    assert body.renders == 0


async def test_log_endpoint_typed_spec(eip_context, caplog):
    await eip_context.start()
    with caplog.at_level(logging.INFO, logger="eip.log.typed"):
        await eip_context.template().send(
            log_endpoint("typed", level="ERROR", show_headers=True), 1, {"h": 2}
        )
    [record] = records(caplog, "eip.log.typed")
    assert record.levelno == logging.ERROR
    assert "headers={'h': 2}" in record.getMessage()


async def test_unknown_level_fails_at_start(eip_context):
    eip_context.add_routes(
        routes(lambda b: b.from_("direct:in").route_id("r").to("log:x?level=LOUD"))
    )
    with pytest.raises(RouteDefinitionError, match="level") as info:
        await eip_context.start()
    text = str(info.value)
    assert "LOUD" in text
    assert "INFO" in text  # lists the valid levels
    assert info.value.route_id == "r"


async def test_unknown_log_option_fails_at_start(eip_context):
    eip_context.add_routes(
        routes(lambda b: b.from_("direct:in").route_id("r").to("log:x?show_header=true"))
    )
    with pytest.raises(RouteDefinitionError, match="show_header") as info:
        await eip_context.start()
    assert "show_headers" in (info.value.valid or [])


async def test_log_cannot_be_consumed_from(eip_context):
    eip_context.add_routes(routes(lambda b: b.from_("log:x").route_id("r").to("mock:out")))
    with pytest.raises(RouteDefinitionError, match="log"):
        await eip_context.start()


# -- .log(...) DSL step ---------------------------------------------------------------------------


async def test_log_step_formats_placeholders(eip_context, caplog):
    eip_context.add_routes(
        routes(
            lambda b: (
                b.from_("direct:in")
                .route_id("orders")
                .log("got {body} with {headers} on {route_id} as {exchange_id}")
                .to("mock:out")
            )
        )
    )
    await eip_context.start()
    with caplog.at_level(logging.INFO, logger="eip.route.orders"):
        exchange = await eip_context.template().send("direct:in", {"n": 1}, {"k": "v"})
    [record] = records(caplog, "eip.route.orders")
    assert record.levelno == logging.INFO
    assert record.getMessage() == (f"got {{'n': 1}} with {{'k': 'v'}} on orders as {exchange.id}")
    assert eip_context.mock("out").count == 1


async def test_log_step_supports_format_field_access(eip_context, caplog):
    eip_context.add_routes(
        routes(
            lambda b: b.from_("direct:in").route_id("r").log("order {body[id]} from {headers[src]}")
        )
    )
    await eip_context.start()
    with caplog.at_level(logging.INFO, logger="eip.route.r"):
        await eip_context.template().send("direct:in", {"id": 42}, {"src": "web"})
    [record] = records(caplog, "eip.route.r")
    assert record.getMessage() == "order 42 from web"


async def test_log_step_level_and_logger(eip_context, caplog):
    eip_context.add_routes(
        routes(
            lambda b: (
                b.from_("direct:in")
                .route_id("r")
                .log("warned {body}", level=logging.WARNING, logger="my.audit")
            )
        )
    )
    await eip_context.start()
    with caplog.at_level(logging.INFO, logger="my.audit"):
        await eip_context.template().send("direct:in", "x")
    [record] = records(caplog, "my.audit")
    assert record.levelno == logging.WARNING
    assert record.getMessage() == "warned x"
    assert records(caplog, "eip.route.r") == []


async def test_log_step_with_a_callable(eip_context, caplog):
    eip_context.add_routes(
        routes(
            lambda b: b.from_("direct:in").route_id("r").log(lambda ex: f"computed {ex.body * 2}")
        )
    )
    await eip_context.start()
    with caplog.at_level(logging.INFO, logger="eip.route.r"):
        await eip_context.template().send("direct:in", 21)
    [record] = records(caplog, "eip.route.r")
    assert record.getMessage() == "computed 42"


async def test_log_step_formats_lazily(eip_context, caplog):
    calls: list[Exchange] = []

    def render(ex: Exchange) -> str:
        calls.append(ex)
        return "rendered"

    def configure(b: RouteBuilder) -> None:
        b.from_("direct:tmpl").route_id("tmpl").log("body {body}", level=logging.DEBUG)
        b.from_("direct:fn").route_id("fn").log(render, level=logging.DEBUG)

    eip_context.add_routes(routes(configure))
    await eip_context.start()
    body = CountingRepr()
    with caplog.at_level(logging.INFO):  # DEBUG is off
        await eip_context.template().send("direct:tmpl", body)
        await eip_context.template().send("direct:fn", "x")
    assert body.renders == 0  # the template was never formatted
    assert calls == []  # the callable was never called
    assert records(caplog, "eip.route.tmpl") == []

    with caplog.at_level(logging.DEBUG):  # now it is on
        await eip_context.template().send("direct:tmpl", body)
        await eip_context.template().send("direct:fn", "x")
    assert body.renders == 1
    assert len(calls) == 1
    assert [r.getMessage() for r in records(caplog, "eip.route.tmpl")] == ["body CountingRepr()"]


async def test_log_step_does_not_change_the_exchange(eip_context, caplog):
    eip_context.add_routes(
        routes(lambda b: b.from_("direct:in").route_id("r").log("{body}").to("mock:out"))
    )
    await eip_context.start()
    with caplog.at_level(logging.INFO, logger="eip.route.r"):
        reply = await eip_context.template().request("direct:in", "same", {"h": 1})
    assert reply == "same"
    assert eip_context.mock("out").received_headers == [{"h": 1}]


async def test_log_step_with_invalid_level_fails_at_start(eip_context):
    eip_context.add_routes(
        routes(lambda b: b.from_("direct:in").route_id("r").log("x", level=12345))
    )
    with pytest.raises(RouteDefinitionError, match="level") as info:
        await eip_context.start()
    assert info.value.route_id == "r"
