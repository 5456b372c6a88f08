"""The REST DSL and the served OpenAPI document, on a real server."""

from __future__ import annotations

from typing import Any

import msgspec
from openapi_spec_validator import validate

from eip import RouteBuilder
from tests.http.conftest import ServeFactory


class Address(msgspec.Struct):
    city: str
    zip: str


class Customer(msgspec.Struct):
    id: int
    name: str
    address: Address
    tags: list[str] = []


class Ack(msgspec.Struct):
    erp_id: str


class CrmApi(RouteBuilder):
    def configure(self) -> None:
        api = self.rest("/api", auth="api_key", credentials="k-1")
        api.post("/customers", body=Customer, response=Ack).transform(
            lambda ex: Ack(erp_id=f"E-{ex.body.id}")
        )
        api.get("/customers/{id}").transform(lambda ex: {"id": ex.headers["id"]})
        api.delete("/customers/{id}", pattern="in-only").process(lambda ex: None)
        self.rest("/public").get("/ping", auth="none").set_body("pong")


async def test_rest_verbs_serve_their_paths(serve: ServeFactory) -> None:
    served = await serve(CrmApi())
    key = {"x-api-key": "k-1"}
    created = await served.client.post(
        f"{served.url}/api/customers",
        json={"id": 5, "name": "Ada", "address": {"city": "Rome", "zip": "00100"}},
        headers=key,
    )
    assert created.status_code == 200
    assert created.json() == {"erp_id": "E-5"}
    found = await served.client.get(f"{served.url}/api/customers/5", headers=key)
    assert found.json() == {"id": "5"}
    deleted = await served.client.delete(f"{served.url}/api/customers/5", headers=key)
    assert deleted.status_code == 202
    assert (await served.client.get(f"{served.url}/api/customers/5")).status_code == 401
    assert (await served.client.get(f"{served.url}/public/ping")).text == "pong"
    ids = sorted(served.context.routes)
    assert ids == [
        "delete-api-customers-id",
        "get-api-customers-id",
        "get-public-ping",
        "post-api-customers",
    ]


async def test_the_served_openapi_document_validates(serve: ServeFactory) -> None:
    served = await serve(CrmApi())
    response = await served.client.get(f"{served.url}/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    validate(document)  # raises when the document is not valid OpenAPI 3.1
    assert document["openapi"] == "3.1.0"
    paths = document["paths"]
    assert set(paths) == {"/api/customers", "/api/customers/{id}", "/public/ping"}
    post = paths["/api/customers"]["post"]
    schema_ref = post["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert schema_ref == "#/components/schemas/Customer"
    assert "application/xml" in post["requestBody"]["content"]
    assert post["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/Ack"
    )
    assert {"400", "401", "413", "415"} <= set(post["responses"])
    assert post["security"] == [{"apiKey": []}]
    assert "Address" in document["components"]["schemas"]
    assert "202" in paths["/api/customers/{id}"]["delete"]["responses"]
    assert "security" not in paths["/public/ping"]["get"]
    assert document["servers"] == [{"url": served.url}]
