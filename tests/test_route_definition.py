"""Bad routes fail at start with a RouteDefinitionError naming route, step and option."""

from __future__ import annotations

from typing import Any

import pytest

from eip import Context, RouteBuilder, RouteDefinitionError, seda, when
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
    assert "valid options: block_when_full, concurrent_consumers, offer_timeout, size" in text


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
