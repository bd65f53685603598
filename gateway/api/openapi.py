"""OpenAPI 3.1, generated from the route table and the pydantic models that validate requests.

Every status an operation can answer is declared, with its body: the property test
(``tests/api/test_openapi_properties.py``) holds the running gateway to this document.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from gateway.api.problems import PROBLEM_JSON
from gateway.api.routing import IDEMPOTENCY_HEADER, Route
from gateway.schemas import Problem
from gateway.services.idempotency import MAX_KEY_LENGTH

_HEADER_SCHEMAS: dict[str, dict[str, Any]] = {
    IDEMPOTENCY_HEADER: {
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_KEY_LENGTH,
        "description": f"1-{MAX_KEY_LENGTH} printable characters, scoped to the calling key",
    },
}


def error_statuses(route: Route) -> list[int]:
    """The problem statuses ``route`` can answer, from what it reads: 401/403 for a key, 503
    when the gateway is shutting down or its database is away, 422 for any input it checks,
    400/413/415 for a body, 404 for an id in its path, 409 for a reused idempotency key."""
    if route.public:
        return []
    statuses = {401, 403, 503}
    if route.request_model is not None:
        statuses |= {400, 413, 415, 422}
    if route.path_model is not None:
        statuses |= {404, 422}
    if route.query_names or route.headers:
        statuses.add(422)
    if IDEMPOTENCY_HEADER in route.headers:
        statuses.add(409)
    return sorted(statuses)


def _path_parameters(route: Route) -> list[dict[str, Any]]:
    if route.path_model is None:
        return []
    properties = route.path_model.model_json_schema()["properties"]
    return [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": {key: value for key, value in schema.items() if key != "title"},
        }
        for name, schema in properties.items()
    ]


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    """One query parameter per field of ``model``, each with its own schema."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    required = set(schema.get("required", []))
    parameters = []
    for name, field_schema in schema["properties"].items():
        parameter = {"name": name, "in": "query", "required": name in required}
        description = field_schema.pop("description", None)
        if description is not None:
            parameter["description"] = description
        parameter["schema"] = field_schema
        parameters.append(parameter)
    return parameters


def build_openapi(routes: Iterable[Route]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``routes``."""
    routes = list(routes)
    models: set[type[BaseModel]] = {Problem}
    for route in routes:
        if route.request_model is not None:
            models.add(route.request_model)
        if route.query_model is not None:
            models.add(route.query_model)  # its enums' schemas are referenced from components
        models.update(model for model in route.responses.values() if model is not None)
    ordered = sorted(models, key=lambda model: model.__name__)
    refs, schema = models_json_schema(
        [(model, "validation") for model in ordered],
        ref_template="#/components/schemas/{model}",
    )
    ref = {model: dict(refs[(model, "validation")]) for model in ordered}

    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        operation: dict[str, Any] = {
            "summary": route.summary,
            "operationId": route.handler.__name__,
            "responses": {},
        }
        if not route.public:
            # which API key scopes may call it (any one of them; none listed: any valid key)
            operation["x-scopes"] = [scope.value for scope in route.scopes]
            needed = " or ".join(f"`{scope.value}`" for scope in route.scopes)
            operation["description"] = (
                f"Needs an API key with the scope {needed}." if needed else "Needs any API key."
            )
        parameters = _path_parameters(route)
        if route.query_model is not None:
            parameters += _query_parameters(route.query_model)
        parameters += [
            {
                "name": header,
                "in": "header",
                "required": False,
                "schema": _HEADER_SCHEMAS.get(header, {"type": "string"}),
            }
            for header in route.headers
        ]
        if parameters:
            operation["parameters"] = parameters
        if route.public:
            operation["security"] = []
        if route.request_model is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": ref[route.request_model]}},
            }
        for status, model in (route.responses or {200: None}).items():
            response: dict[str, Any] = {"description": str(status)}
            if model is Problem:
                response["content"] = {PROBLEM_JSON: {"schema": ref[Problem]}}
            elif model is not None:
                response["content"] = {"application/json": {"schema": ref[model]}}
            elif status != 204:
                response["content"] = {route.content_type: {}}
            operation["responses"][str(status)] = response
        for status in error_statuses(route):
            operation["responses"].setdefault(
                str(status),
                {"description": "problem", "content": {PROBLEM_JSON: {"schema": ref[Problem]}}},
            )
        paths.setdefault(route.path, {})[route.method.lower()] = operation

    return {
        "openapi": "3.1.0",
        "info": {
            "title": "pushgate",
            "version": "1",
            "description": "Push delivery gateway: tiers, quiet hours in the user's time zone, "
            "and a self-cleaning device-token registry over APNs and FCM.",
        },
        "paths": paths,
        "components": {
            "schemas": schema.get("$defs", {}),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }
