"""The OpenAPI 3.1 document of the management port (health, metrics and the control API)."""

from __future__ import annotations

import functools
from typing import Any

__all__ = ["document"]

_ROUTE_ID = {
    "name": "route_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "the route's id",
}
_ERROR = {
    "type": "object",
    "properties": {"error": {"type": "string"}},
    "required": ["error"],
}


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    texts = {
        401: "missing or wrong bearer token",
        403: "changes are disabled (no EIP_MANAGEMENT_TOKEN)",
        404: "no such route",
        500: "the route could not start",
    }
    return {str(code): _json(texts[code], {"$ref": "#/components/schemas/Error"}) for code in codes}


@functools.cache
def document() -> dict[str, Any]:
    counters = {
        "type": "object",
        "properties": {
            "exchanges_total": {"type": "integer"},
            "exchanges_failed": {"type": "integer"},
            "inflight": {"type": "integer"},
            "processing": {
                "type": "object",
                "description": "processing times over the last window_seconds (metrics on)",
                "properties": {
                    "window_seconds": {"type": "number"},
                    "count": {"type": "integer"},
                    "mean_ms": {"type": ["number", "null"]},
                    "p99_ms": {"type": ["number", "null"]},
                },
            },
        },
    }
    route = {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "description": {"type": ["string", "null"]},
            "status": {"enum": ["stopped", "starting", "started", "stopping"]},
            "from": {"type": "string", "description": "the source URI, credentials redacted"},
            "ready": {"type": "boolean"},
            "problem": {"type": ["string", "null"]},
            "waiting": {
                "type": ["string", "null"],
                "description": "supervised start: why the route waits (attempts, next try, error)",
            },
            "counters": counters,
            "last_failure": {"type": ["object", "null"]},
            "steps": {"type": "array", "items": {"type": "object"}},
        },
        "required": ["id", "status", "from", "counters"],
    }
    failure = {
        "type": "object",
        "properties": {
            name: {"type": kind}
            for name, kind in {
                "time": "number",
                "route_id": "string",
                "exchange_id": "string",
                "message_id": ["string", "null"],
                "failed_at": ["string", "null"],
                "exception_type": "string",
                "message": "string",
                "redelivery_count": "integer",
                "handled": "boolean",
                "trace_id": ["string", "null"],
                "headers": "object",
                "body": "string",
                "body_truncated": "boolean",
            }.items()
        },
    }
    mutation = {
        "security": [{"bearer": []}],
        "parameters": [_ROUTE_ID],
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "eip management API", "version": "1"},
        "paths": {
            "/health/live": {"get": {"responses": {"200": {"description": "the process serves"}}}},
            "/health/ready": {
                "get": {
                    "responses": {
                        "200": {"description": "ready"},
                        "503": {"description": "not ready: which routes and connections, why"},
                    }
                }
            },
            "/metrics": {"get": {"responses": {"200": {"description": "Prometheus text"}}}},
            "/routes": {
                "get": {
                    "responses": {
                        "200": _json(
                            "every route",
                            {
                                "type": "object",
                                "properties": {
                                    "routes": {
                                        "type": "array",
                                        "items": {"$ref": "#/components/schemas/Route"},
                                    }
                                },
                            },
                        )
                    }
                }
            },
            "/routes/{route_id}": {
                "get": {
                    "parameters": [_ROUTE_ID],
                    "responses": {
                        "200": _json(
                            "the route, with its steps", {"$ref": "#/components/schemas/Route"}
                        ),
                        **_errors(404),
                    },
                }
            },
            "/routes/{route_id}/failures": {
                "get": {
                    "parameters": [_ROUTE_ID],
                    "responses": {
                        "200": _json(
                            "recent failed exchanges, newest first",
                            {
                                "type": "object",
                                "properties": {
                                    "route": {"type": "string"},
                                    "failures": {
                                        "type": "array",
                                        "items": {"$ref": "#/components/schemas/Failure"},
                                    },
                                },
                            },
                        ),
                        **_errors(404),
                    },
                }
            },
            "/routes/{route_id}/stop": {
                "post": {
                    **mutation,
                    "responses": {"200": {"description": "stopped"}, **_errors(401, 403, 404)},
                }
            },
            "/routes/{route_id}/start": {
                "post": {
                    **mutation,
                    "responses": {
                        "200": {"description": "started"},
                        **_errors(401, 403, 404, 500),
                    },
                }
            },
        },
        "components": {
            "schemas": {"Route": route, "Failure": failure, "Error": _ERROR},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
