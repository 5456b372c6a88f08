"""Simple lambdas run inline in the fused pipeline (eip/processors/inline_lambda.py): which
ones qualify, that the right lambda of several on a line is found, and that inline they route
and fail exactly as called."""

from __future__ import annotations

import linecache
from typing import Any

import pytest

from eip import Context, Exchange, RouteBuilder, otherwise, when
from eip.processors.inline_lambda import inline_expression, inline_source

LIMIT = 3


def tag(body: Any) -> str:
    """A module-level function the lambdas below call (rebound by one test)."""
    return f"tagged {body}"


def test_a_predicate_over_the_exchange_becomes_an_expression_over_ex() -> None:
    assert inline_expression(lambda ex: ex.body.active) == "(ex.body.active)"
    assert inline_expression(lambda e: e.body["n"] > 2 and not e.route_stop) == (
        "(e.body['n'] > 2 and (not e.route_stop))".replace("e.", "ex.")
    )
    assert inline_expression(lambda m: m.headers.get("kind") == "a") == (
        "(ex.headers.get('kind') == 'a')"
    )


def test_the_right_lambda_of_several_on_one_line_is_found() -> None:
    a, b, c = (lambda e: e.body == 1), (lambda e: e.body == 2), (lambda e: e.body == 1)
    assert a.__code__.co_firstlineno == b.__code__.co_firstlineno == c.__code__.co_firstlineno
    assert inline_expression(a) == "(ex.body == 1)"
    assert inline_expression(b) == "(ex.body == 2)"
    assert inline_expression(c) == "(ex.body == 1)"
    # 1 == True, so the constants must be compared by type too: "{}".format gives "1", "True"
    d, e = (lambda e: e.body.format(1)), (lambda e: e.body.format(True))
    assert inline_expression(d) == "(ex.body.format(1))"
    assert inline_expression(e) == "(ex.body.format(True))"


def _closure() -> Any:
    limit = 3
    return lambda ex: ex.body > limit


def named(ex: Exchange) -> bool:
    return bool(ex.body)


@pytest.mark.parametrize(
    "fn",
    [
        _closure(),  # a closure: its cell could change
        lambda ex: ex.body > LIMIT,  # a global: it resolves in its module and could be rebound
        lambda ex: len(ex.body) > 1,  # a builtin, the same
        lambda ex=None: ex,  # a default
        lambda ex, *rest: ex.body,  # more than one parameter
        lambda ex: [x.id for x in ex.body],  # a comprehension: a scope of its own
        lambda ex: (lambda: ex.body)(),  # a lambda inside
        named,  # not a lambda
    ],
)
def test_anything_else_is_called(fn: Any) -> None:
    assert inline_expression(fn) is None


def test_a_lambda_without_source_or_with_changed_source_is_called() -> None:
    namespace: dict[str, Any] = {}
    exec(compile("f = lambda ex: ex.body == 1\n", "<no source>", "exec"), namespace)
    assert inline_expression(namespace["f"]) is None
    filename = "<eip test: changed>"
    exec(compile("g = lambda ex: ex.body == 1\n", filename, "exec"), namespace)
    linecache.cache[filename] = (1, None, ["g = lambda ex: ex.body == 2\n"], filename)
    try:
        assert inline_expression(namespace["g"]) is None  # the found node is not its code
        linecache.cache[filename] = (1, None, ["g = lambda ex: ex.body == 1\n"], filename)
        assert inline_expression(namespace["g"]) == "(ex.body == 1)"
    finally:
        del linecache.cache[filename]


def routes(configure: Any) -> RouteBuilder:
    class R(RouteBuilder):
        def configure(self) -> None:
            configure(self.from_("direct:in").route_id("r"))

    return R()


async def test_inline_predicates_route_as_called_ones() -> None:
    context = Context()
    context.add_routes(
        routes(
            lambda r: (
                r.filter(lambda ex: ex.body["keep"])
                .choice(
                    when(lambda ex: ex.body["kind"] == "{a}").to("mock:a"),
                    when(lambda ex: ex.headers.get("vip") is True).to("mock:vip"),
                    otherwise().to("mock:other"),
                )
                .to("mock:after")
            )
        )
    )
    async with context:
        source = context.routes["r"].dispatch.eip_source  # type: ignore[attr-defined]
        assert "if not (ex.body['keep']):" in source
        assert "if (ex.body['kind'] == '{a}'):" in source  # braces survive the formatting
        template = context.template()
        await template.send("direct:in", {"keep": True, "kind": "{a}"})
        await template.send("direct:in", {"keep": True, "kind": "b"}, {"vip": True})
        await template.send("direct:in", {"keep": True, "kind": "b"})
        await template.send("direct:in", {"keep": False, "kind": "{a}"})
    assert [context.mock(m).count for m in ("a", "vip", "other", "after")] == [1, 1, 1, 3]


