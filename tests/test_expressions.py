"""Expression and predicate helpers (eip/expressions.py)."""

from __future__ import annotations

import msgspec
import pytest

from eip import Exchange, Expression, body, constant, exchange_property, header
from eip.expressions import path_getter


class Address(msgspec.Struct):
    zip: str
    country: str | None = None


class Customer(msgspec.Struct):
    id: int
    name: str
    address: Address | None = None
    tags: list[str] = msgspec.field(default_factory=list)


def ex(body_value=None, headers=None, **properties) -> Exchange:
    exchange = Exchange(body_value, headers)
    exchange.properties.update(properties)
    return exchange


# -- value expressions ---------------------------------------------------------------------


def test_header_reads_the_header_value():
    assert header("k")(ex(headers={"k": "v"})) == "v"


def test_header_missing_is_none_or_the_default():
    assert header("k")(ex()) is None
    assert header("k", default=5)(ex()) == 5
    # a present header wins over the default, even when falsy
    assert header("k", default=5)(ex(headers={"k": 0})) == 0


def test_header_reads_the_current_message():
    exchange = ex(headers={"k": 1})
    expr = header("k")
    exchange.headers["k"] = 2
    assert expr(exchange) == 2


def test_body_without_path_is_the_whole_body():
    payload = {"a": 1}
    assert body()(ex(payload)) is payload
    assert body("")(ex(payload)) is payload
    assert body()(ex()) is None


def test_body_dotted_path_on_dicts():
    payload = {"address": {"zip": "10115", "geo": {"lat": 52.5}}, "id": 7}
    assert body("id")(ex(payload)) == 7
    assert body("address.zip")(ex(payload)) == "10115"
    assert body("address.geo.lat")(ex(payload)) == 52.5


def test_body_dotted_path_on_structs():
    customer = Customer(id=1, name="Ada", address=Address(zip="10115", country="DE"))
    assert body("name")(ex(customer)) == "Ada"
    assert body("address.country")(ex(customer)) == "DE"
    assert body("address")(ex(customer)) == Address(zip="10115", country="DE")


def test_body_dotted_path_mixing_structs_and_dicts():
    payload = {"customer": Customer(id=2, name="Bo", address=Address(zip="1010"))}
    assert body("customer.address.zip")(ex(payload)) == "1010"


@pytest.mark.parametrize(
    ("payload", "path"),
    [
        ({}, "missing"),
        ({"a": 1}, "a.b"),  # through a non-container value
        ({"a": None}, "a.b.c"),  # through None
        ({"a": {"b": {}}}, "a.b.c"),
        (None, "a"),
        (None, "a.b"),
        (Customer(id=1, name="x"), "address.zip"),  # optional Struct field is None
        (Customer(id=1, name="x"), "nope"),
        (Customer(id=1, name="x", address=Address(zip="1")), "address.nope"),
        ([1, 2], "a.b"),
    ],
)
def test_body_missing_path_is_none(payload, path):
    assert body(path)(ex(payload)) is None


def test_path_getter_on_plain_objects_and_empty_path():
    class Obj:
        def __init__(self) -> None:
            self.inner = {"v": 3}

    assert path_getter("inner.v")(Obj()) == 3
    assert path_getter("inner")(Obj()) == {"v": 3}
    value = {"x": 1}
    assert path_getter("")(value) is value


def test_constant_ignores_the_exchange():
    marker = object()
    expr = constant(marker)
    assert expr(ex()) is marker
    assert expr(ex("other", {"h": 1})) is marker
    assert constant(None)(ex("b")) is None


def test_exchange_property_reads_properties_with_default():
    assert exchange_property("p")(ex(p=1)) == 1
    assert exchange_property("p")(ex()) is None
    assert exchange_property("p", default="d")(ex()) == "d"
    # properties are not headers
    assert exchange_property("h")(ex(headers={"h": 1})) is None


def test_expression_is_callable_and_wraps_a_function():
    expr = Expression(lambda e: e.body * 2, "double")
    assert expr(ex(21)) == 42
    assert expr.description == "double"
    assert repr(expr) == "double"


