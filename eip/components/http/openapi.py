"""OpenAPI 3.1 document for the HTTP consumer's routes.

The server builds the document once at start, from the routes' declared msgspec types, and
serves the cached bytes at ``/openapi.json``. This module is pure (operations in, dict out) so
the document can be snapshot-tested and so a bad route fails at start, not when someone asks
for the docs.

Schemas come from one ``msgspec.json.schema_components`` call over every type, so a nested
Struct shared by several routes is emitted once. msgspec writes JSON Schema 2020-12, which is
what OpenAPI 3.1 uses, so the schemas are taken as they are.
"""

from __future__ import annotations

import copy
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import msgspec

from eip.errors import RouteDefinitionError

__all__ = ["OperationDoc", "build_openapi", "openapi_json"]

_REF_TEMPLATE = "#/components/schemas/{name}"
# Path-item keys OpenAPI allows, in the order we write them (deterministic output).
_METHOD_ORDER = ("get", "put", "post", "patch", "delete", "head", "options", "trace")
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_NO_CONTENT = frozenset({202, 204})
_PARAM = re.compile(r"\{([^{}]*)\}")
_PARAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ENCODER = msgspec.json.Encoder()

_ERROR_SCHEMA: dict[str, Any] = {
    "title": "Error",
    "description": "The body of every error answer eip's HTTP server gives.",
    "type": "object",
    "properties": {
        "error": {"type": "string", "description": "What went wrong."},
        "detail": {"description": "More about it, when there is more to say."},
        "exchange_id": {"type": "string", "description": "Find the exchange in logs and traces."},
    },
    "required": ["error"],
}


@dataclass(frozen=True, slots=True)
class OperationDoc:
    """What the document needs to know about one (path, method) a route serves.

    It is validated on construction, so a route with a path OpenAPI cannot express fails at
    start with the route's id in the message.
    """

    path: str
    method: str
    route_id: str
    summary: str | None = None
    body_type: object | None = None  # a Struct, or any type msgspec describes: list[X] ...
    response_type: object | None = None
    media_types: tuple[str, ...] = ("application/json",)
    success_status: int = 200
    query_params: tuple[str, ...] = ()
    security: tuple[str, dict[str, Any]] | None = None
    max_body_size: int | None = None
    tags: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "method", self.method.upper())
        if self.method.lower() not in _METHOD_ORDER:
            raise self._error(f"method {self.method!r} cannot be documented", "method")
        if not self.path.startswith("/"):
            raise self._error(f"path {self.path!r} must start with '/'", "path")
        names = path_params(self.path)
        bad = [n for n in names if not _PARAM_NAME.fullmatch(n)]
        if bad or len(set(names)) != len(names) or re.search(r"[{}]", _PARAM.sub("", self.path)):
            raise self._error(
                f"path {self.path!r} needs unique, plain '{{name}}' parameters (no converters)",
                "path",
            )
        if not 200 <= self.success_status < 300:
            raise self._error(f"success_status {self.success_status} is not 2xx", "success_status")
        if self.body_type is not None and not self.media_types:
            raise self._error(
                "a route with a body_type needs at least one media type", "media_types"
            )
        if self.max_body_size is not None and self.max_body_size <= 0:
            raise self._error("max_body_size must be positive", "max_body_size")

    def _error(self, message: str, option: str) -> RouteDefinitionError:
        return RouteDefinitionError(message, route_id=self.route_id, step="openapi", option=option)


def path_params(path: str) -> list[str]:
    """The ``{name}`` parameters of a path template, in order."""
    return _PARAM.findall(path)


def build_openapi(
    operations: Sequence[OperationDoc],
    *,
    title: str = "eip",
    version: str = "0.1.0",
    description: str | None = None,
    servers: Sequence[str] = (),
) -> dict[str, Any]:
    """Build the OpenAPI 3.1 document (a plain dict) for ``operations``."""
    ops = sorted(operations, key=lambda op: (op.path, _METHOD_ORDER.index(op.method.lower())))
    schemas, components = _schemas(ops)
    error_name = "Error"
    while error_name in components:  # a user Struct is called Error: keep theirs, rename ours
        error_name = "Eip" + error_name
    components[error_name] = copy.deepcopy(_ERROR_SCHEMA)  # callers may edit the doc
    error_ref = {"$ref": _REF_TEMPLATE.format(name=error_name)}

    paths: dict[str, dict[str, Any]] = {}
    for op, op_id in zip(ops, _operation_ids(ops), strict=True):
        item = paths.get(op.path)
        if item is None:
            item = paths[op.path] = {}
            if names := path_params(op.path):
                item["parameters"] = [_param(n, "path", required=True) for n in names]
        if (method := op.method.lower()) in item:
            raise RouteDefinitionError(
                f"{op.method} {op.path} is served by another route too",
                route_id=op.route_id,
                step="openapi",
            )
        item[method] = _operation(op, op_id, schemas, error_ref)

    info: dict[str, Any] = {"title": title, "version": version}
    if description:
        info["description"] = description
    doc: dict[str, Any] = {"openapi": "3.1.0", "info": info}
    if servers:
        doc["servers"] = [{"url": url} for url in servers]
    doc["paths"] = paths
    doc["components"] = {"schemas": dict(sorted(components.items()))}
    if schemes := _security_schemes(ops):
        doc["components"]["securitySchemes"] = schemes
    return doc


