"""Every kind of bad input gets a clear 4xx problem+json and stores nothing."""

from __future__ import annotations

import base64
import gzip
import io
import json
import logging
import zlib
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp import ClientResponse
from sqlalchemy.ext.asyncio import AsyncEngine
from yarl import URL

from tests.api.conftest import (
    IOS_TOKEN,
    OTHER_APP_KEY,
    TX_KEY,
    Client,
    assert_nothing_stored,
    auth,
    register,
    row_count,
)

NOTE = {"user_id": "u1", "app": "demo", "tier": "transactional", "body": "x"}
DEVICE = {"user_id": "u1", "app": "demo", "platform": "ios", "token": IOS_TOKEN}


async def assert_problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status == status, await response.text()
    assert response.content_type == "application/problem+json"
    body: dict[str, Any] = await response.json()
    assert body["status"] == status
    assert body["code"] == code
    assert body["title"] and body["detail"]
    return body


@pytest.mark.parametrize(
    ("payload", "code", "field"),
    [
        ({**DEVICE, "timezone": "Mars/Olympus"}, "invalid_timezone", "timezone"),
        ({**DEVICE, "timezone": "+05:00"}, "invalid_timezone", "timezone"),
        ({**DEVICE, "token": "zz" * 32}, "invalid_token", None),
        ({**DEVICE, "token": "ab" * 10}, "invalid_token", None),
        ({**DEVICE, "platform": "android", "token": ""}, "invalid_token", None),
        ({**DEVICE, "platform": "android", "token": "has spaces"}, "invalid_token", None),
        ({**DEVICE, "platform": "windows"}, "invalid_request", "platform"),
        ({**DEVICE, "user_id": 42}, "invalid_request", "user_id"),
        ({**DEVICE, "permission": "maybe"}, "invalid_request", "permission"),
        ({**DEVICE, "app": "nope"}, "unknown_app", None),
        ({**DEVICE, "surprise": 1}, "invalid_request", "surprise"),
    ],
)
async def test_bad_device_registration(
    client: Client, engine: AsyncEngine, payload: dict[str, Any], code: str, field: str | None
) -> None:
    body = await assert_problem(await client.post("/v1/devices", json=payload), 422, code)
    if field is not None:
        assert field in [error["field"] for error in body["errors"]]
    assert await row_count(engine, "devices") == 0


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        ({**NOTE, "app": "nope"}, 422, "unknown_app"),
        ({**NOTE, "category": "order_shipped", "tier": "promotional"}, 422, "tier_conflict"),
        ({**NOTE, "expires_at": "2020-01-01T00:00:00+00:00"}, 422, "invalid_request"),
        ({**NOTE, "expires_at": "2030-01-01T00:00:00"}, 422, "invalid_request"),  # no offset
        ({**NOTE, "ttl_seconds": 60, "expires_at": "2030-01-01T00:00:00Z"}, 422, "invalid_request"),
        ({**NOTE, "tier": "urgent"}, 422, "invalid_request"),
        ({**NOTE, "badge": "one"}, 422, "invalid_request"),
        ({**NOTE, "data": ["not", "an", "object"]}, 422, "invalid_request"),
        ({"user_id": "u1", "app": "demo", "tier": "transactional"}, 422, "invalid_request"),
        ({"app": "demo", "body": "x"}, 422, "invalid_request"),
        ({**NOTE, "title": "t" * 5000}, 422, "invalid_request"),
    ],
)
async def test_bad_notification(
    client: Client, engine: AsyncEngine, payload: dict[str, Any], status: int, code: str
) -> None:
    await register(client)
    await assert_problem(await client.post("/v1/notifications", json=payload), status, code)
    assert await row_count(engine, "notifications") == 0


