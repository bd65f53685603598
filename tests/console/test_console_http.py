"""The console over HTTP on both databases: signing in and out, the session cookie, expiry,
app limits, the seeded figures on each page, and malformed input answered as a page."""

from __future__ import annotations

import hashlib
from http.cookies import SimpleCookie

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.console_traffic import LOOKUP_USER, KnownTraffic
from tests.api.conftest import FakeClock, auth
from tests.console.conftest import (
    DEMO_READER_KEY,
    READER_KEY,
    SENDER_KEY,
    Client,
    cell,
    page,
    sign_in,
)


def step(text: str, name: str) -> str:
    return cell(text.split(f'<tr data-step="{name}">')[1], "<td")


PAGES = ("deferred", "deliveries", "tokens", "funnel", "users")


def session_cookie(response: object) -> SimpleCookie:
    cookie: SimpleCookie = SimpleCookie()
    for header in response.headers.getall("Set-Cookie", []):  # type: ignore[attr-defined]
        cookie.load(header)
    return cookie


# -- signing in and out ------------------------------------------------------------------------


async def test_pages_redirect_to_sign_in_without_a_session(console: Client) -> None:
    for name in ("", *PAGES):
        response = await console.get(f"/console/{name}".rstrip("/"), allow_redirects=False)
        assert response.status == 303
        assert response.headers["Location"] == "/console/login"
    # an API key in the Authorization header does not open the console
    response = await console.get(
        "/console/deferred", headers=auth(READER_KEY), allow_redirects=False
    )
    assert response.status == 303


async def test_sign_in_sets_a_strict_http_only_expiring_cookie(
    console: Client, engine: AsyncEngine
) -> None:
    form = await page(console, "/console/login")
    assert 'type="password" name="key"' in form
    response = await sign_in(console)
    assert response.headers["Location"] == "/console/deferred"
    morsel = session_cookie(response)["pushgate_console"]
    assert morsel["httponly"] is True
    assert morsel["samesite"] == "Strict"
    assert morsel["path"] == "/console"
    assert int(morsel["max-age"]) == 8 * 3600
    assert not morsel["secure"]  # plain HTTP here; over TLS it is Secure
    token = morsel.value
    assert READER_KEY not in token
    # the server keeps only the token's digest
    async with engine.connect() as connection:
        stored = (
            await connection.execute(sa.text("SELECT token_sha256, key_name FROM console_sessions"))
        ).all()
    assert stored == [(hashlib.sha256(token.encode()).hexdigest(), "reader")]
    text = await page(console, "/console/deferred")
    assert READER_KEY not in text
    assert "key <strong>reader</strong>" in text


async def test_a_bad_key_or_one_without_users_read_is_refused_plainly(console: Client) -> None:
    response = await console.post("/console/login", data={"key": "nope"}, allow_redirects=False)
    assert response.status == 401
    assert "that API key is not valid" in await response.text()
    response = await console.post("/console/login", data={"key": SENDER_KEY})
    assert response.status == 403
    text = await response.text()
    assert "lacks the scope &#39;users:read&#39; the console needs" in text
    response = await console.post("/console/login", data={})
    assert response.status == 422
    assert not console.session.cookie_jar.filter_cookies(console.make_url("/console"))


async def test_a_form_from_another_origin_is_refused(console: Client) -> None:
    response = await console.post(
        "/console/login",
        data={"key": READER_KEY},
        headers={"Origin": "https://evil.example"},
        allow_redirects=False,
    )
    assert response.status == 403
    assert "Set-Cookie" not in response.headers
    await sign_in(console)
    response = await console.post(
        "/console/logout", headers={"Origin": "https://evil.example"}, allow_redirects=False
    )
    assert response.status == 403
    await page(console, "/console/deferred")  # still signed in


