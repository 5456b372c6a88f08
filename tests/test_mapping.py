from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import msgspec
import pytest

from eip.errors import ExchangeError, MappingError, RouteDefinitionError
from eip.mapping import (
    FieldMapper,
    chain,
    convert,
    drop,
    field,
    lower,
    rename,
    scale,
    strip,
    to_bool,
    to_date,
    to_float,
    to_int,
    to_str,
    upper,
)


class Address(msgspec.Struct):
    zip: str
    country: str | None = None
    street: str = ""


class Customer(msgspec.Struct):
    id: int
    contact: dict[str, str]
    address: Address
    revenue_eur: float
    segment: str | None
    email: str
    internal_notes: str = ""


class Billing(msgspec.Struct):
    postal_code: int


class ErpCustomer(msgspec.Struct):
    customer_id: str
    name: str
    billing: Billing
    revenue_cents: int
    country: str
    source_system: str
    tier: str
    email_address: str


def crm_mapper(**options: Any) -> FieldMapper[Any]:
    return FieldMapper(
        field("customer_id", source="id", convert=str),
        field("name", source="contact.full_name"),
        field("billing.postal_code", source="address.zip"),
        field("revenue_cents", source="revenue_eur", convert=scale(100, to=int)),
        field("country", source="address.country", default="DE"),
        field("source_system", value="crm"),
        field("tier", source="segment", required=True),
        rename("email", "email_address"),
        drop("internal_notes", "address.street"),
        **options,
    )


def crm_record(**changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "id": 42,
        "contact": {"full_name": "Ada Lovelace"},
        "address": {"zip": "10115", "country": "FR", "street": "Main St 1"},
        "revenue_eur": 19.99,
        "segment": "gold",
        "email": "ada@example.com",
        "internal_notes": "vip",
    }
    record.update(changes)
    return record


EXPECTED = {
    "customer_id": "42",
    "name": "Ada Lovelace",
    "billing": {"postal_code": "10115"},
    "revenue_cents": 1999,
    "country": "FR",
    "source_system": "crm",
    "tier": "gold",
    "email_address": "ada@example.com",
}


def test_maps_a_full_record_with_nested_paths_on_both_sides() -> None:
    result = crm_mapper()(crm_record())
    assert result == EXPECTED
    assert list(result) == list(EXPECTED)  # rule order is output order


def test_mapping_error_is_an_exchange_error_with_path_and_reason() -> None:
    with pytest.raises(MappingError) as info:
        crm_mapper()(crm_record(segment=None))
    assert isinstance(info.value, ExchangeError)
    assert info.value.path == "$.segment"
    assert info.value.reason == "required field is missing"
    assert str(info.value) == "$.segment: required field is missing"


def test_required_missing_key_raises() -> None:
    record = crm_record()
    del record["segment"]
    with pytest.raises(MappingError, match=r"^\$\.segment: required field is missing$"):
        crm_mapper()(record)


def test_required_uses_default_before_failing() -> None:
    mapper = FieldMapper(field("tier", source="segment", required=True, default="std"))
    assert mapper({"segment": None}) == {"tier": "std"}
    assert mapper({}) == {"tier": "std"}


def test_default_applies_to_missing_and_none_but_not_to_falsy_values() -> None:
    mapper = FieldMapper(field("country", source="address.country", default="DE"))
    assert mapper({"address": {"country": None}}) == {"country": "DE"}
    assert mapper({"address": {}}) == {"country": "DE"}
    assert mapper({}) == {"country": "DE"}
    assert mapper({"address": {"country": ""}}) == {"country": ""}


def test_optional_missing_is_left_out_and_none_is_kept_without_calling_converter() -> None:
    calls: list[Any] = []

    def spy(value: Any) -> Any:
        calls.append(value)
        return value

    mapper = FieldMapper(field("a", convert=spy), field("b.c", source="x.y", convert=spy))
    assert mapper({}) == {}
    assert mapper({"a": None, "x": {"y": None}}) == {"a": None, "b": {"c": None}}
    assert calls == []


def test_default_is_used_as_is_not_converted() -> None:
    mapper = FieldMapper(field("n", convert=to_int, default="n/a"))
    assert mapper({}) == {"n": "n/a"}
    assert mapper({"n": "7"}) == {"n": 7}


def test_constants_are_written_for_every_record_and_may_be_nested_or_none() -> None:
    mapper = FieldMapper(
        field("meta.system", value="crm"), field("version", value=2), field("nothing", value=None)
    )
    assert mapper({}) == {"meta": {"system": "crm"}, "version": 2, "nothing": None}


def test_source_defaults_to_target_name() -> None:
    mapper = FieldMapper(field("a"), field("b.c"))
    assert mapper({"a": 1, "b": {"c": 2}}) == {"a": 1, "b": {"c": 2}}