async def test_an_inline_predicate_fails_with_its_own_error_at_its_step() -> None:
    context = Context()
    context.add_routes(routes(lambda r: r.to("mock:before").filter(lambda ex: ex.body.active)))
    async with context:
        source = context.routes["r"].dispatch.eip_source  # type: ignore[attr-defined]
        assert "(ex.body.active)" in source
        exchange = await context.template().send("direct:in", {"active": True})
        record = context.failures.last("r")
    assert isinstance(exchange.exception, AttributeError)
    assert "'dict' object has no attribute 'active'" in str(exchange.exception)
    assert record is not None
    assert record.failed_at is not None
    assert record.failed_at.startswith("filter(")
    assert context.mock("before").count == 1


async def test_inline_transform_header_and_property_values() -> None:
    context = Context()
    context.add_routes(
        routes(
            lambda r: (
                r.transform(lambda ex: ex.body["n"] * 2)
                .set_header("big", lambda ex: ex.body > 10)
                .set_property("seen", lambda ex: {"n": ex.body}["n"])  # a dict: called, not inline
                .set_header("label", lambda ex: "<{}>".format(ex.body))  # noqa: UP032 - braces
                .to("mock:out")
            )
        )
    )
    async with context:
        source = context.routes["r"].dispatch.eip_source  # type: ignore[attr-defined]
        assert "ex.body = (ex.body['n'] * 2)" in source
        assert "] = (ex.body > 10)" in source
        assert "] = ('<{}>'.format(ex.body))" in source
        await context.template().send("direct:in", {"n": 7})
    received = context.mock("out").received[0]
    assert received.body == 14
    assert received.headers == {"big": True, "label": "<14>"}
    assert received.properties["seen"] == 14


async def test_values_that_are_not_simple_lambdas_are_still_called() -> None:
    def double(ex: Exchange) -> int:
        return int(ex.body) * 2

    context = Context()
    context.add_routes(routes(lambda r: r.transform(double).set_header("n", double).to("mock:out")))
    async with context:
        exchange = await context.template().send("direct:in", 5)
    assert exchange.exception is None
    assert context.mock("out").received[0].body == 10
    assert context.mock("out").received[0].headers == {"n": 20}


def test_module_level_names_are_read_from_the_lambdas_globals() -> None:
    found = inline_source(lambda ex: tag(ex.body) if ex.body > LIMIT else None, 4)
    assert found is not None
    text, values = found
    assert text == "({4}['tag'](ex.body) if ex.body > {4}['LIMIT'] else None)"
    assert values == [globals()]
    assert inline_source(lambda ex: ex.body.active, 0) == ("(ex.body.active)", [])
    assert inline_source(lambda ex: len(ex.body), 0) is None  # a builtin could be shadowed
    assert inline_source(lambda ex: not_defined(ex.body), 0) is None  # type: ignore[name-defined]  # noqa: F821
    assert inline_source(lambda ex: ex.body == "__eip_lambda_globals__", 0) is None


async def test_a_lambda_calling_a_global_runs_inline_and_sees_it_rebound() -> None:
    context = Context()
    context.add_routes(
        routes(
            lambda r: r.filter(lambda ex: tag(ex.body) != "tagged skip").choice(
                when(lambda ex: tag(ex.body) == "tagged vip")
                .transform(lambda ex: tag(ex.body))
                .to("mock:vip"),
                otherwise().set_header("t", lambda ex: tag(ex.body)).to("mock:other"),
            )
        )
    )
    global tag
    original = tag
    async with context:
        source = context.routes["r"].dispatch.eip_source  # type: ignore[attr-defined]
        assert source.count("['tag'](ex.body)") == 4  # filter, when, transform, set_header
        template = context.template()
        await template.send("direct:in", "vip")
        await template.send("direct:in", "skip")
        await template.send("direct:in", "plain")
        tag = lambda body: f"retagged {body}"  # noqa: E731 - a test patching a module function
        try:
            await template.send("direct:in", "plain")
        finally:
            tag = original
    assert [e.body for e in context.mock("vip").received] == ["tagged vip"]
    assert [e.headers["t"] for e in context.mock("other").received] == [
        "tagged plain",
        "retagged plain",
    ]


async def test_a_global_deleted_after_start_fails_the_exchange_naming_it() -> None:
    namespace: dict[str, Any] = {"shout": str.upper}
    filename = "<eip test: deleted global>"
    exec(compile("f = lambda ex: shout(ex.body)\n", filename, "exec"), namespace)
    linecache.cache[filename] = (1, None, ["f = lambda ex: shout(ex.body)\n"], filename)
    context = Context()
    try:
        context.add_routes(routes(lambda r: r.transform(namespace["f"]).to("mock:out")))
        async with context:
            assert "['shout'](ex.body)" in context.routes["r"].dispatch.eip_source  # type: ignore[attr-defined]
            ok = await context.template().send("direct:in", "a")
            del namespace["shout"]
            failed = await context.template().send("direct:in", "b")
    finally:
        del linecache.cache[filename]
    assert ok.exception is None
    assert context.mock("out").received[0].body == "A"
    assert isinstance(failed.exception, KeyError)
    assert "shout" in str(failed.exception)