# -- comparisons ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "value", "expected"),
    [
        (lambda e: e == 5, 5, True),
        (lambda e: e == 5, 6, False),
        (lambda e: e != 5, 6, True),
        (lambda e: e != 5, 5, False),
        (lambda e: e < 5, 4, True),
        (lambda e: e < 5, 5, False),
        (lambda e: e <= 5, 5, True),
        (lambda e: e <= 5, 6, False),
        (lambda e: e > 5, 6, True),
        (lambda e: e > 5, 5, False),
        (lambda e: e >= 5, 5, True),
        (lambda e: e >= 5, 4, False),
    ],
)
def test_comparison_operators_build_predicates(make, value, expected):
    predicate = make(header("n"))
    assert isinstance(predicate, Expression)
    assert predicate(ex(headers={"n": value})) is expected


def test_reflected_comparisons_work_too():
    # 5 < header("n") is evaluated as header("n") > 5
    predicate = 5 < header("n")  # noqa: SIM300 - the reflected form is the point
    assert isinstance(predicate, Expression)
    assert predicate(ex(headers={"n": 6})) is True
    assert predicate(ex(headers={"n": 5})) is False


def test_comparing_two_expressions_evaluates_both():
    same = header("a") == body("a")
    assert same(ex({"a": 1}, {"a": 1})) is True
    assert same(ex({"a": 1}, {"a": 2})) is False
    greater = body("x") > header("limit")
    assert greater(ex({"x": 10}, {"limit": 3})) is True
    assert greater(ex({"x": 1}, {"limit": 3})) is False


def test_equality_with_missing_value():
    assert (header("k") == None)(ex()) is True  # noqa: E711 - builds a predicate
    assert (header("k") != None)(ex(headers={"k": 1})) is True  # noqa: E711


def test_ordering_a_missing_value_raises_type_error():
    with pytest.raises(TypeError):
        (header("n") > 1)(ex())


def test_expressions_stay_hashable():
    expr = header("k")
    assert hash(expr) == hash(expr)
    assert {expr: 1}[expr] == 1


# -- boolean combinators ---------------------------------------------------------------------


def test_and_or_not():
    web = header("source") == "web"
    big = body("amount") > 100
    both = web & big
    either = web | big
    assert both(ex({"amount": 200}, {"source": "web"})) is True
    assert both(ex({"amount": 50}, {"source": "web"})) is False
    assert both(ex({"amount": 200}, {"source": "app"})) is False
    assert either(ex({"amount": 50}, {"source": "web"})) is True
    assert either(ex({"amount": 200}, {"source": "app"})) is True
    assert either(ex({"amount": 50}, {"source": "app"})) is False
    assert (~web)(ex(headers={"source": "web"})) is False
    assert (~web)(ex(headers={"source": "app"})) is True


def test_combinators_return_bools_from_truthy_values():
    present = header("k")
    assert (present & constant("yes"))(ex(headers={"k": "v"})) is True
    assert (present | constant(0))(ex()) is False
    assert (~present)(ex()) is True


def test_combinators_accept_plain_callables():
    is_even = header("n") & (lambda e: e.headers["n"] % 2 == 0)
    assert is_even(ex(headers={"n": 4})) is True
    assert is_even(ex(headers={"n": 3})) is False
    assert is_even(ex(headers={"n": 0})) is False  # left side falsy


def test_and_or_short_circuit():
    calls: list[str] = []

    def right(_e: Exchange) -> bool:
        calls.append("right")
        return True

    (constant(False) & right)(ex())
    (constant(True) | right)(ex())
    assert calls == []
    (constant(True) & right)(ex())
    (constant(False) | right)(ex())
    assert calls == ["right", "right"]


def test_combinations_nest():
    predicate = ~((header("a") == 1) | (header("b") == 2)) & header("c").is_not_none()
    assert predicate(ex(headers={"a": 0, "b": 0, "c": "x"})) is True
    assert predicate(ex(headers={"a": 1, "b": 0, "c": "x"})) is False
    assert predicate(ex(headers={"a": 0, "b": 0})) is False


# -- helpers ------------------------------------------------------------------------------


def test_in_with_hashable_values():
    country = body("country").in_("DE", "AT")
    assert country(ex({"country": "DE"})) is True
    assert country(ex({"country": "AT"})) is True
    assert country(ex({"country": "FR"})) is False
    assert country(ex({})) is False