async def test_tier_the_key_may_not_send(client: Client, engine: AsyncEngine) -> None:
    await register(client)
    response = await client.post(
        "/v1/notifications", json={**NOTE, "tier": "promotional"}, headers=auth(TX_KEY)
    )
    await assert_problem(response, 403, "tier_not_allowed")
    # a category mapping to a forbidden tier is refused the same way: no dodging
    response = await client.post(
        "/v1/notifications",
        json={**NOTE, "tier": None, "category": "weekly_sale"},
        headers=auth(TX_KEY),
    )
    await assert_problem(response, 403, "tier_not_allowed")
    assert await row_count(engine, "notifications") == 0


async def test_app_the_key_may_not_use(client: Client) -> None:
    response = await client.post("/v1/notifications", json=NOTE, headers=auth(OTHER_APP_KEY))
    await assert_problem(response, 403, "app_not_allowed")


async def test_malformed_json(client: Client, engine: AsyncEngine) -> None:
    response = await client.post(
        "/v1/notifications", data=b'{"user_id": ', headers={"Content-Type": "application/json"}
    )
    await assert_problem(response, 400, "invalid_json")
    response = await client.post("/v1/notifications", json=[1, 2])
    await assert_problem(response, 422, "invalid_request")
    assert await row_count(engine, "notifications") == 0


@pytest.mark.parametrize("header", [None, "Bearer wrong", "Basic abc", "Bearer "])
async def test_missing_or_wrong_key(client: Client, header: str | None) -> None:
    headers = {"Authorization": header} if header is not None else {"Authorization": ""}
    for method, path in [
        ("POST", "/v1/notifications"),
        ("GET", "/v1/users/u1/devices"),
        ("GET", "/metrics"),
        ("GET", "/openapi.json"),
    ]:
        response = await client.request(method, path, json=NOTE, headers=headers)
        await assert_problem(response, 401, "unauthorized")


async def test_oversized_body(client: Client, engine: AsyncEngine) -> None:
    big = json.dumps({**NOTE, "data": {"blob": "x" * 2_000_000}}).encode()
    response = await client.post(
        "/v1/notifications", data=io.BytesIO(big), headers={"Content-Type": "application/json"}
    )
    await assert_problem(response, 413, "payload_too_large")
    assert await row_count(engine, "notifications") == 0


async def test_batch_over_limit(client: Client, engine: AsyncEngine) -> None:
    response = await client.post("/v1/notifications/batch", json={"notifications": [NOTE] * 501})
    body = await assert_problem(response, 422, "invalid_request")
    assert "501" in body["detail"]
    assert await row_count(engine, "notifications") == 0


async def test_reused_idempotency_key_with_other_body(client: Client, engine: AsyncEngine) -> None:
    await register(client)
    headers = {"Idempotency-Key": "k1"}
    assert (await client.post("/v1/notifications", json=NOTE, headers=headers)).status == 202
    response = await client.post(
        "/v1/notifications", json={**NOTE, "body": "different"}, headers=headers
    )
    await assert_problem(response, 409, "idempotency_key_reused")
    assert await row_count(engine, "notifications") == 1


async def test_bad_quiet_hours_and_timezone_preferences(
    client: Client, engine: AsyncEngine
) -> None:
    response = await client.put(
        "/v1/users/u1/preferences", json={"quiet_hours": {"start": "25:00", "end": "08:00"}}
    )
    body = await assert_problem(response, 422, "invalid_request")
    assert body["errors"][0]["field"] == "quiet_hours.start"
    response = await client.patch("/v1/users/u1/preferences", json={"timezone": "+05:00"})
    await assert_problem(response, 422, "invalid_timezone")
    assert await row_count(engine, "preferences") == 0


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/notifications/0b9a7c1e-0000-0000-0000-000000000000"),
        ("DELETE", "/v1/notifications/nope"),
        ("DELETE", "/v1/devices/nope"),
        ("GET", "/v1/nothing-here"),
    ],
)
async def test_unknown_ids(client: Client, method: str, path: str) -> None:
    await assert_problem(await client.request(method, path), 404, "not_found")


async def test_payload_over_the_apns_limit_is_refused_at_acceptance(
    client: Client, engine: AsyncEngine
) -> None:
    await register(client)
    # each field is within its own limit, together they exceed APNs's 4,096 bytes
    response = await client.post(
        "/v1/notifications", json={**NOTE, "title": "t" * 1000, "body": "b" * 4000}
    )
    body = await assert_problem(response, 413, "payload_too_large")
    assert "APNs" in body["detail"]
    assert await row_count(engine, "notifications") == 0


