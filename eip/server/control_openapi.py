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
        409: "the route's state does not allow it (what the state is, and what would help)",
        500: "the route's consumer could not start, stop, suspend or resume",
    }
    return {str(code): _json(texts[code], {"$ref": "#/components/schemas/Error"}) for code in codes}


def _mutation(summary: str, ok: dict[str, Any], *codes: int) -> dict[str, Any]:
    return {
        "post": {
            "security": [{"bearer": []}],
            "parameters": [_ROUTE_ID],
            "summary": summary,
            "responses": {"200": ok, **_errors(*codes)},
        }
    }


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
            "schedule": {
                "type": "object",
                "description": "cron: routes, this instance: fired, misfire_runs, recoveries, "
                "manual_runs, overlaps_skipped, misfires_skipped, suspended_skipped, "
                "taken_elsewhere (by another instance), store_errors",
                "additionalProperties": {"type": "integer"},
            },
        },
    }
    route = {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "description": {"type": ["string", "null"]},
            "status": {"enum": ["stopped", "starting", "started", "stopping", "suspended"]},
            "from": {"type": "string", "description": "the source URI, credentials redacted"},
            "ready": {"type": "boolean"},
            "problem": {"type": ["string", "null"]},
            "waiting": {
                "type": ["string", "null"],
                "description": "supervised start: why the route waits (attempts, next try, error)",
            },
            "counters": counters,
            "last_failure": {"type": ["object", "null"]},
            "steps": {"type": "array", "items": {"$ref": "#/components/schemas/Step"}},
            "on_exception": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "describe": {"type": "string"},
                        "node": {"type": ["string", "null"]},
                        "steps": {"type": "array", "items": {"$ref": "#/components/schemas/Step"}},
                    },
                },
            },
        },
        "required": ["id", "status", "from", "counters"],
    }
    step = {
        "type": "object",
        "properties": {
            "path": {"type": "string", "description": "3/when(...)/2: numbers and branch labels"},
            "kind": {"type": "string"},
            "describe": {"type": "string"},
            "node": {
                "type": "string",
                "description": "the node id in the route's picture (route/3/when-1/2)",
            },
            "sends": {
                "type": "object",
                "description": "an endpoint send's counters (metrics on): sent, failed, and the "
                "mean time of the sends that waited for I/O (null when none did)",
                "properties": {
                    "sent": {"type": "integer"},
                    "failed": {"type": "integer"},
                    "mean_ms": {"type": ["number", "null"]},
                },
            },
            "branches": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "label": {"type": "string"},
                        "steps": {"type": "array", "items": {"$ref": "#/components/schemas/Step"}},
                    },
                },
            },
        },
        "required": ["path", "kind", "describe"],
    }
    status = _json(
        "the route's status now",
        {
            "type": "object",
            "properties": {"id": {"type": "string"}, "status": {"type": "string"}},
            "required": ["id", "status"],
        },
    )
    inflight = {
        "type": "object",
        "properties": {
            "route": {"type": "string"},
            "inflight": {
                "type": "integer",
                "description": "exchanges in flight, completion callbacks included",
            },
            "exchanges": {
                "type": "array",
                "description": "the exchanges suspended mid-route, oldest first (at most 1000)",
                "items": {
                    "type": "object",
                    "properties": {
                        "exchange_id": {"type": "string"},
                        "message_id": {"type": ["string", "null"]},
                        "age_seconds": {"type": "number"},
                        "redelivery": {
                            "type": ["string", "null"],
                            "description": "the redelivery it waits for, if any",
                        },
                    },
                },
            },
        },
    }
    reload = {
        "type": "object",
        "properties": {
            "ok": {"type": "boolean"},
            "added": {"type": "array", "items": {"type": "string"}},
            "removed": {"type": "array", "items": {"type": "string"}},
            "changed": {"type": "array", "items": {"type": "string"}},
            "unchanged": {"type": "array", "items": {"type": "string"}},
            "aborted": {
                "type": "object",
                "additionalProperties": {"type": "integer"},
                "description": "per swapped route, exchanges aborted at the drain deadline "
                "(unacknowledged: their source redelivers them, possibly twice)",
            },
            "error": {"type": ["string", "null"]},
            "seconds": {"type": "number"},
        },
        "required": ["ok"],
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
            "/routes/{route_id}/inflight": {
                "get": {
                    "parameters": [_ROUTE_ID],
                    "responses": {
                        "200": _json("the exchanges in flight and their ages", inflight),
                        **_errors(404),
                    },
                }
            },
            "/routes/{route_id}/stop": _mutation(
                "stop the consumer, drain the exchanges in flight", status, 401, 403, 404, 500
            ),
            "/routes/{route_id}/start": _mutation(
                "start the route (a suspended one resumes)", status, 401, 403, 404, 500
            ),
            "/routes/{route_id}/suspend": _mutation(
                "stop intake, keep producers and connections (409 unless started)",
                status,
                401,
                403,
                404,
                409,
                500,
            ),
            "/routes/{route_id}/resume": _mutation(
                "take messages again (409 unless suspended)", status, 401, 403, 404, 409, 500
            ),
            "/routes/{route_id}/trigger": {
                "post": {
                    **mutation,
                    "summary": "run a timer or cron route now, once, in the background",
                    "responses": {
                        "202": _json(
                            "fired",
                            {
                                "type": "object",
                                "properties": {
                                    "id": {"type": "string"},
                                    "status": {"type": "string"},
                                    "exchange_id": {"type": "string"},
                                },
                            },
                        ),
                        **_errors(401, 403, 404, 409),
                    },
                }
            },
            "/reload": {
                "post": {
                    "security": [{"bearer": []}],
                    "summary": "re-import the route files; swap the changed routes (drained)",
                    "responses": {
                        "200": _json("reloaded: what changed", reload),
                        "422": _json("a route file is broken: nothing changed", reload),
                        "409": _json("not started by 'eip run' from route files", reload),
                        **_errors(401, 403),
                    },
                }
            },
        },
        "components": {
            "schemas": {"Route": route, "Step": step, "Failure": failure, "Error": _ERROR},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