def test_in_with_unhashable_values():
    shape = body().in_([1, 2], {"a": 1})
    assert shape(ex([1, 2])) is True
    assert shape(ex({"a": 1})) is True
    assert shape(ex([2, 1])) is False


def test_in_with_an_unhashable_value_is_false_not_an_error():
    # ``["x"] in ("a", "b")`` is False in Python; the predicate must agree, not raise
    predicate = body("tags").in_("a", "b")
    assert predicate(ex({"tags": ["x"]})) is False
    assert predicate(ex({"tags": {"a": 1}})) is False


def test_in_with_no_values_is_always_false():
    assert body().in_()(ex("x")) is False


def test_contains_on_strings_lists_dicts_and_none():
    assert body().contains("ell")(ex("hello")) is True
    assert body().contains("xyz")(ex("hello")) is False
    assert body("tags").contains("vip")(ex(Customer(id=1, name="a", tags=["vip"]))) is True
    assert body("tags").contains("vip")(ex(Customer(id=1, name="a"))) is False
    assert body().contains("k")(ex({"k": 1})) is True
    assert body().contains("x")(ex(None)) is False
    assert header("list").contains(3)(ex()) is False


def test_is_none_and_is_not_none():
    assert header("k").is_none()(ex()) is True
    assert header("k").is_none()(ex(headers={"k": 0})) is False
    assert header("k").is_not_none()(ex(headers={"k": ""})) is True
    assert header("k").is_not_none()(ex()) is False


def test_startswith():
    prefix = header("topic").startswith("crm.")
    assert prefix(ex(headers={"topic": "crm.customer"})) is True
    assert prefix(ex(headers={"topic": "erp.customer"})) is False
    assert prefix(ex()) is False  # None
    assert prefix(ex(headers={"topic": 42})) is False  # not a string
    assert prefix(ex(headers={"topic": b"crm.x"})) is False  # bytes are not str


def test_map_transforms_the_value_and_skips_none():
    upper = body("region").map(str.upper)
    assert upper(ex({"region": "cn"})) == "CN"
    assert upper(ex({})) is None
    calls: list[object] = []

    def record(value: object) -> object:
        calls.append(value)
        return value

    body().map(record)(ex(None))
    assert calls == []


def test_map_result_can_be_compared():
    predicate = body("name").map(len) > 3
    assert predicate(ex({"name": "Alice"})) is True
    assert predicate(ex({"name": "Bo"})) is False


# -- descriptions ----------------------------------------------------------------------------


def test_descriptions_of_value_expressions():
    assert repr(header("x")) == "header('x')"
    assert repr(body()) == "body()"
    assert repr(body("a.b")) == "body('a.b')"
    assert repr(constant(5)) == "constant(5)"
    assert repr(constant("s")) == "constant('s')"
    assert repr(exchange_property("p")) == "exchange_property('p')"


def test_descriptions_of_predicates():
    assert repr(header("x") == 1) == "header('x') == 1"
    assert repr(header("x") != "a") == "header('x') != 'a'"
    assert repr(body("n") < 2) == "body('n') < 2"
    assert repr(body("n") <= 2) == "body('n') <= 2"
    assert repr(body("n") > 2) == "body('n') > 2"
    assert repr(body("n") >= 2) == "body('n') >= 2"
    assert repr(header("a") == header("b")) == "header('a') == header('b')"
    assert repr(header("c").in_("DE", "AT")) == "header('c') in ('DE', 'AT')"
    assert repr(body().contains("x")) == "body() contains 'x'"
    assert repr(header("x").is_none()) == "header('x') is None"
    assert repr(header("x").is_not_none()) == "header('x') is not None"
    assert repr(header("t").startswith("crm.")) == "header('t') startswith 'crm.'"
    assert repr(body("r").map(str.upper)) == "body('r').map(upper)"


def test_descriptions_of_combinations():
    a = header("a") == 1
    b = header("b") == 2
    assert repr(a & b) == "(header('a') == 1 and header('b') == 2)"
    assert repr(a | b) == "(header('a') == 1 or header('b') == 2)"
    assert repr(~a) == "not header('a') == 1"
    assert (a & b).description == repr(a & b)