@pytest.mark.parametrize("key", ["aps", "from", "google.c.a.e", "gcm.n.e", "message_type"])
async def test_reserved_data_keys_are_refused(
    client: Client, engine: AsyncEngine, key: str
) -> None:
    await register(client)
    response = await client.post("/v1/notifications", json={**NOTE, "data": {key: "x"}})
    body = await assert_problem(response, 422, "invalid_request")
    assert body["errors"][0]["field"] == f"data.{key}"
    assert await row_count(engine, "notifications") == 0


# --- the input boundary: what no field can take is refused before it reaches a database ------


def fields_of(body: dict[str, Any]) -> list[str]:
    return [error["field"] for error in body["errors"]]


async def post_text(client: Client, path: str, text: str | bytes, **headers: str) -> ClientResponse:
    data = text.encode() if isinstance(text, str) else text
    return await client.post(
        path, data=data, headers={"Content-Type": "application/json", **headers}
    )


def nested(depth: int) -> dict[str, Any]:
    """A JSON object ``depth`` levels deep: ``{}`` is one."""
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


@pytest.mark.parametrize(
    ("path", "payload", "field"),
    [
        ("/v1/notifications", {**NOTE, "title": "a\u0000b"}, "title"),
        ("/v1/notifications", {**NOTE, "body": "\u0000"}, "body"),
        ("/v1/notifications", {**NOTE, "user_id": "u\u0000"}, "user_id"),
        ("/v1/notifications", {**NOTE, "category": "c\u0000"}, "category"),
        ("/v1/notifications", {**NOTE, "data": {"k": "v\u0000"}}, "data.k"),
        ("/v1/notifications", {**NOTE, "data": {"k\u0000": "v"}}, "data"),
        ("/v1/notifications", {**NOTE, "data": {"l": ["ok", {"d": "\u0000"}]}}, "data.l.1.d"),
        ("/v1/notifications", {**NOTE, "title": "half a pair \ud83d"}, "title"),
        ("/v1/notifications", {**NOTE, "data": {"k": "\udc00"}}, "data.k"),
        (
            "/v1/notifications/batch",
            {"notifications": [NOTE, {**NOTE, "sound": "\u0000"}]},
            "notifications.1.sound",
        ),
        ("/v1/devices", {**DEVICE, "locale": "en\u0000"}, "locale"),
        ("/v1/devices", {**DEVICE, "user_id": "\u0000"}, "user_id"),
    ],
)
async def test_nul_and_lone_surrogates_are_refused_in_any_string(
    client: Client, engine: AsyncEngine, path: str, payload: dict[str, Any], field: str
) -> None:
    # json= escapes them as \u0000 and \ud83d, as any JSON encoder must
    body = await assert_problem(await client.post(path, json=payload), 422, "invalid_request")
    assert fields_of(body) == [field]
    await assert_nothing_stored(engine)


async def test_nul_in_a_preference_is_refused(client: Client, engine: AsyncEngine) -> None:
    response = await client.patch("/v1/users/u1/preferences", json={"timezone": "UTC\u0000"})
    body = await assert_problem(response, 422, "invalid_request")
    assert fields_of(body) == ["timezone"]
    await assert_nothing_stored(engine)


async def test_escapes_that_are_not_nul_or_lone_surrogates_are_kept(
    client: Client, engine: AsyncEngine
) -> None:
    # an emoji escaped as a surrogate pair, and a backslash followed by "u0000"
    title = "🎉 \\u0000 \\ud800"
    response = await client.post("/v1/notifications", json={**NOTE, "title": title})
    assert response.status == 202, await response.text()
    async with engine.connect() as connection:
        stored = await connection.execute(sa.text("SELECT title FROM notifications"))
        assert stored.scalar_one() == title


