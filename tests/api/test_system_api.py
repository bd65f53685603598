"""Health, readiness, metrics and the OpenAPI document."""

from __future__ import annotations

import re
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from pydantic import ValidationError

from gateway.api import system
from gateway.api.app import create_app
from gateway.api.routes import ROUTES
from gateway.api.routing import Route
from gateway.schemas import PATH_PARAMETERS, path_parameters_model
from tests.api.conftest import Client, make_settings


async def test_health_and_ready_need_no_key(client: Client) -> None:
    for path in ("/healthz", "/readyz"):
        response = await client.get(path, headers={"Authorization": ""})
        assert response.status == 200, path


async def test_readyz_fails_when_database_is_unreachable(aiohttp_client, tmp_path) -> None:
    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path}/missing-dir/x.db")
    client: TestClient = await aiohttp_client(create_app(settings))  # type: ignore[type-arg]
    response = await client.get("/readyz")
    assert response.status == 503
    assert (await response.json())["database"] == "unreachable"


async def test_metrics_count_requests_by_route_and_status(client: Client) -> None:
    await client.get("/v1/users/someone/preferences")
    await client.get("/v1/notifications/missing")
    text = await (await client.get("/metrics")).text()
    route = "/v1/users/{user_id}/preferences"
    assert f'pushgate_http_requests_total{{method="GET",route="{route}",status="200"}} 1.0' in text
    assert 'route="/v1/notifications/{notification_id}",status="404"' in text
    assert "pushgate_http_request_duration_seconds_bucket" in text


async def test_openapi_describes_every_route(client: Client) -> None:
    document = await (await client.get("/openapi.json")).json()
    assert document["openapi"].startswith("3.1")
    for route in ROUTES:
        assert route.method.lower() in document["paths"][route.path], route.path
    post = document["paths"]["/v1/notifications"]["post"]
    schema_ref = post["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = document["components"]["schemas"][schema_ref.rsplit("/", 1)[1]]
    assert {"user_id", "tier", "category", "collapse_key", "expires_at"} <= set(
        schema["properties"]
    )
    assert document["paths"]["/healthz"]["get"]["security"] == []


async def test_openapi_path_parameters_state_the_rules_the_gateway_applies(client: Client) -> None:
    document = await (await client.get("/openapi.json")).json()
    declared: dict[str, dict[str, Any]] = {}
    for operations in document["paths"].values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "path":
                    declared[parameter["name"]] = parameter["schema"]
    assert set(declared) == set(PATH_PARAMETERS)
    assert declared["user_id"]["maxLength"] == 128
    assert declared["device_id"]["maxLength"] == declared["notification_id"]["maxLength"] == 36
    for name, schema in declared.items():
        model = path_parameters_model(f"/{{{name}}}")
        assert model is not None
        limit = schema["maxLength"]
        for sample in [
            "u1",
            "é-ü",
            "a b",
            "a\tb",
            "a\nb",
            "a\x00b",
            "\x85",
            "\u2028",
            "x" * limit,
            "x" * (limit + 1),
            "",
        ]:
            documented = schema["minLength"] <= len(sample) <= limit and bool(
                re.search(schema["pattern"], sample)
            )
            try:
                model.model_validate({name: sample})
                accepted = True
            except ValidationError:
                accepted = False
            assert documented == accepted, (name, sample)


async def test_openapi_declares_the_statuses_each_operation_can_answer(client: Client) -> None:
    paths = (await (await client.get("/openapi.json")).json())["paths"]
    assert "503" in paths["/readyz"]["get"]["responses"]
    assert "409" in paths["/v1/notifications/{notification_id}"]["delete"]["responses"]
    send = paths["/v1/notifications"]["post"]["responses"]
    assert {"400", "401", "403", "409", "413", "415", "422", "503"} <= set(send)
    problem = send["415"]["content"]["application/problem+json"]["schema"]
    assert problem["$ref"].endswith("/Problem")


def test_a_route_naming_an_undeclared_placeholder_does_not_load() -> None:
    with pytest.raises(ValueError, match="PATH_PARAMETERS"):
        Route("GET", "/v1/things/{thing_id}", system.healthz, "A thing")
