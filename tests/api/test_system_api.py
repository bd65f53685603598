"""Health, readiness, metrics and the OpenAPI document."""

from __future__ import annotations

from aiohttp.test_utils import TestClient

from gateway.api.app import create_app
from gateway.api.routes import ROUTES
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
