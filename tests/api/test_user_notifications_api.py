"""``GET /v1/users/{user_id}/notifications``: newest first, keyset pages, a status filter, only
the apps the key may use, and the refusals, through the real app on both databases."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.api.app import create_app
from tests.api.conftest import (
    FULL_KEY,
    OTHER_APP_KEY,
    Client,
    FakeClock,
    auth,
    make_settings,
    register,
    sha,
)

SEND_ONLY_KEY = "send-only-key"


async def send(client: Client, **fields: Any) -> dict[str, Any]:
    body = {"user_id": "u1", "app": "demo", "tier": "transactional", "body": "x", **fields}
    response = await client.post("/v1/notifications", json=body)
    assert response.status == 202, await response.text()
    result: dict[str, Any] = await response.json()
    return result


async def page(
    client: Client, user_id: str = "u1", *, key: str = FULL_KEY, **query: Any
) -> dict[str, Any]:
    response = await client.get(
        f"/v1/users/{user_id}/notifications", params=query, headers=auth(key)
    )
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    return body


async def every_page(client: Client, **query: Any) -> list[list[str]]:
    """The ids of each page, following next_cursor to the end."""
    pages: list[list[str]] = []
    cursor = None
    while True:
        body = await page(client, **query, **({"cursor": cursor} if cursor else {}))
        pages.append([notification["id"] for notification in body["notifications"]])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 50, "the cursor does not advance"


async def test_newest_first_across_pages(client: Client, clock: FakeClock) -> None:
    await register(client)
    sent = []
    for index in range(7):
        sent.append(await send(client, body=str(index)))
        clock.advance(minutes=1)

    pages = await every_page(client, limit=3)

    assert [len(ids) for ids in pages] == [3, 3, 1]
    assert [i for ids in pages for i in ids] == [n["id"] for n in reversed(sent)]
    first = await page(client, limit=3)
    assert first["notifications"][0]["id"] == sent[-1]["id"]
    assert first["notifications"][0]["decision"]["rule"] == "send"
    # a page that ends exactly at the last notification says so
    assert (await page(client, limit=7))["next_cursor"] is None
    assert (await page(client))["next_cursor"] is None  # the default page holds 50


async def test_notifications_created_in_the_same_instant_page_by_id(client: Client) -> None:
    """A batch stores its notifications with one creation time: the id orders them, and a
    page boundary inside the batch loses and repeats nothing."""
    await register(client)
    response = await client.post(
        "/v1/notifications/batch",
        json={
            "notifications": [
                {"user_id": "u1", "app": "demo", "tier": "transactional", "body": str(i)}
                for i in range(5)
            ]
        },
    )
    ids = [result["id"] for result in (await response.json())["results"]]

    pages = await every_page(client, limit=2)

    assert [len(p) for p in pages] == [2, 2, 1]
    assert [i for p in pages for i in p] == sorted(ids, reverse=True)


async def test_filter_by_status(client: Client, clock: FakeClock) -> None:
    await register(client)
    queued = await send(client)
    deferred = []
    for _ in range(3):
        clock.advance(seconds=1)
        deferred.append(await send(client, send_at=clock.now.replace(hour=20).isoformat()))
    dropped = await send(client, user_id="u1", tier="promotional")  # not opted in
    assert dropped["status"] == "dropped"

    pages = await every_page(client, status="deferred", limit=2)
    assert [i for p in pages for i in p] == [n["id"] for n in reversed(deferred)]
    assert [n["id"] for n in (await page(client, status="queued"))["notifications"]] == [
        queued["id"]
    ]
    assert (await page(client, status="sent"))["notifications"] == []


async def test_a_key_limited_to_an_app_sees_only_that_apps_notifications(
    client: Client,
) -> None:
    await register(client)
    await register(client, app="other", token="f" * 64)
    mine = await send(client, app="other")
    await send(client, app="demo")

    limited = await page(client, key=OTHER_APP_KEY)
    assert [n["id"] for n in limited["notifications"]] == [mine["id"]]
    assert len((await page(client))["notifications"]) == 2
    # the cursor of a full key's page does not reveal the other app's rows either
    first = await page(client, limit=1)
    rest = await page(client, key=OTHER_APP_KEY, cursor=first["next_cursor"])
    assert all(n["app"] == "other" for n in rest["notifications"])


async def test_another_users_notifications_are_not_listed(client: Client) -> None:
    await register(client)
    await register(client, user_id="u2", token="9" * 64)
    await send(client, user_id="u2")
    assert (await page(client, "u1"))["notifications"] == []
    assert len((await page(client, "u2"))["notifications"]) == 1


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"cursor": "MjAyNi0wNi0xNVQxMjowMDowMA"}, "cursor"),  # base64 of a naive timestamp
        ({"status": "lost"}, "status"),
        ({"limit": "0"}, "limit"),
        ({"limit": "201"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"sort": "oldest"}, "sort"),
    ],
)
async def test_invalid_queries_are_refused(
    client: Client, query: dict[str, str], field: str
) -> None:
    response = await client.get("/v1/users/u1/notifications", params=query)
    assert response.status == 422
    body = await response.json()
    assert body["code"] == "invalid_request"
    assert [error["field"] for error in body["errors"]] == [field]


async def test_a_user_id_with_whitespace_is_refused(client: Client) -> None:
    response = await client.get("/v1/users/a%20b/notifications")
    assert response.status == 422
    assert (await response.json())["code"] == "invalid_request"


async def test_the_limit_goes_up_to_200(client: Client) -> None:
    assert (await page(client, limit=200))["notifications"] == []


async def test_listing_needs_the_users_read_scope(
    engine: AsyncEngine,
    aiohttp_client: Callable[..., Awaitable[Client]],
    clock: FakeClock,
    database_url: str,
) -> None:
    settings = make_settings(
        database_url,
        api_keys=[
            {
                "name": "sender",
                "key_sha256": sha(SEND_ONLY_KEY),
                "allowed_tiers": ["transactional"],
            }
        ],
    )
    client = await aiohttp_client(create_app(settings, engine=engine, clock=clock))
    response = await client.get("/v1/users/u1/notifications", headers=auth(SEND_ONLY_KEY))
    assert response.status == 403
    body = await response.json()
    assert body["code"] == "scope_required" and "users:read" in body["detail"]


async def test_the_openapi_document_lists_the_query_parameters(client: Client) -> None:
    document = await (await client.get("/openapi.json")).json()
    operation = document["paths"]["/v1/users/{user_id}/notifications"]["get"]
    parameters = {p["name"]: p for p in operation["parameters"]}
    assert parameters.keys() == {"user_id", "status", "limit", "cursor"}
    assert parameters["limit"]["in"] == "query"
    assert parameters["limit"]["schema"]["maximum"] == 200
    assert "deferred" in str(parameters["status"]["schema"])
