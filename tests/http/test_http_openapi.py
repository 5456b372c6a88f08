"""The OpenAPI 3.1 generator, on a CRM API: the documents validate, and say what eip serves."""

from __future__ import annotations

import random
from datetime import datetime
from typing import Any, Literal

import msgspec
import pytest
from openapi_spec_validator import validate

from eip.components.http.openapi import OperationDoc, build_openapi, openapi_json, path_params
from eip.errors import RouteDefinitionError

BEARER = ("bearer", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"})
API_KEY = ("partnerKey", {"type": "apiKey", "in": "header", "name": "X-Api-Key"})
REF = "#/components/schemas/"


class Address(msgspec.Struct):
    street: str
    city: str
    country: str
    postcode: str | None = None


class Contact(msgspec.Struct):
    kind: Literal["email", "phone"]
    value: str


class Customer(msgspec.Struct):
    id: str
    name: str
    status: Literal["lead", "active", "churned"]
    address: Address
    created_at: datetime
    contacts: list[Contact] = []
    region: str | None = None


class Ack(msgspec.Struct):
    id: str
    accepted: bool


class Order(msgspec.Struct):
    id: str
    customer_id: str
    shipping: Address
    total_cents: int


def crm_operations() -> list[OperationDoc]:
    return [
        OperationDoc(
            "/api/customers",
            "GET",
            "customer-list",
            summary="List customers",
            response_type=list[Customer],
            query_params=("region", "status"),
            security=BEARER,
            tags=("customers",),
        ),
        OperationDoc(
            "/api/customers/{id}", "GET", "customer-api", response_type=Customer, security=BEARER
        ),
        OperationDoc(
            "/api/customers/{id}",
            "PUT",
            "customer-api",
            summary="Upsert a customer",
            body_type=Customer,
            response_type=Ack,
            media_types=("application/json", "application/xml"),
            security=BEARER,
            max_body_size=1_048_576,
        ),
        OperationDoc(
            "/api/customers/{id}", "DELETE", "customer-api", success_status=204, security=BEARER
        ),
        OperationDoc(
            "/api/customers/{customer_id}/contacts/{contact_id}",
            "PATCH",
            "contact-update",
            body_type=Contact,
            response_type=Contact,
        ),
        OperationDoc(
            "/api/orders",
            "POST",
            "order-intake",
            summary="Queue an order (in-only)",
            body_type=Order,
            response_type=Ack,  # ignored: a 202 has no body
            success_status=202,
            security=API_KEY,
        ),
        OperationDoc("/api/webhooks/erp", "POST", "erp-webhook", success_status=202),
        OperationDoc("/status", "GET", "status"),
    ]


@pytest.fixture
def doc() -> dict[str, Any]:
    return build_openapi(
        crm_operations(),
        title="CRM integration",
        version="2.3.0",
        description="Customer and order routes.",
        servers=["https://crm.example.com"],
    )


def operations_of(doc: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (path, method): op
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if method != "parameters"
    }


def refs_in(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if "$ref" in node else []
        return own + [r for value in node.values() for r in refs_in(value)]
    if isinstance(node, list):
        return [r for value in node for r in refs_in(value)]
    return []


def test_crm_document_is_valid_openapi_31(doc: dict[str, Any]) -> None:
    validate(doc)
    assert doc["openapi"] == "3.1.0"
    assert doc["info"] == {
        "title": "CRM integration",
        "version": "2.3.0",
        "description": "Customer and order routes.",
    }
    assert doc["servers"] == [{"url": "https://crm.example.com"}]


def test_minimal_documents_are_valid() -> None:
    empty = build_openapi([])
    validate(empty)
    assert empty["paths"] == {}
    single = build_openapi([OperationDoc("/ping", "GET", "ping")])
    validate(single)
    assert single["paths"]["/ping"]["get"]["responses"]["200"] == {"description": "OK"}


def test_every_ref_resolves_and_shared_structs_are_emitted_once(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    refs = refs_in(doc)
    assert refs
    for ref in refs:
        assert ref.startswith(REF)
        assert ref.removeprefix(REF) in schemas
    # Address is nested in Customer and Order: one component, referenced from both.
    assert set(schemas) == {"Ack", "Address", "Contact", "Customer", "Error", "Order"}
    assert schemas["Customer"]["properties"]["address"] == {"$ref": REF + "Address"}
    assert schemas["Order"]["properties"]["shipping"] == {"$ref": REF + "Address"}
    assert schemas["Customer"]["properties"]["contacts"]["items"] == {"$ref": REF + "Contact"}


def test_struct_schemas_carry_literals_optionals_and_datetimes(doc: dict[str, Any]) -> None:
    customer = doc["components"]["schemas"]["Customer"]
    assert customer["properties"]["status"] == {"enum": ["active", "churned", "lead"]}  # sorted
    assert customer["properties"]["created_at"]["type"] == "string"
    assert customer["required"] == ["id", "name", "status", "address", "created_at"]
    assert {"type": "null"} in customer["properties"]["region"]["anyOf"]


def test_path_params_are_declared_required_strings(doc: dict[str, Any]) -> None:
    templated = [p for p in doc["paths"] if "{" in p]
    assert templated == [
        "/api/customers/{customer_id}/contacts/{contact_id}",
        "/api/customers/{id}",
    ]
    for path in templated:
        params = doc["paths"][path]["parameters"]
        assert [p["name"] for p in params] == path_params(path)
        assert all(p["in"] == "path" and p["required"] is True for p in params)
        assert all(p["schema"] == {"type": "string"} for p in params)
    assert "parameters" not in doc["paths"]["/api/orders"]


def test_query_params_are_optional_strings(doc: dict[str, Any]) -> None:
    listing = doc["paths"]["/api/customers"]["get"]
    assert listing["parameters"] == [
        {"name": "region", "in": "query", "required": False, "schema": {"type": "string"}},
        {"name": "status", "in": "query", "required": False, "schema": {"type": "string"}},
    ]


def test_operation_ids_are_unique_and_suffixed_for_multi_method_routes(
    doc: dict[str, Any],
) -> None:
    ids = {key: op["operationId"] for key, op in operations_of(doc).items()}
    assert len(set(ids.values())) == len(ids) == 8
    assert ids["/api/customers/{id}", "get"] == "customer-api_get"
    assert ids["/api/customers/{id}", "put"] == "customer-api_put"
    assert ids["/api/customers/{id}", "delete"] == "customer-api_delete"
    assert ids["/api/orders", "post"] == "order-intake"
    assert ids["/api/customers", "get"] == "customer-list"


def test_one_route_id_on_two_paths_with_one_method_stays_unique() -> None:
    doc = build_openapi(
        [
            OperationDoc("/a", "GET", "r"),
            OperationDoc("/b", "GET", "r"),
            OperationDoc("/c", "GET", "r_get"),
        ]
    )
    validate(doc)
    ids = [doc["paths"][p]["get"]["operationId"] for p in ("/a", "/b", "/c")]
    assert ids == ["r_get", "r_get_2", "r_get_3"]


def test_request_body_lists_each_media_type_with_one_schema(doc: dict[str, Any]) -> None:
    body = doc["paths"]["/api/customers/{id}"]["put"]["requestBody"]
    assert body["required"] is True
    assert body["description"] == "At most 1048576 bytes."
    assert body["content"] == {
        "application/json": {"schema": {"$ref": REF + "Customer"}},
        "application/xml": {"schema": {"$ref": REF + "Customer"}},
    }
    ops = operations_of(doc)
    with_body = [k for k, op in ops.items() if "requestBody" in op]
    assert sorted(with_body) == [
        ("/api/customers/{customer_id}/contacts/{contact_id}", "patch"),
        ("/api/customers/{id}", "put"),
        ("/api/orders", "post"),
    ]


def test_success_responses(doc: dict[str, Any]) -> None:
    paths = doc["paths"]
    listing = paths["/api/customers"]["get"]["responses"]["200"]
    assert listing["content"]["application/json"]["schema"] == {
        "type": "array",
        "items": {"$ref": REF + "Customer"},
    }
    put = paths["/api/customers/{id}"]["put"]["responses"]["200"]
    assert put["content"]["application/json"]["schema"] == {"$ref": REF + "Ack"}
    # In-only: 202 and no body, even though a response_type was given.
    assert paths["/api/orders"]["post"]["responses"]["202"] == {"description": "Accepted"}
    assert paths["/api/customers/{id}"]["delete"]["responses"]["204"] == {
        "description": "No Content"
    }
    assert paths["/status"]["get"]["responses"]["200"] == {"description": "OK"}


def test_body_errors_appear_only_where_a_body_is(doc: dict[str, Any]) -> None:
    ops = operations_of(doc)
    for (path, method), op in ops.items():
        codes = set(op["responses"])
        typed_body = "requestBody" in op
        assert ("400" in codes) is typed_body, (path, method)
        assert ("415" in codes) is typed_body, (path, method)
        assert {"500", "503"} <= codes
    # A raw POST (no body type) can still be too large, but not malformed.
    webhook = set(ops["/api/webhooks/erp", "post"]["responses"])
    assert webhook == {"202", "413", "500", "503"}
    assert set(ops["/status", "get"]["responses"]) == {"200", "500", "503"}
    put_413 = ops["/api/customers/{id}", "put"]["responses"]["413"]["description"]
    assert "1048576" in put_413
    assert "application/xml" in ops["/api/customers/{id}", "put"]["responses"]["415"]["description"]
    assert "field path" in ops["/api/orders", "post"]["responses"]["400"]["description"]


def test_error_answers_share_the_error_schema(doc: dict[str, Any]) -> None:
    error = doc["components"]["schemas"]["Error"]
    assert error["required"] == ["error"]
    assert set(error["properties"]) == {"error", "detail", "exchange_id"}
    for op in operations_of(doc).values():
        for code, response in op["responses"].items():
            if int(code) >= 400:
                assert response["content"] == {
                    "application/json": {"schema": {"$ref": REF + "Error"}}
                }


def test_security_schemes_and_requirements_are_wired(doc: dict[str, Any]) -> None:
    assert doc["components"]["securitySchemes"] == {API_KEY[0]: API_KEY[1], BEARER[0]: BEARER[1]}
    ops = operations_of(doc)
    for key, op in ops.items():
        codes = set(op["responses"])
        if key[0].startswith("/api/customers/{id}") or key == ("/api/customers", "get"):
            assert op["security"] == [{"bearer": []}], key
        elif key == ("/api/orders", "post"):
            assert op["security"] == [{"partnerKey": []}]
        else:
            assert "security" not in op, key
        assert ("401" in codes) is ("403" in codes) is ("security" in op), key


def test_public_only_document_has_no_security_schemes() -> None:
    doc = build_openapi([OperationDoc("/status", "GET", "status")])
    assert "securitySchemes" not in doc["components"]
    assert doc["components"]["schemas"] == {"Error": doc["components"]["schemas"]["Error"]}


def test_summary_and_tags(doc: dict[str, Any]) -> None:
    listing = doc["paths"]["/api/customers"]["get"]
    assert listing["summary"] == "List customers"
    assert listing["tags"] == ["customers"]
    assert "summary" not in doc["paths"]["/status"]["get"]


def test_output_is_deterministic_and_sorted() -> None:
    ops = crm_operations()
    first = openapi_json(ops, title="CRM")
    shuffled = ops[:]
    random.Random(7).shuffle(shuffled)
    assert openapi_json(shuffled, title="CRM") == first
    decoded = msgspec.json.decode(first)
    assert decoded == build_openapi(ops, title="CRM")
    assert list(decoded["paths"]) == sorted(decoded["paths"])
    assert list(decoded["components"]["schemas"]) == sorted(decoded["components"]["schemas"])
    assert list(decoded["paths"]["/api/customers/{id}"]) == ["parameters", "get", "put", "delete"]


def test_a_user_struct_named_error_keeps_its_name() -> None:
    class Error(msgspec.Struct):  # a domain type that happens to be called Error
        code: int

    doc = build_openapi([OperationDoc("/errors", "POST", "error-log", body_type=Error)])
    validate(doc)
    schemas = doc["components"]["schemas"]
    assert schemas["Error"]["properties"] == {"code": {"type": "integer"}}
    assert schemas["EipError"]["required"] == ["error"]
    responses = doc["paths"]["/errors"]["post"]["responses"]
    assert responses["400"]["content"]["application/json"]["schema"] == {"$ref": REF + "EipError"}


def test_method_is_normalised_to_upper_case() -> None:
    op = OperationDoc("/x", "post", "x")
    assert op.method == "POST"
    assert "post" in build_openapi([op])["paths"]["/x"]


@pytest.mark.parametrize(
    ("kwargs", "option"),
    [
        ({"path": "/c/{id:int}"}, "path"),
        ({"path": "/c/{id}/{id}"}, "path"),
        ({"path": "/c/{id"}, "path"),
        ({"path": "c"}, "path"),
        ({"method": "PROPFIND"}, "method"),
        ({"success_status": 404}, "success_status"),
        ({"body_type": Customer, "media_types": ()}, "media_types"),
        ({"max_body_size": 0}, "max_body_size"),
    ],
)
def test_invalid_operations_fail_naming_the_route(kwargs: dict[str, Any], option: str) -> None:
    args: dict[str, Any] = {"path": "/c", "method": "POST", "route_id": "bad-route"} | kwargs
    with pytest.raises(RouteDefinitionError) as caught:
        OperationDoc(**args)
    assert caught.value.option == option
    assert "bad-route" in str(caught.value)


def test_two_routes_on_one_path_and_method_are_rejected() -> None:
    ops = [OperationDoc("/c", "GET", "one"), OperationDoc("/c", "GET", "two")]
    with pytest.raises(RouteDefinitionError, match="GET /c is served by another route") as caught:
        build_openapi(ops)
    assert caught.value.route_id == "two"


def test_one_scheme_name_with_two_definitions_is_rejected() -> None:
    other = ("bearer", {"type": "http", "scheme": "basic"})
    ops = [
        OperationDoc("/a", "GET", "a", security=BEARER),
        OperationDoc("/b", "GET", "b", security=other),
    ]
    with pytest.raises(RouteDefinitionError, match="'bearer' is defined differently") as caught:
        build_openapi(ops)
    assert caught.value.route_id == "b"


def test_a_type_msgspec_cannot_describe_names_the_route() -> None:
    class Opaque:
        pass

    ops = [
        OperationDoc("/a", "POST", "fine", body_type=Ack),
        OperationDoc("/b", "POST", "odd", body_type=Opaque),
    ]
    with pytest.raises(RouteDefinitionError, match="cannot describe") as caught:
        build_openapi(ops)
    assert caught.value.route_id == "odd"


def test_editing_one_document_leaves_the_next_intact() -> None:
    ops = [OperationDoc("/c", "POST", "c", body_type=Ack)]
    build_openapi(ops)["components"]["schemas"]["Error"]["required"].append("oops")
    assert build_openapi(ops)["components"]["schemas"]["Error"]["required"] == ["error"]
