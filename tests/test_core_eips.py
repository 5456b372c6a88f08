"""The core EIPs in running routes: choice, filter, translators, marshal/unmarshal, log, stop."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
import pytest

from eip import Context, Exchange, RouteBuilder, UnmarshalError, body, header, otherwise, when
from eip.dataformats import csv, json, xml
from eip.mapping import FieldMapper, field, rename, scale


class Address(msgspec.Struct):
    city: str
    zip: str


class Customer(msgspec.Struct):
    id: int
    name: str
    region: str
    address: Address


def route(configure: Any) -> RouteBuilder:
    class R(RouteBuilder):
        def configure(self) -> None:
            configure(self.from_("direct:in").route_id("r"))

    return R()


async def started(context: Context, *builders: RouteBuilder) -> Context:
    context.add_routes(*builders)
    await context.start()
    return context


async def test_choice_first_match_wins_and_otherwise(eip_context: Context) -> None:
    await started(
        eip_context,
        route(
            lambda r: r.choice(
                when(header("n") > 10).to("mock:big"),
                when(header("n") > 5).to("mock:medium"),
                otherwise().to("mock:small"),
            ).to("mock:all")
        ),
    )
    template = eip_context.template()
    for n in (20, 7, 1, 11):
        await template.send("direct:in", n, {"n": n})
    assert eip_context.mock("big").received_bodies == [20, 11]
    assert eip_context.mock("medium").received_bodies == [7]
    assert eip_context.mock("small").received_bodies == [1]
    assert eip_context.mock("all").count == 4


async def test_choice_without_match_continues(eip_context: Context) -> None:
    await started(
        eip_context, route(lambda r: r.choice(when(body() == "x").to("mock:x")).to("mock:after"))
    )
    await eip_context.template().send("direct:in", "y")
    assert eip_context.mock("x").count == 0
    assert eip_context.mock("after").received_bodies == ["y"]


async def test_filter_gates_rest_of_route(eip_context: Context) -> None:
    await started(eip_context, route(lambda r: r.filter(body("active")).to("mock:out")))
    template = eip_context.template()
    await template.send("direct:in", {"active": True, "id": 1})
    await template.send("direct:in", {"active": False, "id": 2})
    assert [b["id"] for b in eip_context.mock("out").received_bodies] == [1]


async def test_filter_in_branch_only_ends_the_branch(eip_context: Context) -> None:
    await started(
        eip_context,
        route(
            lambda r: r.choice(
                when(header("kind") == "a").filter(body() > 0).to("mock:a"),
                otherwise().to("mock:other"),
            ).to("mock:after")
        ),
    )
    await eip_context.template().send("direct:in", -1, {"kind": "a"})
    assert eip_context.mock("a").count == 0
    assert eip_context.mock("after").count == 1


async def test_async_predicates(eip_context: Context) -> None:
    async def is_vip(exchange: Exchange) -> bool:
        return bool(exchange.body["vip"])

    async def allowed(exchange: Exchange) -> bool:
        return exchange.body["id"] != 3

    await started(
        eip_context,
        route(
            lambda r: r.filter(allowed).choice(
                when(is_vip).to("mock:vip"), otherwise().to("mock:std")
            )
        ),
    )
    template = eip_context.template()
    for i, vip in [(1, True), (2, False), (3, True)]:
        await template.send("direct:in", {"id": i, "vip": vip})
    assert [b["id"] for b in eip_context.mock("vip").received_bodies] == [1]
    assert [b["id"] for b in eip_context.mock("std").received_bodies] == [2]


async def test_translators(eip_context: Context) -> None:
    async def enrich(exchange: Exchange) -> dict[str, Any]:
        return {**exchange.body, "enriched": True}

    class Stamp:
        def process(self, exchange: Exchange) -> None:
            exchange.headers["stamped"] = "yes"

    await started(
        eip_context,
        route(
            lambda r: (
                r.transform(lambda ex: {"v": ex.body})
                .transform(enrich)
                .set_header("const", 42)
                .set_header("from_body", body("v"))
                .set_property("p", header("const"))
                .remove_header("x-*", "drop-me")
                .process(Stamp())
                .set_header("prop", lambda ex: ex.properties["p"])
                .to("mock:out")
            )
        ),
    )
    await eip_context.template().send("direct:in", 5, {"x-a": 1, "x-b": 2, "drop-me": 3, "keep": 4})
    out = eip_context.mock("out").received[0]
    assert out.body == {"v": 5, "enriched": True}
    assert out.headers == {"keep": 4, "const": 42, "from_body": 5, "stamped": "yes", "prop": 42}


async def test_set_body_constant_and_async_process(eip_context: Context) -> None:
    seen: list[str] = []

    async def audit(exchange: Exchange) -> None:
        seen.append(exchange.body)

    await started(eip_context, route(lambda r: r.set_body("fixed").process(audit).to("mock:o")))
    reply = await eip_context.template().request("direct:in", "anything")
    assert reply == "fixed"
    assert seen == ["fixed"]


async def test_map_fields_step(eip_context: Context) -> None:
    mapper = FieldMapper(
        field("customer_id", source="id", convert=str),
        rename("name", "display_name"),
        field("revenue_cents", source="revenue", convert=scale(100, to=int)),
    )
    await started(eip_context, route(lambda r: r.map_fields(mapper).to("mock:o")))
    await eip_context.template().send("direct:in", {"id": 9, "name": "Ada", "revenue": 19.99})
    assert eip_context.mock("o").received_bodies == [
        {"customer_id": "9", "display_name": "Ada", "revenue_cents": 1999}
    ]


async def test_json_round_trip_with_struct(eip_context: Context) -> None:
    await started(
        eip_context,
        route(
            lambda r: (
                r.unmarshal(json(Customer))
                .choice(when(body("region") == "EU").to("mock:eu"), otherwise().to("mock:other"))
                .marshal(json())
                .to("mock:out")
            )
        ),
    )
    raw = b'{"id": 1, "name": "Ada", "region": "EU", "address": {"city": "Graz", "zip": "8010"}}'
    await eip_context.template().send("direct:in", raw)
    eu = eip_context.mock("eu").received_bodies
    assert eu == [Customer(1, "Ada", "EU", Address("Graz", "8010"))]
    assert msgspec.json.decode(eip_context.mock("out").received_bodies[0]) == msgspec.json.decode(
        raw
    )


async def test_malformed_json_names_the_path(eip_context: Context) -> None:
    await started(eip_context, route(lambda r: r.unmarshal(json(Customer)).to("mock:out")))
    bad = b'{"id": 1, "name": "Ada", "region": "EU", "address": {"city": "Graz", "zip": 8010}}'
    with pytest.raises(UnmarshalError) as info:
        await eip_context.template().request("direct:in", bad)
    assert info.value.location == "$.address.zip"
    assert "$.address.zip: expected str, got int" in str(info.value)
    assert info.value.route_id == "r"
    with pytest.raises(UnmarshalError, match="malformed"):
        await eip_context.template().request("direct:in", b'{"id": 1,')


async def test_malformed_xml_names_line(eip_context: Context) -> None:
    await started(eip_context, route(lambda r: r.unmarshal(xml(as_dict=True)).to("mock:out")))
    good = await eip_context.template().request("direct:in", b"<c><id>1</id></c>")
    assert good == {"c": {"id": "1"}}
    with pytest.raises(UnmarshalError) as info:
        await eip_context.template().request("direct:in", b"<c>\n<id>1</idd>\n</c>")
    assert info.value.location is not None
    assert info.value.location.startswith("line 2")


async def test_malformed_csv_names_row(eip_context: Context) -> None:
    class Row(msgspec.Struct):
        id: int
        name: str

    await started(eip_context, route(lambda r: r.unmarshal(csv(Row)).to("mock:out")))
    rows = await eip_context.template().request("direct:in", b"id,name\n1,Ada\n2,Bob\n")
    assert rows == [Row(1, "Ada"), Row(2, "Bob")]
    with pytest.raises(UnmarshalError) as info:
        await eip_context.template().request("direct:in", b"id,name\n1,Ada\nx,Bob\n")
    assert "line 3" in str(info.value)
    assert "id" in str(info.value)


async def test_log_step_and_stop(eip_context: Context, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="eip.route.r")
    await started(
        eip_context,
        route(
            lambda r: (
                r.log("got {body} on {route_id}")
                .choice(when(body() == "halt").stop())
                .to("mock:after")
            )
        ),
    )
    await eip_context.template().send("direct:in", "halt")
    await eip_context.template().send("direct:in", "go")
    assert eip_context.mock("after").received_bodies == ["go"]
    assert "got halt on r" in caplog.text


async def test_stop_in_sub_route_returns_to_caller(eip_context: Context) -> None:
    class Sub(RouteBuilder):
        def configure(self) -> None:
            self.from_("direct:sub").route_id("sub").stop().to("mock:never")

    await started(eip_context, route(lambda r: r.to("direct:sub").to("mock:after")), Sub())
    await eip_context.template().send("direct:in", 1)
    assert eip_context.mock("never").count == 0
    assert eip_context.mock("after").count == 1


async def test_sync_route_runs_without_awaiting(eip_context: Context) -> None:
    """A route of sync steps completes inside dispatch: no coroutine is created."""
    await started(
        eip_context,
        route(lambda r: r.filter(body() > 0).transform(lambda ex: ex.body * 2).to("mock:o")),
    )
    result = eip_context.routes["r"].dispatch(Exchange(21))
    assert result is None
    assert eip_context.mock("o").received_bodies == [42]