def openapi_json(
    operations: Sequence[OperationDoc],
    *,
    title: str = "eip",
    version: str = "0.1.0",
    description: str | None = None,
    servers: Sequence[str] = (),
) -> bytes:
    """The document as JSON bytes, ready to serve (build it once, at start)."""
    doc = build_openapi(
        operations, title=title, version=version, description=description, servers=servers
    )
    return _ENCODER.encode(doc)


def _operation_ids(ops: Sequence[OperationDoc]) -> list[str]:
    """The route id; with the method as suffix when the route serves several; unique always."""
    per_route = Counter(op.route_id for op in ops)
    taken: set[str] = set()
    ids = []
    for op in ops:
        base = op.route_id if per_route[op.route_id] == 1 else f"{op.route_id}_{op.method.lower()}"
        candidate, n = base, 2
        while candidate in taken:  # one route id on several paths with the same method
            candidate, n = f"{base}_{n}", n + 1
        taken.add(candidate)
        ids.append(candidate)
    return ids


def _documented_types(op: OperationDoc) -> list[object]:
    response = op.response_type if op.success_status not in _NO_CONTENT else None
    return [t for t in (op.body_type, response) if t is not None]


def _schemas(ops: Sequence[OperationDoc]) -> tuple[dict[Any, dict[str, Any]], dict[str, Any]]:
    """Schema per type, plus the shared components, from one msgspec call."""
    types = list(dict.fromkeys(t for op in ops for t in _documented_types(op)))
    try:
        found, components = msgspec.json.schema_components(types, ref_template=_REF_TEMPLATE)
    except TypeError as exc:
        for op in ops:  # the one call failed: find the route to blame
            for t in _documented_types(op):
                try:
                    msgspec.json.schema(t)
                except TypeError as one:
                    raise RouteDefinitionError(
                        f"cannot describe {t!r} in OpenAPI: {one}", route_id=op.route_id
                    ) from exc
        raise
    return dict(zip(types, found, strict=True)), dict(components)


def _param(name: str, where: str, *, required: bool) -> dict[str, Any]:
    return {"name": name, "in": where, "required": required, "schema": {"type": "string"}}


def _operation(
    op: OperationDoc, op_id: str, schemas: dict[Any, dict[str, Any]], error_ref: dict[str, str]
) -> dict[str, Any]:
    out: dict[str, Any] = {"operationId": op_id}
    if op.summary:
        out["summary"] = op.summary
    if op.tags:
        out["tags"] = list(op.tags)
    if op.query_params:
        query = dict.fromkeys(op.query_params)
        out["parameters"] = [_param(q, "query", required=False) for q in query]
    if op.body_type is not None:
        schema = schemas[op.body_type]
        body: dict[str, Any] = {"required": True}
        if op.max_body_size is not None:
            body["description"] = f"At most {op.max_body_size} bytes."
        body["content"] = {media: {"schema": schema} for media in op.media_types}
        out["requestBody"] = body
    out["responses"] = _responses(op, schemas, error_ref)
    if op.security is not None:
        out["security"] = [{op.security[0]: []}]
    return out


def _responses(
    op: OperationDoc, schemas: dict[Any, dict[str, Any]], error_ref: dict[str, str]
) -> dict[str, Any]:
    ok: dict[str, Any] = {"description": HTTPStatus(op.success_status).phrase}
    if op.response_type is not None and op.success_status not in _NO_CONTENT:
        ok["content"] = {"application/json": {"schema": schemas[op.response_type]}}
    errors: list[tuple[int, str]] = []
    has_body = op.body_type is not None
    if has_body:
        errors.append((400, "Invalid body; the error names the field path, e.g. `$.address.city`."))
    if op.security is not None:
        errors.append((401, "Missing or invalid credentials."))
        errors.append((403, "Credentials valid, but not allowed here."))
    if has_body or op.max_body_size is not None or op.method in _BODY_METHODS:
        limit = f" (limit {op.max_body_size} bytes)" if op.max_body_size is not None else ""
        errors.append((413, f"Request body too large{limit}."))
    if has_body:
        errors.append((415, f"Unsupported media type; send {', '.join(op.media_types)}."))
    errors.append((500, "The route failed while processing the request."))
    errors.append((503, "Overloaded or shutting down; retry later."))
    error_content = {"application/json": {"schema": error_ref}}
    answers = {
        str(status): {"description": text, "content": error_content} for status, text in errors
    }
    return {str(op.success_status): ok} | answers


def _security_schemes(ops: Sequence[OperationDoc]) -> dict[str, dict[str, Any]]:
    schemes: dict[str, dict[str, Any]] = {}
    for op in ops:
        if op.security is None:
            continue
        name, scheme = op.security
        if schemes.setdefault(name, scheme) != scheme:
            raise RouteDefinitionError(
                f"security scheme {name!r} is defined differently by another route",
                route_id=op.route_id,
                step="openapi",
            )
    return dict(sorted(schemes.items()))