def test_nested_targets_share_parent_dicts() -> None:
    mapper = FieldMapper(
        field("billing.address.zip", source="zip"),
        field("billing.address.city", source="city"),
        field("billing.vat", source="vat"),
    )
    assert mapper({"zip": "1", "city": "B", "vat": "X"}) == {
        "billing": {"address": {"zip": "1", "city": "B"}, "vat": "X"}
    }


def test_nested_source_through_a_non_mapping_is_missing() -> None:
    mapper = FieldMapper(field("zip", source="address.zip", default="?"), unknown="ignore")
    assert mapper({"address": "Main St 1"}) == {"zip": "?"}
    assert mapper({"address": None}) == {"zip": "?"}


def test_converter_error_names_source_target_value_and_chains_cause() -> None:
    with pytest.raises(MappingError) as info:
        crm_mapper()(crm_record(revenue_eur="abc"))
    error = info.value
    assert error.path == "$.revenue_eur"
    assert str(error).startswith(
        "$.revenue_eur: cannot convert 'abc' for target 'revenue_cents': not a number"
    )
    assert isinstance(error.__cause__, ValueError)


def test_converter_error_on_nested_source_uses_nested_path() -> None:
    mapper = FieldMapper(field("billing.zip", source="address.zip", convert=int))
    with pytest.raises(MappingError) as info:
        mapper({"address": {"zip": "D-10"}})
    assert info.value.path == "$.address.zip"
    assert "for target 'billing.zip'" in info.value.reason
    assert "invalid literal for int()" in info.value.reason


def test_any_exception_from_a_converter_is_mapped() -> None:
    def boom(value: Any) -> Any:
        raise KeyError(value)

    with pytest.raises(MappingError, match=r"^\$\.a: cannot convert 1 for target 'b': 1$"):
        FieldMapper(field("b", source="a", convert=boom))({"a": 1})


@pytest.mark.parametrize("value", [1, "x", None, [1], 2.5])
def test_non_mapping_input_is_rejected(value: Any) -> None:
    with pytest.raises(MappingError) as info:
        crm_mapper()(value)
    assert info.value.path == "$"
    assert info.value.reason == f"expected a mapping or Struct, got {type(value).__name__}"


# ----------------------------------------------------------------------------- unknown fields


def test_unknown_top_level_field_errors_by_default() -> None:
    with pytest.raises(MappingError) as info:
        crm_mapper()(crm_record(fax="0123"))
    assert info.value.path == "$.fax"
    assert info.value.reason == (
        "unknown source field (mapped fields: address, contact, email, id, "
        "internal_notes, revenue_eur, segment)"
    )


def test_unknown_nested_field_errors_with_nested_path_and_level_listing() -> None:
    record = crm_record(address={"zip": "1", "country": "DE", "street": "x", "city": "Berlin"})
    with pytest.raises(MappingError) as info:
        crm_mapper()(record)
    assert info.value.path == "$.address.city"
    assert info.value.reason == "unknown source field (mapped fields: country, street, zip)"


def test_unknown_deeply_nested_field() -> None:
    mapper = FieldMapper(field("x", source="a.b.c"))
    assert mapper({"a": {"b": {"c": 1}}}) == {"x": 1}
    with pytest.raises(MappingError, match=r"^\$\.a\.b\.d: unknown source field"):
        mapper({"a": {"b": {"c": 1, "d": 2}}})


def test_parent_referenced_as_a_whole_consumes_its_children() -> None:
    mapper = FieldMapper(field("addr", source="address"), field("zip", source="address.zip"))
    record = {"address": {"zip": "1", "anything": {"deep": True}}}
    assert mapper(record) == {"addr": record["address"], "zip": "1"}


def test_dropped_parent_consumes_its_children() -> None:
    mapper = FieldMapper(field("id"), drop("audit"))
    assert mapper({"id": 1, "audit": {"by": "x", "at": "y"}}) == {"id": 1}


def test_drop_is_not_required_to_be_present() -> None:
    mapper = FieldMapper(field("id"), drop("internal_notes", "address.street"))
    assert mapper({"id": 1}) == {"id": 1}


def test_unknown_ignore_drops_unmapped_fields_at_any_depth() -> None:
    record = crm_record(fax="0123", address={"zip": "1", "city": "Berlin"})
    result = crm_mapper(unknown="ignore")(record)
    assert "fax" not in result
    assert "address" not in result
    assert result["billing"] == {"postal_code": "1"}


def test_unknown_keep_copies_unmapped_fields_to_the_same_place() -> None:
    record = crm_record(fax="0123", extra={"a": [1]}, address={"zip": "1", "city": "Berlin"})
    result = crm_mapper(unknown="keep")(record)
    assert result == {
        **EXPECTED,
        "billing": {"postal_code": "1"},
        "country": "DE",
        "fax": "0123",
        "extra": {"a": [1]},
        "address": {"city": "Berlin"},
    }