def note_with(field: str, literal: str) -> str:
    """A notification's JSON text with ``field`` set to the JSON ``literal`` as written."""
    return '{"user_id": "u1", "app": "demo", "body": "x", "%s": %s}' % (field, literal)  # noqa: UP031


@pytest.mark.parametrize(
    ("text", "status", "code"),
    [
        # Python refuses to convert an integer of over 4,300 digits (it raised ValueError)
        (note_with("data", '{"n": ' + "1" * 5000 + "}"), 422, "invalid_request"),
        (note_with("ttl_seconds", "6" * 5000), 422, "invalid_request"),
        (note_with("data", '{"n": ' + "9" * 33 + "}"), 422, "invalid_request"),
        (note_with("data", '{"n": 0.' + "1" * 40 + "}"), 422, "invalid_request"),
        (note_with("data", '{"n": 1e400}'), 422, "invalid_request"),  # overflows to inf
        (note_with("data", '{"n": -1e400}'), 422, "invalid_request"),
        (note_with("data", '{"n": NaN}'), 400, "invalid_json"),
        (note_with("data", '{"n": Infinity}'), 400, "invalid_json"),
        (note_with("data", '{"n": -Infinity}'), 400, "invalid_json"),
        # nested far beyond what the parser follows (it raised RecursionError)
        (note_with("data", "[" * 5000 + "]" * 5000), 400, "invalid_json"),
        ("[" * 5000 + "]" * 5000, 400, "invalid_json"),
        (b'{"user_id": "u1", "app": "demo", "body": "caf\xe9"}', 400, "invalid_json"),
    ],
)
async def test_numbers_depth_and_encoding_no_field_can_take(
    client: Client, engine: AsyncEngine, text: str | bytes, status: int, code: str
) -> None:
    await assert_problem(await post_text(client, "/v1/notifications", text), status, code)
    await assert_nothing_stored(engine)


async def test_numbers_as_long_as_a_field_can_use_are_taken(client: Client) -> None:
    text = note_with("data", '{"n": ' + "9" * 32 + ', "f": 1.7976931348623157e308}')
    response = await post_text(client, "/v1/notifications", text)
    assert response.status == 202, await response.text()


async def test_data_may_nest_32_levels_and_no_deeper(client: Client, engine: AsyncEngine) -> None:
    response = await client.post("/v1/notifications", json={**NOTE, "data": nested(32)})
    assert response.status == 202, await response.text()
    for depth in (33, 500):
        response = await client.post("/v1/notifications", json={**NOTE, "data": nested(depth)})
        body = await assert_problem(response, 422, "invalid_request")
        assert fields_of(body) == ["data"]
    response = await client.post(
        "/v1/notifications/batch", json={"notifications": [{**NOTE, "data": nested(200)}]}
    )
    body = await assert_problem(response, 422, "invalid_request")
    assert fields_of(body) == ["notifications.0"]
    assert await row_count(engine, "notifications") == 1


@pytest.mark.parametrize(
    "expires_at",
    [
        "0001-01-01T00:00:00+14:00",  # before year 1 in UTC: converting it overflowed
        "9999-12-31T23:59:59-14:00",  # after year 9999 in UTC
        "1999-12-31T23:59:59Z",
        "1900000000",  # a string of digits, which pydantic alone reads as seconds since 1970
        1900000000,
        True,
        "2030-01-01",
    ],
)
async def test_timestamps_out_of_range_or_of_the_wrong_type(
    client: Client, engine: AsyncEngine, expires_at: Any
) -> None:
    response = await client.post("/v1/notifications", json={**NOTE, "expires_at": expires_at})
    body = await assert_problem(response, 422, "invalid_request")
    assert fields_of(body) == ["expires_at"]
    await assert_nothing_stored(engine)


async def test_the_latest_representable_expiry_is_taken(client: Client) -> None:
    response = await client.post(
        "/v1/notifications", json={**NOTE, "expires_at": "9999-12-31T23:59:59.999999Z"}
    )
    assert response.status == 202, await response.text()
    assert (await response.json())["expires_at"].startswith("9999-12-31T23:59:59.999999")


