"""The aggregator's nowait path reads a ``constant(...)`` correlation key and a ``header(...)``
input id without calling them (eip/processors/aggregate_nowait.py): the same outcomes as the
expressions called per input."""

from __future__ import annotations

from typing import Any

import pytest

from eip import Context, RouteBuilder, collect_bodies, constant, header
from eip import headers as H
from eip.errors import InvalidCorrelationKeyError


def aggregating(correlation: Any, **options: Any) -> RouteBuilder:
    class R(RouteBuilder):
        def configure(self) -> None:
            self.from_("direct:in").route_id("r").aggregate(
                correlation, collect_bodies, completion_size=2, **options
            ).to("mock:out")

    return R()


async def send_all(context: Context, inputs: list[tuple[Any, dict[str, Any]]]) -> list[Any]:
    """Send each (body, headers); return the exceptions (None for a success)."""
    template = context.template()
    return [(await template.send("direct:in", b, h)).exception for b, h in inputs]


@pytest.mark.parametrize("key", ["all", 7])
async def test_a_constant_key_groups_every_input(eip_context: Context, key: Any) -> None:
    eip_context.add_routes(aggregating(constant(key)))
    await eip_context.start()
    assert await send_all(eip_context, [(n, {}) for n in range(4)]) == [None] * 4
    out = eip_context.mock("out")
    assert out.received_bodies == [[0, 1], [2, 3]]
    assert [ex.properties[H.AGGREGATED_KEY] for ex in out.received] == [str(key)] * 2


@pytest.mark.parametrize("key", ["", None])
async def test_a_constant_empty_key_fails_each_input(eip_context: Context, key: Any) -> None:
    eip_context.add_routes(aggregating(constant(key)))
    await eip_context.start()
    errors = await send_all(eip_context, [(1, {}), (2, {})])
    assert all(isinstance(error, InvalidCorrelationKeyError) for error in errors)
    assert eip_context.mock("out").count == 0


async def test_a_constant_empty_key_is_ignored_when_asked(eip_context: Context) -> None:
    eip_context.add_routes(aggregating(constant(""), ignore_invalid_keys=True))
    await eip_context.start()
    assert await send_all(eip_context, [(1, {}), (2, {})]) == [None, None]
    assert eip_context.mock("out").count == 0


async def test_a_header_input_id_of_its_own_name_and_default(eip_context: Context) -> None:
    eip_context.add_routes(aggregating(header("k"), input_id=header("my-id", "no-id")))
    await eip_context.start()
    inputs = [
        (1, {"k": "a", "my-id": "x1"}),
        (1, {"k": "a", "my-id": "x1"}),  # redelivered: skipped
        (2, {"k": "a"}),  # the default id "no-id"
        (3, {"k": "b"}),  # "no-id" again, in another group: a new input there
        (3, {"k": "b"}),  # ... and then a redelivery in that group
    ]
    assert await send_all(eip_context, inputs) == [None] * 5
    assert eip_context.mock("out").received_bodies == [[1, 2]]