def test_unknown_keep_never_overwrites_a_mapped_field() -> None:
    mapper = FieldMapper(
        field("name", source="full_name"),
        field("billing.zip", source="zip"),
        unknown="keep",
    )
    result = mapper({"full_name": "Ada", "name": "a", "zip": "1", "billing": {"zip": "9", "x": 1}})
    assert result == {"name": "Ada", "billing": {"zip": "1"}}


def test_unknown_keep_merges_nested_unknown_into_mapped_parent() -> None:
    mapper = FieldMapper(field("address.zip", source="address.postcode"), unknown="keep")
    assert mapper({"address": {"postcode": "1", "city": "B"}}) == {
        "address": {"zip": "1", "city": "B"}
    }


# -------------------------------------------------------------------------------- Structs


def crm_struct(**changes: Any) -> Customer:
    values: dict[str, Any] = {
        "id": 42,
        "contact": {"full_name": "Ada Lovelace"},
        "address": Address(zip="10115", country="FR", street="Main St 1"),
        "revenue_eur": 19.99,
        "segment": "gold",
        "email": "ada@example.com",
        "internal_notes": "vip",
    }
    values.update(changes)
    return Customer(**values)


def test_struct_input_including_nested_struct() -> None:
    assert crm_mapper()(crm_struct()) == EXPECTED
    assert crm_mapper()(crm_struct(address=Address(zip="1")))["country"] == "DE"


def test_struct_input_unknown_fields_are_struct_fields() -> None:
    mapper = FieldMapper(field("customer_id", source="id"), field("zip", source="address.zip"))
    with pytest.raises(MappingError, match=r"^\$\.contact: unknown source field"):
        mapper(crm_struct())
    nested = FieldMapper(
        field("zip", source="address.zip"),
        drop("id", "contact", "revenue_eur", "segment", "email", "internal_notes"),
    )
    with pytest.raises(MappingError) as info:
        nested(crm_struct())
    assert info.value.path == "$.address.country"
    assert info.value.reason == "unknown source field (mapped fields: zip)"


def test_struct_input_keep_copies_struct_fields() -> None:
    mapper = FieldMapper(field("zip", source="address.zip"), unknown="keep")
    result = mapper(crm_struct())
    assert result["zip"] == "10115"
    assert result["address"] == {"country": "FR", "street": "Main St 1"}
    assert result["id"] == 42


def test_struct_input_unset_counts_as_missing() -> None:
    class Patch(msgspec.Struct):
        name: str | msgspec.UnsetType = msgspec.UNSET

    mapper = FieldMapper(field("name", default="?"), unknown="keep")
    assert mapper(Patch()) == {"name": "?"}
    assert FieldMapper(field("other", source="x"), unknown="keep")(Patch()) == {}


def test_struct_target_is_built_with_lax_conversion() -> None:
    mapper = crm_mapper(target=ErpCustomer)
    result = mapper(crm_record())
    assert result == ErpCustomer(
        customer_id="42",
        name="Ada Lovelace",
        billing=Billing(postal_code=10115),  # "10115" -> int thanks to strict=False
        revenue_cents=1999,
        country="FR",
        source_system="crm",
        tier="gold",
        email_address="ada@example.com",
    )


def test_struct_target_conversion_error_names_the_target_path() -> None:
    with pytest.raises(MappingError) as info:
        crm_mapper(target=ErpCustomer)(crm_record(address={"zip": "D-10115"}))
    assert info.value.path == "$.billing.postal_code"
    assert info.value.reason == "Expected `int`, got `str` (target ErpCustomer)"
    assert isinstance(info.value.__cause__, msgspec.ValidationError)


def test_struct_target_missing_field_error_at_root() -> None:
    mapper = FieldMapper(field("customer_id", source="id"), target=ErpCustomer)
    with pytest.raises(MappingError) as info:
        mapper({"id": "1"})
    assert info.value.path == "$"
    assert info.value.reason.startswith("Object missing required field")
    assert info.value.reason.endswith("(target ErpCustomer)")


# ----------------------------------------------------------------------- rule definition


@pytest.mark.parametrize(
    "rules",
    [
        (field("a"), field("a", source="b")),
        (field("a"), field("a.b", source="b")),
        (field("a.b"), field("a", source="b")),
    ],
)
def test_conflicting_targets_fail_at_construction(rules: tuple[Any, ...]) -> None:
    with pytest.raises(RouteDefinitionError, match="set twice"):
        FieldMapper(*rules)


