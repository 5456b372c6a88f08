"""Bad routes fail at start with a RouteDefinitionError naming route, step and option."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from eip import (
    Context,
    RouteBuilder,
    RouteDefinitionError,
    direct,
    file,
    http_server,
    seda,
    timer,
    when,
)
from eip.components.rabbitmq import rabbitmq
from eip.dataformats import json


def build(configure: Any) -> RouteBuilder:
    class R(RouteBuilder):
        def configure(self) -> None:
            configure(self)

    return R()


async def start_fails(configure: Any) -> RouteDefinitionError:
    context = Context()
    context.add_routes(build(configure))
    with pytest.raises(RouteDefinitionError) as info:
        await context.start()
    assert not context.started
    return info.value


async def test_unknown_scheme() -> None:
    error = await start_fails(lambda b: b.from_("direct:in").route_id("r").to("kafak:orders"))
    text = str(error)
    assert "unknown endpoint scheme 'kafak:'" in text
    assert "route 'r'" in text
    assert "step 1" in text
    assert error.valid is not None
    assert "seda" in error.valid


async def test_unknown_option_lists_valid_ones() -> None:
    error = await start_fails(lambda b: b.from_("direct:in").route_id("r").to("seda:q?sise=10"))
    assert error.option == "sise"
    assert error.route_id == "r"
    text = str(error)
    assert "unknown option 'sise'" in text
    assert (
        "valid options: block_when_full, concurrent_consumers, durable, offer_timeout, path, "
        "size, synchronous, wait_for_completion" in text
    )


async def test_mistyped_option_names_option_and_value() -> None:
    error = await start_fails(lambda b: b.from_("seda:q?size=lots").route_id("r").to("mock:x"))
    text = str(error)
    assert error.option == "size"
    assert "expected int" in text
    assert "'lots'" in text
    assert "step from" in text


async def test_semantic_option_check() -> None:
    error = await start_fails(lambda b: b.from_("direct:in").route_id("r").to("seda:q?size=0"))
    assert "size must be >= 1" in str(error)


async def test_typed_spec_with_bad_value_fails_at_start() -> None:
    error = await start_fails(
        lambda b: b.from_("direct:in").route_id("r").to(seda("q", concurrent_consumers=0))
    )
    assert "concurrent_consumers must be >= 1" in str(error)


async def test_when_without_predicate() -> None:
    error = await start_fails(
        lambda b: b.from_("direct:in").route_id("r").to("mock:a").choice(when().to("mock:x"))
    )
    assert "when() has no predicate" in str(error)
    assert "step 2 > when 1" in str(error)


async def test_nested_step_path_in_error() -> None:
    error = await start_fails(
        lambda b: (
            b.from_("direct:in")
            .route_id("r")
            .choice(when(lambda ex: True).to("mock:ok"), when(lambda ex: False).to("nope:x"))
        )
    )
    assert "step 1 > when 2 > 1" in str(error)


async def test_non_callable_filter() -> None:
    error = await start_fails(lambda b: b.from_("direct:in").route_id("r").filter("yes"))
    assert "filter predicate must be callable" in str(error)


async def test_endpoint_without_scheme() -> None:
    error = await start_fails(lambda b: b.from_("direct:in").route_id("r").to("orders"))
    assert "has no scheme" in str(error)


async def test_timer_cannot_be_a_producer() -> None:
    error = await start_fails(lambda b: b.from_("direct:in").route_id("r").to("timer:t"))
    assert "can only be consumed from" in str(error)


async def test_duplicate_route_ids() -> None:
    context = Context()

    def two(b: RouteBuilder) -> None:
        b.from_("direct:a").route_id("same").to("mock:x")
        b.from_("direct:b").route_id("same").to("mock:x")

    with pytest.raises(RouteDefinitionError, match="route id 'same' is used twice"):
        context.add_routes(build(two))


async def test_credentials_redacted_in_errors() -> None:
    error = await start_fails(
        lambda b: b.from_("direct:in").route_id("r").to("seda:q?password=hunter2&bogus=1")
    )
    assert "hunter2" not in str(error)


async def test_on_exception_needs_types() -> None:
    def configure(b: RouteBuilder) -> None:
        b.on_exception().handled()
        b.from_("direct:in").route_id("r").to("mock:x")

    error = await start_fails(configure)
    assert "at least one exception type" in str(error)


async def test_valid_routes_get_ids_and_validate() -> None:
    context = Context()
    context.add_routes(
        build(lambda b: b.from_("direct:in").unmarshal(json()).to("mock:x")),
        build(lambda b: b.from_("direct:other").to("mock:y")),
    )
    context.validate()
    assert [m.route_id for m in context.route_models] == ["route1", "route2"]


async def test_unknown_scheme_lists_valid_schemes() -> None:
    error = await start_fails(lambda b: b.from_("direct:in").route_id("r").to("kafak:orders"))
    assert "(valid schemes: cron, direct, file, http, https, log, mock, rabbitmq, " in str(error)
    assert "valid options" not in str(error)
    assert error.valid_label == "valid schemes"


async def test_compile_errors_name_the_file_the_route_was_declared_in() -> None:
    error = await start_fails(lambda b: b.from_("direct:in").route_id("r").to("seda:q?sise=1"))
    assert error.location is not None
    assert error.location.startswith("tests/test_route_definition.py:")
    assert str(error).startswith(f"{error.location}, route 'r', step 1: unknown option 'sise'")


# -- typed specs fail as URIs do -------------------------------------------------------------


def _typed_error(make: Callable[[], object]) -> RouteDefinitionError:
    with pytest.raises(RouteDefinitionError) as info:
        make()
    return info.value


@pytest.mark.parametrize(
    ("make", "uri", "option"),
    [
        (lambda: seda("orders", sise=5), "seda:orders?sise=5", "sise"),  # type: ignore[call-arg]
        (lambda: rabbitmq(queue="q", prefech=5), "rabbitmq:?queue=q&prefech=5", "prefech"),
        (lambda: http_server("/x", methds=["GET"]), "http:/x?methds=GET", "methds"),
        (lambda: file("inbox", movee=".x"), "file:inbox?movee=.x", "movee"),
        (lambda: direct("a", timeout_s=1), "direct:a?timeout_s=1", "timeout_s"),  # type: ignore[call-arg]
        (lambda: timer("t", perod=1), "timer:t?perod=1", "perod"),  # type: ignore[call-arg]
    ],
)
async def test_a_typed_spec_typo_is_the_uri_error(
    make: Callable[[], object], uri: str, option: str
) -> None:
    typed = _typed_error(make)
    with pytest.raises(RouteDefinitionError) as info:
        Context().resolve_endpoint(uri)
    parsed = info.value
    assert typed.option == parsed.option == option
    assert str(typed).startswith(f"unknown option '{option}' for endpoint ")
    # the same message, valid options included, but for the endpoint's text
    assert typed.valid
    assert re.sub(r"endpoint \S+", "", str(typed)) == re.sub(r"endpoint \S+", "", str(parsed))


def test_a_typed_spec_value_of_the_wrong_type_names_the_option() -> None:
    error = _typed_error(lambda: seda("orders", size="lots"))  # type: ignore[arg-type]
    assert error.option == "size"
    assert str(error).startswith("option 'size' of endpoint seda:orders: expected int")
    assert "'lots'" in str(error)
    error = _typed_error(lambda: rabbitmq(queue="q", prefetch="many"))
    assert str(error).startswith("option 'prefetch' of endpoint rabbitmq:?queue=q&prefetch=many")


def test_a_typed_spec_without_its_path_is_a_definition_error() -> None:
    error = _typed_error(lambda: seda())  # type: ignore[call-arg]
    assert "seda(): missing a required argument: 'name'" in str(error)


def test_typed_specs_convert_as_uris_do() -> None:
    assert seda("orders", size="5") == Context().resolve_endpoint("seda:orders?size=5")[1]  # type: ignore[arg-type]


# -- anything configure() raises is one RouteDefinitionError -----------------------------------


def _configure_fails(configure: Callable[[RouteBuilder], object]) -> RouteDefinitionError:
    with pytest.raises(RouteDefinitionError) as info:
        Context().add_routes(build(configure))
    return info.value


def test_a_typo_in_a_route_names_the_route_and_step() -> None:
    error = _configure_fails(
        lambda b: b.from_("direct:in").route_id("orders").to("log:x").to(seda("o", sise=5))  # type: ignore[call-arg]
    )
    assert error.route_id == "orders"
    assert error.step == "2"
    assert error.option == "sise"
    assert error.location is not None
    assert error.location.startswith("tests/test_route_definition.py:")
    assert error.location.endswith(", R")  # the builder class
    assert str(error).startswith(f"{error.location}, route 'orders', step 2: unknown option")


def test_a_route_without_an_id_yet_is_named_by_its_source() -> None:
    error = _configure_fails(lambda b: b.from_("direct:in").to(seda("o", sise=5)).route_id("x"))  # type: ignore[call-arg]
    assert error.route_id is None
    assert ", R, route from direct:in, step 1: unknown option 'sise'" in str(error)


def test_a_mistake_in_the_next_routes_source_is_not_blamed_on_the_last_route() -> None:
    def configure(b: RouteBuilder) -> None:
        b.from_("direct:a").route_id("a").to("log:x")
        b.from_(seda("b", sise=5)).route_id("b").to("log:x")  # type: ignore[call-arg]

    error = _configure_fails(configure)
    assert error.route_id is None
    assert error.step is None
    assert ", R (after route 'a'): unknown option 'sise'" in str(error)


def test_any_exception_in_configure_is_chained_under_one_error() -> None:
    def configure(b: RouteBuilder) -> None:
        settings: dict[str, str] = {}
        b.from_("direct:a").to(settings["EIP_NOT_SET"])

    error = _configure_fails(configure)
    assert isinstance(error.__cause__, KeyError)
    assert str(error).endswith(
        ", R, route from direct:a, step 1: configure() failed: KeyError: 'EIP_NOT_SET'"
    )