@pytest.mark.parametrize(
    ("endpoint", "payload", "field"),
    [
        ("PATCH /v1/users/u1/preferences", {"promotional": "yes"}, "promotional"),
        ("PATCH /v1/users/u1/preferences", {"promotional": 1}, "promotional"),
        ("PUT /v1/users/u1/preferences", {"behavioral": "true"}, "behavioral"),
        ("PUT /v1/users/u1/preferences", {"behavioral": 0}, "behavioral"),
        ("POST /v1/notifications", {**NOTE, "ttl_seconds": "60"}, "ttl_seconds"),
        ("POST /v1/notifications", {**NOTE, "ttl_seconds": True}, "ttl_seconds"),
        ("POST /v1/notifications", {**NOTE, "ttl_seconds": 60.0}, "ttl_seconds"),
        ("POST /v1/notifications", {**NOTE, "badge": "1"}, "badge"),
        ("POST /v1/notifications", {**NOTE, "badge": False}, "badge"),
        ("POST /v1/notifications", {**NOTE, "user_id": 7}, "user_id"),
        (
            "PATCH /v1/users/u1/preferences",
            {"quiet_hours": {"start": "22:00\n", "end": "08:00"}},
            "quiet_hours.start",
        ),
        (
            "PATCH /v1/users/u1/preferences",
            {"quiet_hours": {"start": "22:00", "end": "\u0660\u0668:\u0660\u0660"}},
            "quiet_hours.end",
        ),
        ("POST /v1/notifications", {**NOTE, "user_id": "u1\n"}, "user_id"),
        ("POST /v1/devices", {**DEVICE, "user_id": "u\u00851"}, "user_id"),
        ("POST /v1/devices", {**DEVICE, "user_id": "u" * 129}, "user_id"),
        ("POST /v1/devices", {**DEVICE, "locale": "en\n"}, "locale"),
    ],
)
async def test_loose_types_and_trailing_newlines_are_refused(
    client: Client, engine: AsyncEngine, endpoint: str, payload: dict[str, Any], field: str
) -> None:
    method, path = endpoint.split(" ")
    response = await client.request(method, path, json=payload)
    body = await assert_problem(response, 422, "invalid_request")
    assert fields_of(body) == [field]
    await assert_nothing_stored(engine)


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({**DEVICE, "token": IOS_TOKEN + "\n"}, "invalid_token"),
        ({**DEVICE, "platform": "android", "token": "fcm_token\n"}, "invalid_token"),
        ({**DEVICE, "timezone": "Europe/Paris\n"}, "invalid_timezone"),
    ],
)
async def test_trailing_newlines_in_tokens_and_zones_are_refused(
    client: Client, engine: AsyncEngine, payload: dict[str, Any], code: str
) -> None:
    await assert_problem(await client.post("/v1/devices", json=payload), 422, code)
    await assert_nothing_stored(engine)


@pytest.mark.parametrize(
    ("method", "path", "field"),
    [
        ("GET", "/v1/users/" + "u" * 5000 + "/devices", "user_id"),
        ("PUT", "/v1/users/" + "u" * 5000 + "/preferences", "user_id"),
        ("PATCH", "/v1/users/" + "u" * 129 + "/preferences", "user_id"),
        ("DELETE", "/v1/users/" + "u" * 129, "user_id"),
        ("GET", "/v1/users/a%00b/preferences", "user_id"),
        ("PUT", "/v1/users/a%00b/preferences", "user_id"),
        ("GET", "/v1/users/a%20b/preferences/history", "user_id"),
        ("DELETE", "/v1/users/a%09b", "user_id"),
        ("DELETE", "/v1/devices/a%00b", "device_id"),
        ("DELETE", "/v1/devices/" + "d" * 37, "device_id"),
        ("GET", "/v1/notifications/a%00b", "notification_id"),
        ("GET", "/v1/notifications/a%0Ab", "notification_id"),
        ("DELETE", "/v1/notifications/" + "n" * 5000, "notification_id"),
    ],
)
async def test_malformed_ids_in_paths_are_refused(
    client: Client, engine: AsyncEngine, method: str, path: str, field: str
) -> None:
    response = await client.request(method, URL(path, encoded=True), json={})
    body = await assert_problem(response, 422, "invalid_request")
    assert fields_of(body) == [field]
    await assert_nothing_stored(engine)