def test_bad_definitions_fail_at_construction() -> None:
    with pytest.raises(RouteDefinitionError, match="invalid path"):
        field("a..b")
    with pytest.raises(RouteDefinitionError, match="invalid path"):
        drop("")
    with pytest.raises(RouteDefinitionError, match="takes only value="):
        field("a", source="b", value=1)
    with pytest.raises(RouteDefinitionError, match="valid options: error, ignore, keep"):
        FieldMapper(field("a"), unknown="drop")  # type: ignore[call-overload]
    with pytest.raises(RouteDefinitionError, match="not a rule"):
        FieldMapper("a")  # type: ignore[call-overload]
    with pytest.raises(RouteDefinitionError, match="to must be int or float"):
        scale(100, to=str)  # type: ignore[arg-type]


def test_mapper_keeps_its_rules_for_tooling() -> None:
    rules = (field("a"), drop("b"))
    mapper = FieldMapper(*rules, unknown="ignore")
    assert mapper.rules == rules
    assert mapper.unknown == "ignore"
    assert mapper.target is None
    assert rules[0].target == ("a",)


# ---------------------------------------------------------------------------- converters


@pytest.mark.parametrize(
    ("value", "expected"),
    [(19.99, 1999), ("19.99", 1999), (0.125, 13), (-0.125, -13), (1, 100), (Decimal("2.5"), 250)],
)
def test_scale_to_int_rounds_half_up_in_decimal(value: Any, expected: int) -> None:
    assert scale(100, to=int)(value) == expected


def test_scale_to_float_and_down() -> None:
    assert scale(100)(19.99) == 1999.0
    assert scale("0.01")(1999) == 19.99
    assert scale(0.01, to=int)(1950) == 20


@pytest.mark.parametrize("value", ["abc", True, None, [1], "nan", float("inf")])
def test_scale_rejects_non_numbers(value: Any) -> None:
    with pytest.raises((TypeError, ValueError)):
        scale(100, to=int)(value)


def test_to_int() -> None:
    assert to_int(5) == 5
    assert to_int(" 7 ") == 7
    assert to_int("7.0") == 7
    assert to_int(3.0) == 3
    for bad in ("1.5", 1.5, True, "x", None):
        with pytest.raises((TypeError, ValueError)):
            to_int(bad)


def test_to_float_and_to_str() -> None:
    assert to_float("1.25") == 1.25
    assert to_float(2) == 2.0
    assert to_float(0.1) == 0.1
    with pytest.raises(TypeError):
        to_float(False)
    assert to_str(12) == "12"
    assert to_str("x") == "x"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("true", True),
        ("TRUE", True),
        (" Yes ", True),
        ("1", True),
        (1, True),
        (True, True),
        ("false", False),
        ("No", False),
        ("0", False),
        (0, False),
        (False, False),
    ],
)
def test_to_bool_accepts(value: Any, expected: bool) -> None:
    assert to_bool(value) is expected


@pytest.mark.parametrize("value", ["y", "on", "", 2, 1.0, None, [1]])
def test_to_bool_rejects(value: Any) -> None:
    with pytest.raises(ValueError, match="not a boolean"):
        to_bool(value)


def test_to_date() -> None:
    assert to_date()("2024-02-29") == dt.date(2024, 2, 29)
    assert to_date("%d.%m.%Y")("01.03.2024") == dt.date(2024, 3, 1)
    assert to_date()(dt.datetime(2024, 1, 2, 3, 4)) == dt.date(2024, 1, 2)
    assert to_date()(dt.date(2024, 1, 2)) == dt.date(2024, 1, 2)
    with pytest.raises(ValueError, match="does not match format"):
        to_date()("02/29/2024")
    with pytest.raises(TypeError):
        to_date()(20240229)


def test_string_helpers_and_chain() -> None:
    assert strip("  a ") == "a"
    assert lower("AbC") == "abc"
    assert upper("AbC") == "ABC"
    assert chain(strip, lower)("  MAIL@X.DE ") == "mail@x.de"
    assert chain()(5) == 5
    with pytest.raises(TypeError):
        strip(5)


def test_convert_namespace_exposes_the_helpers() -> None:
    assert convert.scale(100, to=int)(1.005) == 101
    assert convert.to_bool("yes") is True
    assert convert.chain(convert.strip, convert.upper)(" de ") == "DE"
    mapper = FieldMapper(
        field("active", convert=convert.to_bool),
        field("since", convert=convert.to_date()),
        field("email", convert=chain(strip, lower)),
    )
    assert mapper({"active": "No", "since": "2020-01-31", "email": " A@B.DE "}) == {
        "active": False,
        "since": dt.date(2020, 1, 31),
        "email": "a@b.de",
    }
    with pytest.raises(MappingError, match=r"^\$\.active: cannot convert 'maybe'"):
        mapper({"active": "maybe"})
