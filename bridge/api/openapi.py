"""/openapi.json: an OpenAPI 3.1 document built from the route table and its request models."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bridge.api.routes import Route

_BODY_METHODS = frozenset({"POST", "PATCH", "PUT"})
# Loose shapes of the objects in answers; their full schemas are Seam's (docs/api.md).
_OBJECT_KEYS = {
    "devices": "device", "device": "device", "access_code": "access_code",
    "access_codes": "access_code", "backup_access_code": "access_code",
    "generated_code": "generated_code", "events": "event", "event": "event",
    "action_attempt": "action_attempt", "action_attempts": "action_attempt",
    "pagination": "pagination",
    # Reservation automations (bridge/api/automations.py).
    "space": "space", "spaces": "space", "access_grant": "access_grant",
    "access_grants": "access_grant", "access_method": "access_method",
    "access_methods": "access_method", "automation_runs": "automation_run",
    # The customer portal (bridge/portal/web.py).
    "customer_portal": "customer_portal",
}
# Answer keys that are plain values, not objects (lockbridge's own routes).
_SCALAR_KEYS: dict[str, dict[str, Any]] = {
    "driver": {"type": "string"}, "open_for_s": {"type": "integer"},
    "automation_run_id": {"type": "string"},
}


def openapi_document(routes: list[Route]) -> dict[str, Any]:
    """The whole document."""
    paths: dict[str, Any] = {}
    for route in routes:
        schema = route.model.model_json_schema()
        operations: dict[str, Any] = {}
        for method in route.methods:
            operations[method.lower()] = _operation(route, method, schema)
        paths[route.path] = operations
    paths["/health"] = {"get": {
        "operationId": "health", "summary": "Is the bridge running", "security": [],
        "responses": {"200": {"description": "OK", "content": {"application/json": {
            "schema": {"type": "object", "required": ["ok"],
                       "properties": {"ok": {"type": "boolean"}}}}}}},
    }}
    return {
        "openapi": "3.1.0",
        "info": {"title": "lockbridge local API",
                 "version": "1",
                 "description": "Seam-compatible routes for the locks this bridge manages. "
                                "Differences from Seam are listed in docs/api.md."},
        "paths": paths,
        "components": {
            "securitySchemes": {"api_key": {"type": "http", "scheme": "bearer"}},
            "schemas": _component_schemas(),
        },
        "security": [{"api_key": []}],
    }


def _operation(route: Route, method: str, schema: dict[str, Any]) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": _operation_id(route.path, method),
        "summary": route.summary,
        "description": (route.model.__doc__ or "").strip(),
        "responses": _responses(route),
    }
    if method in _BODY_METHODS:
        operation["requestBody"] = {"required": True, "content": {
            "application/json": {"schema": _body_schema(schema)}}}
    else:
        operation["parameters"] = _query_parameters(schema)
    return operation


def _body_schema(schema: dict[str, Any]) -> dict[str, Any]:
    body = copy.deepcopy(schema)
    body.pop("title", None)
    body["additionalProperties"] = False
    for prop in body.get("properties", {}).values():
        prop.pop("title", None)
    return body


def _query_parameters(schema: dict[str, Any]) -> list[dict[str, Any]]:
    required = set(schema.get("required", []))
    out = []
    for name, prop in schema.get("properties", {}).items():
        param_schema = _without_null(prop)
        param: dict[str, Any] = {"name": name, "in": "query", "required": name in required,
                                 "schema": param_schema}
        if param_schema.get("type") == "array":
            param["style"] = "form"
            param["explode"] = True
        out.append(param)
    return out


def _without_null(prop: dict[str, Any]) -> dict[str, Any]:
    """A query string has no null: the schema of a nullable field without its null branch."""
    prop = copy.deepcopy(prop)
    prop.pop("title", None)
    prop.pop("default", None)
    options = prop.pop("anyOf", None)
    if options is None:
        return prop
    kept = [o for o in options if o.get("type") != "null"]
    if len(kept) == 1:
        return {**kept[0], **prop}
    return {**prop, "anyOf": kept}


def _responses(route: Route) -> dict[str, Any]:
    properties: dict[str, Any] = {"ok": {"type": "boolean", "const": True}}
    for key in route.response_keys:
        if key in _SCALAR_KEYS:
            properties[key] = _SCALAR_KEYS[key]
            continue
        ref = {"$ref": f"#/components/schemas/{_OBJECT_KEYS[key]}"}
        properties[key] = {"type": "array", "items": ref} if key.endswith("s") and \
            key not in ("access_code", "pagination") else ref
    error = {"description": "Error", "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/error_response"}}}}
    return {
        "200": {"description": "OK", "content": {"application/json": {"schema": {
            "type": "object", "properties": properties,
            "required": [*route.response_keys, "ok"]}}}},
        "400": {**error, "description": "Invalid input"},
        "401": {**error, "description": "Missing or wrong API key"},
        "404": {**error, "description": "No such device, code, event or attempt"},
        "409": {**error, "description": "Refused in the current state"},
    }


def _component_schemas() -> dict[str, Any]:
    loose = {"type": "object"}
    return {
        "device": {**loose, "required": ["device_id", "device_type", "properties"]},
        "access_code": {**loose, "required": ["access_code_id", "device_id", "status"]},
        "generated_code": {**loose, "required": ["device_id", "code"]},
        "event": {**loose, "required": ["event_id", "event_type", "occurred_at"]},
        "action_attempt": {**loose, "required": ["action_attempt_id", "action_type", "status"]},
        "space": {**loose, "required": ["space_id", "name"]},
        "access_grant": {**loose, "required": ["access_grant_id", "starts_at", "ends_at"]},
        "access_method": {**loose, "required": ["access_method_id", "mode", "is_issued"]},
        "automation_run": {**loose, "required": ["automation_run_id", "trigger"]},
        "customer_portal": {**loose, "required": ["url", "customer_key", "created_at",
                                                  "expires_at", "workspace_id"]},
        "pagination": {**loose, "required": ["has_next_page", "next_page_cursor",
                                             "next_page_url"]},
        "error_response": {
            "type": "object", "required": ["error", "ok"],
            "properties": {"ok": {"const": False}, "error": {
                "type": "object", "required": ["type", "message"],
                "properties": {"type": {"type": "string"}, "message": {"type": "string"},
                               "validation_errors": {"type": "object"},
                               "data": {"type": "object"}}}}},
    }


def _operation_id(path: str, method: str) -> str:
    words = [w for part in path.strip("/").split("/") for w in part.split("_")]
    return words[0] + "".join(w.capitalize() for w in words[1:]) + method.capitalize()