async def test_a_newline_in_a_path_user_id_never_reaches_a_log_line(
    client: Client, engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    user = "alice%0A2026-06-15%20CRITICAL%20forged"
    for method, path in [
        ("GET", f"/v1/users/{user}/devices"),
        ("PUT", f"/v1/users/{user}/preferences"),
        ("DELETE", f"/v1/users/{user}"),
    ]:
        response = await client.request(method, URL(path, encoded=True), json={})
        body = await assert_problem(response, 422, "invalid_request")
        assert fields_of(body) == ["user_id"]
        assert "forged" not in body["detail"]
    assert not [record for record in caplog.records if "\n" in record.getMessage()]
    await assert_nothing_stored(engine)


@pytest.mark.parametrize(
    "query",
    [{"cursor": "a\u0000b"}, {"limit": "1\u0000"}],
)
async def test_nul_in_a_query_parameter_is_refused(client: Client, query: dict[str, str]) -> None:
    response = await client.get("/v1/users/u1/preferences/history", params=query)
    body = await assert_problem(response, 422, "invalid_request")
    assert fields_of(body) == list(query)


def forged_cursor(value: Any) -> str:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    ids=["year-1", "text-id", "nul-id", "huge-id", "bool-id", "deep"],
    argvalues=[
        forged_cursor(["0001-01-01T00:00:00+14:00", 1]),  # not representable in UTC
        forged_cursor(["2026-01-01T00:00:00+00:00", "a string where an integer id goes"]),
        forged_cursor(["2026-01-01T00:00:00+00:00", "\u0000"]),
        forged_cursor(["2026-01-01T00:00:00+00:00", 10**30]),  # beyond a 64-bit column
        forged_cursor(["2026-01-01T00:00:00+00:00", True]),
        forged_cursor(b"[" * 3000 + b"]" * 3000),
    ],
)
async def test_forged_cursors_are_refused(client: Client, cursor: str) -> None:
    response = await client.get("/v1/users/u1/preferences/history", params={"cursor": cursor})
    body = await assert_problem(response, 422, "invalid_request")
    assert fields_of(body) == ["cursor"]


@pytest.mark.parametrize(
    ("encoding", "body", "expected"),
    ids=["not-gzip", "not-deflate", "br", "zstd", "compress", "gzip-twice"],
    argvalues=[
        ("gzip", json.dumps(NOTE).encode(), (400, "bad_request")),  # says gzip, is not
        ("deflate", b"not deflate at all", (400, "bad_request")),
        ("br", b"\x0b\x02\x80", (415, "unsupported_encoding")),
        ("zstd", b"\x28\xb5\x2f\xfd", (415, "unsupported_encoding")),
        ("compress", b"x", (415, "unsupported_encoding")),
        (
            "gzip, gzip",
            gzip.compress(gzip.compress(json.dumps(NOTE).encode())),
            (415, "unsupported_encoding"),
        ),
    ],
)
async def test_bodies_in_an_encoding_the_gateway_does_not_read(
    client: Client, engine: AsyncEngine, encoding: str, body: bytes, expected: tuple[int, str]
) -> None:
    response = await post_text(client, "/v1/notifications", body, **{"Content-Encoding": encoding})
    await assert_problem(response, *expected)
    await assert_nothing_stored(engine)


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [("gzip", gzip.compress), ("deflate", zlib.compress), ("identity", bytes)],
)
async def test_bodies_in_gzip_or_deflate_are_read(
    client: Client, encoding: str, compress: Callable[[bytes], bytes]
) -> None:
    body = compress(json.dumps(NOTE).encode())
    response = await post_text(client, "/v1/notifications", body, **{"Content-Encoding": encoding})
    assert response.status == 202, await response.text()