async def test_sign_out_ends_the_session_for_good(console: Client) -> None:
    response = await sign_in(console)
    token = session_cookie(response)["pushgate_console"].value
    await page(console, "/console/tokens")
    response = await console.post("/console/logout", allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"] == "/console/login"
    assert session_cookie(response)["pushgate_console"].value == ""
    await page(console, "/console/tokens", status=303)
    # the old token, replayed, opens nothing either
    console.session.cookie_jar.update_cookies({"pushgate_console": token})
    await page(console, "/console/tokens", status=303)


async def test_a_session_expires(console: Client, clock: FakeClock) -> None:
    await sign_in(console)
    clock.advance(hours=7, minutes=59)
    await page(console, "/console/deferred")
    clock.advance(minutes=1)
    await page(console, "/console/deferred", status=303)


async def test_openapi_leaves_the_console_out(console: Client) -> None:
    response = await console.get("/openapi.json", headers=auth(READER_KEY))
    assert response.status == 200
    assert not [path for path in (await response.json())["paths"] if "console" in path]


# -- the pages ---------------------------------------------------------------------------------


async def test_deferred_queue_shows_the_seeded_waves_and_filters_change_them(
    console: Client, traffic: KnownTraffic
) -> None:
    await sign_in(console)
    text = await page(console, "/console/deferred")
    assert cell(text, 'id="deferred-total"') == str(traffic.deferred_total)
    assert cell(text, 'id="deferred-later"') == str(traffic.deferred_later)
    wave = text.split('id="wave"')[1].split("</p>")[0]
    assert f"<strong>{traffic.wave_total}</strong>" in wave
    assert f"{traffic.wave_hour}:00 UTC" in wave
    assert traffic.wave_zone in wave
    assert f"{traffic.wave_local} local time" in wave
    hour_15 = text.split('<tr data-hour="15">')[1].split("</tr>")[0]
    assert cell(hour_15, 'data-reason="quiet_hours"') == "20"
    assert cell(hour_15, 'data-reason="scheduled"') == "5"

    text = await page(console, "/console/deferred?app=other")
    assert cell(text, 'id="deferred-total"') == str(traffic.deferred_other)
    assert traffic.other_wave_zone in text
    assert f"{traffic.other_wave_local} local time" in text
    assert '<option value="other" selected>' in text
    text = await page(console, "/console/deferred?tier=promotional")
    assert cell(text, 'id="deferred-total"') == str(traffic.deferred_promotional)


async def test_deliveries_per_provider_and_app(console: Client, traffic: KnownTraffic) -> None:
    await sign_in(console)
    text = await page(console, "/console/deliveries")
    apns_demo = text.split('<tr data-provider="APNs" data-app="demo">')[1].split("</tr>")[0]
    assert cell(apns_demo, 'data-field="sent"') == "50"  # 100 older than a day are left out
    assert cell(apns_demo, 'data-field="failed"') == "3"
    assert cell(apns_demo, 'data-field="invalid_token"') == "2"
    assert cell(apns_demo, 'data-field="retried"') == "7"
    assert cell(apns_demo, 'data-field="p50"') == "≤ 0.25 s"
    assert cell(apns_demo, 'data-field="p99"') == "≤ 5 s"
    assert "this process does not deliver" in cell(apns_demo, 'data-field="breaker"')
    fcm_demo = text.split('<tr data-provider="FCM" data-app="demo">')[1].split("</tr>")[0]
    assert cell(fcm_demo, 'data-field="sent"') == "20"
    assert cell(fcm_demo, 'data-field="p50"') == "≤ 2.5 s"
    text = await page(console, "/console/deliveries?app=other")
    assert 'data-app="demo"' not in text
    assert 'data-provider="APNs" data-app="other"' in text


async def test_tokens_per_app_and_platform(console: Client, traffic: KnownTraffic) -> None:
    await sign_in(console)
    text = await page(console, "/console/tokens")
    ios = text.split('<tr data-app="demo" data-platform="ios">')[1].split("</tr>")[0]
    assert cell(ios, 'data-field="active"') == "13"  # 12 and the looked-up user's
    assert cell(ios, 'data-field="stale"') == "3"
    assert cell(ios, 'data-field="invalid"') == "4"
    today = text.split('<tr data-day="2026-06-15">')[1].split("</tr>")[0]
    assert cell(today, 'data-reason="Unregistered"') == "3"
    assert cell(today, 'data-reason="UNREGISTERED"') == "1"
    two_days_ago = text.split('<tr data-day="2026-06-13">')[1].split("</tr>")[0]
    assert cell(two_days_ago, 'data-reason="Unregistered"') == "2"
    text = await page(console, "/console/tokens?app=demo")
    assert 'data-app="other"' not in text
    two_days_ago = text.split('<tr data-day="2026-06-13">')[1].split("</tr>")[0]
    assert cell(two_days_ago, 'data-reason="Unregistered"') == "0"


async def test_permission_funnel_with_rates_and_a_date_range(
    console: Client, traffic: KnownTraffic
) -> None:
    await sign_in(console)
    text = await page(console, "/console/funnel?app=demo&platform=ios")
    assert step(text, "soft_ask_shown") == "3"
    assert cell(text, 'data-rate="soft_ask_acceptance"') == "66.7%"
    assert cell(text, 'data-rate="os_grant_after_soft_ask"') == "50.0%"
    assert cell(text, 'data-rate="opt_in"') == "33.3%"
    text = await page(console, "/console/funnel?app=demo")
    assert step(text, "value_moment") == "6"
    # a range that ends before the events
    text = await page(console, "/console/funnel?app=demo&since=2026-06-01&until=2026-06-13")
    assert step(text, "value_moment") == "0"
    assert cell(text, 'data-rate="opt_in"') == "\u2013"
    text = await page(console, "/console/funnel?app=demo&since=2026-06-14&until=2026-06-14")
    assert step(text, "value_moment") == "6"


async def test_user_lookup_shows_devices_preferences_and_decisions_in_words(
    console: Client, traffic: KnownTraffic
) -> None:
    await sign_in(console)
    text = await page(console, f"/console/users?user_id={LOOKUP_USER}")
    devices = text.split('id="user-devices"')[1].split("</table>")[0]
    assert devices.count("<tr data-device=") == 2
    assert "Pacific/Auckland" in text.split('id="user-preferences"')[1]
    assert "timezone: default → Pacific/Auckland" in text
    decisions = text.split('id="user-notifications"')[1].split("</table>")[0]
    assert (
        "Held back by quiet hours 22:00\u201308:00: it was 23:59 in Pacific/Auckland" in decisions
    )
    assert "It waits until 2026-06-16 08:15 (NZST) local time." in decisions
    assert "Dropped: the user has not opted in to promotional notifications." in decisions
    assert "transactional notifications ignore quiet hours" in decisions


# -- app limits --------------------------------------------------------------------------------


async def test_a_key_limited_to_one_app_sees_only_that_app(
    console: Client, traffic: KnownTraffic
) -> None:
    await sign_in(console, DEMO_READER_KEY)
    text = await page(console, "/console/deferred")
    assert cell(text, 'id="deferred-total"') == str(traffic.deferred_demo)
    assert '<option value="other"' not in text
    text = await page(console, "/console/deliveries")
    assert 'data-app="other"' not in text
    text = await page(console, "/console/tokens")
    assert 'data-app="other"' not in text
    two_days_ago = text.split('<tr data-day="2026-06-13">')[1].split("</tr>")[0]
    assert cell(two_days_ago, 'data-reason="Unregistered"') == "0"  # those were other's
    text = await page(console, f"/console/users?user_id={LOOKUP_USER}")
    devices = text.split('id="user-devices"')[1].split("</table>")[0]
    assert devices.count("<tr data-device=") == 1
    assert "<td>other</td>" not in text
    for name in ("deferred", "deliveries", "tokens", "funnel"):
        text = await page(console, f"/console/{name}?app=other", status=403)
        assert "may not use app &#39;other&#39;" in text


# -- malformed input ---------------------------------------------------------------------------


async def test_extreme_dates_still_answer(console: Client) -> None:
    await sign_in(console)
    text = await page(console, "/console/funnel?since=2000-01-02&until=9999-12-29")
    assert step(text, "value_moment") == "0"
    text = await page(console, "/console/funnel?since=0001-01-01", status=422)
    assert "between 2000 and 9999" in text


async def test_a_session_cookie_of_any_shape_is_just_not_signed_in(console: Client) -> None:
    for value in ("", "x" * 5000, "%00", "../../etc"):
        console.session.cookie_jar.update_cookies({"pushgate_console": value})
        await page(console, "/console/deferred", status=303)
    response = await console.post("/console/login", json={"key": READER_KEY})
    assert response.status == 422  # a form, not JSON


@pytest.mark.parametrize(
    ("path", "status", "says"),
    [
        ("/console/deferred?tier=urgent", 422, "tier &#39;urgent&#39; does not exist"),
        ("/console/deferred?app=nope", 422, "app &#39;nope&#39; is not configured"),
        ("/console/deferred?app=%00", 422, "NUL"),
        ("/console/deliveries?app=" + "x" * 300, 422, "is not configured"),
        ("/console/funnel?since=yesterday", 422, "since must be a date as YYYY-MM-DD"),
        ("/console/funnel?since=2026-06-10&until=2026-06-01", 422, "must not be before"),
        ("/console/funnel?platform=web", 422, "platform must be ios or android"),
        ("/console/funnel?until=9999-12-31", 422, "the last day must be before"),
        ("/console/funnel?app=%E2%80%8F", 422, "is not configured"),
        ("/console/users?user_id=two%20words", 422, "no whitespace or control character"),
        ("/console/users?user_id=" + "u" * 129, 422, "1 to 128 characters"),
    ],
)
async def test_malformed_input_is_a_page_that_says_what_is_wrong(
    console: Client, path: str, status: int, says: str
) -> None:
    await sign_in(console)
    text = await page(console, path, status=status)
    assert says in text
    assert 'id="page-error"' in text
