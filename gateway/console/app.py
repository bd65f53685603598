"""The console's routes: sign-in and sign-out, and the five pages.

Added to the API's application by :func:`mount_console` under :data:`CONSOLE_PREFIX`; the API's
bearer-key middleware leaves these paths to the session check here. Every page handler parses
its form, calls services with the signed-in key's :class:`~gateway.services.access.Caller` (so
its app limits apply in the queries) and renders; a refusal (:class:`GatewayError`) is shown as
a page with its status, never a 500.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from importlib import resources
from typing import Any

import jinja2
from aiohttp import web
from pydantic import TypeAdapter, ValidationError

from gateway.config import Scope
from gateway.console.charts import horizontal_bars, stacked_columns
from gateway.console.words import decision_in_words
from gateway.errors import FieldError, Forbidden, GatewayError, Unauthorized, ValidationFailed
from gateway.runtime import Runtime
from gateway.schemas import (
    FunnelQuery,
    PageQuery,
    UserId,
    UserNotificationsQuery,
    parse_model,
)
from gateway.services.access import Caller, KeyRing
from gateway.services.console import (
    DEFER_REASONS,
    SESSION_LIFETIME,
    QueueFilter,
    parse_tier,
)
from policies import Tier

log = logging.getLogger(__name__)

CONSOLE_PREFIX = "/console"
SESSION_COOKIE = "pushgate_console"
LOGIN_PATH = f"{CONSOLE_PREFIX}/login"
HOME_PATH = f"{CONSOLE_PREFIX}/deferred"
MAX_KEY_LENGTH = 4096
DASH = "\u2013"  # an en dash: no value
USER_ROWS = 20
"""How many of a user's notifications and preference changes the lookup shows."""
FUNNEL_CHART_STEPS = (
    "value_moment",
    "soft_ask_shown",
    "soft_ask_accepted",
    "os_prompt_shown",
    "os_granted",
)
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # "no-referrer" makes forms send Origin: null
    "Cache-Control": "no-store",
}
STATIC_TYPES = {"console.css": "text/css", "console.js": "text/javascript"}

CONSOLE_RUNTIME = web.AppKey("console_runtime", Runtime)
_KEYS = web.AppKey("console_keys", KeyRing)
_TEMPLATES = web.AppKey("console_templates", jinja2.Environment)

_USER_ID: TypeAdapter[str] = TypeAdapter(UserId)


@dataclass(frozen=True)
class Viewer:
    """Who is signed in to this request's session."""

    caller: Caller
    token: str


PageHandler = Callable[[web.Request, Viewer], Awaitable[dict[str, Any]]]


def mount_console(app: web.Application, keys: KeyRing) -> None:
    """Add the console's routes to ``app`` (whose :data:`CONSOLE_RUNTIME` is set by whoever
    runs it); ``keys`` are the API's own, so a sign-in checks the keys the API accepts."""
    app[_KEYS] = keys
    app[_TEMPLATES] = _environment()
    add = app.router.add_route
    add("GET", CONSOLE_PREFIX, _index)
    add("GET", LOGIN_PATH, _login_form)
    add("POST", LOGIN_PATH, _login)
    add("POST", f"{CONSOLE_PREFIX}/logout", _logout)
    add("GET", f"{CONSOLE_PREFIX}/static/{{name}}", _static)
    for name, handler in _PAGES.items():
        add("GET", f"{CONSOLE_PREFIX}/{name}", _page(name, handler))


def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("gateway.console", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["n"] = lambda value: f"{value:,}"
    environment.filters["pct"] = lambda value: DASH if value is None else f"{value:.1%}"
    environment.filters["utc"] = lambda value: (
        DASH if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    )
    return environment


def _render(
    request: web.Request, template: str, *, status: int = 200, **values: Any
) -> web.Response:
    environment = request.app[_TEMPLATES]
    values.setdefault("viewer", None)
    values.setdefault("page", template.removesuffix(".html"))
    text = environment.get_template(template).render(prefix=CONSOLE_PREFIX, **values)
    response = web.Response(text=text, status=status, content_type="text/html")
    response.headers.update(SECURITY_HEADERS)
    return response


def _runtime(request: web.Request) -> Runtime:
    return request.app[CONSOLE_RUNTIME]


async def _viewer(request: web.Request) -> Viewer | None:
    """The signed-in key of the request's session cookie, or None (no cookie, an expired or
    ended session, or a key no longer configured with ``users:read``)."""
    token = request.cookies.get(SESSION_COOKIE, "")
    if not token:
        return None
    found = await _runtime(request).services.console.find_session(token)
    if found is None:
        return None
    caller = request.app[_KEYS].by_fingerprint(found.key_fingerprint)
    if caller is None or not caller.has_scope(Scope.USERS_READ):
        return None
    return Viewer(caller, token)


def _check_origin(request: web.Request) -> None:
    """A form posted from another site is refused (SameSite=Strict already keeps the cookie
    from it; this also covers the sign-in form, which has no cookie yet)."""
    origin = request.headers.get("Origin")
    if origin is not None and origin != f"{request.scheme}://{request.host}":
        raise Forbidden(
            "this form may only be sent from the console's own pages", code="cross_origin"
        )


# -- sign-in -----------------------------------------------------------------------------------


async def _index(request: web.Request) -> web.StreamResponse:
    raise web.HTTPSeeOther(HOME_PATH if await _viewer(request) else LOGIN_PATH)


async def _login_form(request: web.Request) -> web.StreamResponse:
    if await _viewer(request) is not None:
        raise web.HTTPSeeOther(HOME_PATH)
    return _render(request, "login.html", error=None)


async def _login(request: web.Request) -> web.StreamResponse:
    try:
        _check_origin(request)
        form = await request.post()
        key = form.get("key")
        if not isinstance(key, str) or not key.strip() or len(key) > MAX_KEY_LENGTH:
            raise ValidationFailed("enter an API key")
        found = request.app[_KEYS].match(key.strip())
        if found is None:
            raise Unauthorized("that API key is not valid")
        fingerprint, caller = found
        if not caller.has_scope(Scope.USERS_READ):
            raise Forbidden(
                f"the API key {caller.name!r} lacks the scope 'users:read' the console needs; "
                "sign in with a key that has it",
                code="scope_required",
            )
    except GatewayError as error:
        return _render(request, "login.html", status=error.status, error=error.detail)
    token, _expires_at = await _runtime(request).services.console.open_session(
        caller.name, fingerprint
    )
    log.info("console session opened for key %s", caller.name)
    response = web.HTTPSeeOther(HOME_PATH)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        path=CONSOLE_PREFIX,
        max_age=int(SESSION_LIFETIME.total_seconds()),
        httponly=True,
        samesite="Strict",
        secure=request.secure or None,
    )
    raise response


async def _logout(request: web.Request) -> web.StreamResponse:
    try:
        _check_origin(request)
    except GatewayError as error:
        return _render(request, "error.html", status=error.status, error=error)
    token = request.cookies.get(SESSION_COOKIE, "")
    await _runtime(request).services.console.end_session(token)
    response = web.HTTPSeeOther(LOGIN_PATH)
    response.del_cookie(SESSION_COOKIE, path=CONSOLE_PREFIX)
    raise response


async def _static(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if name not in STATIC_TYPES:
        raise web.HTTPNotFound()
    body = resources.files("gateway.console").joinpath("static", name).read_bytes()
    response = web.Response(body=body, content_type=STATIC_TYPES[name])
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "no-cache"
    return response


def _page(name: str, handler: PageHandler) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def serve_page(request: web.Request) -> web.Response:
        viewer = await _viewer(request)
        if viewer is None:
            raise web.HTTPSeeOther(LOGIN_PATH)
        try:
            values = await handler(request, viewer)
        except GatewayError as error:
            return _render(
                request, "error.html", status=error.status, viewer=viewer, error=error, page=name
            )
        return _render(request, f"{name}.html", viewer=viewer, page=name, **values)

    return serve_page


# -- reading forms -----------------------------------------------------------------------------


def _param(request: web.Request, name: str) -> str | None:
    """A query parameter, stripped; None when absent or empty."""
    value = request.rel_url.query.get(name, "").strip()
    if "\x00" in value:
        message = f"{name} cannot hold a NUL character"
        raise ValidationFailed(message, errors=[FieldError(name, message)])
    return value or None


def _date(request: web.Request, name: str) -> date | None:
    value = _param(request, name)
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        message = f"{name} must be a date as YYYY-MM-DD, not {value[:32]!r}"
        raise ValidationFailed(message, errors=[FieldError(name, message)]) from None


def _filters(request: web.Request, viewer: Viewer) -> dict[str, Any]:
    console = _runtime(request).services.console
    return {"apps": console.visible_apps(viewer.caller), "app": _param(request, "app")}


# -- the pages ---------------------------------------------------------------------------------


async def _deferred(request: web.Request, viewer: Viewer) -> dict[str, Any]:
    values = _filters(request, viewer)
    tier = parse_tier(_param(request, "tier"))
    queue = await _runtime(request).services.console.deferred_queue(
        viewer.caller, QueueFilter(app=values["app"], tier=tier)
    )
    series = list(DEFER_REASONS) + sorted(
        {reason for hour in queue.hours for reason in hour.by_reason} - set(DEFER_REASONS)
    )
    chart = stacked_columns(
        [f"{hour.start:%H:00}" for hour in queue.hours],
        [hour.by_reason for hour in queue.hours],
        series=series,
        label_every=3,
    )
    return {
        **values,
        "tier": tier.value if tier else None,
        "tiers": [t.value for t in Tier],
        "queue": queue,
        "series": series,
        "chart": chart,
    }


async def _deliveries(request: web.Request, viewer: Viewer) -> dict[str, Any]:
    values = _filters(request, viewer)
    runtime = _runtime(request)
    totals = await runtime.services.console.deliveries(viewer.caller, values["app"])
    series = ["sent", "failed", "invalid_token", "pending"]
    chart = stacked_columns(
        [f"{row.provider} {row.app}" for row in totals.rows],
        [
            {
                "sent": row.sent,
                "failed": row.failed,
                "invalid_token": row.invalid_token,
                "pending": row.pending,
            }
            for row in totals.rows
        ],
        series=series,
        height=220,
    )
    breakers: dict[tuple[str, str], str] = {}
    worker = runtime.worker
    now = runtime.context.clock()
    for row in totals.rows:
        if worker is None:
            breakers[(row.app, row.platform)] = "not known: this process does not deliver"
            continue
        breaker = worker.breakers.get((row.app, row.platform))
        if breaker is not None and breaker.is_open(now):
            breakers[(row.app, row.platform)] = f"open until {breaker.open_until:%H:%M:%S} UTC"
        elif breaker is not None and breaker.failures:
            breakers[(row.app, row.platform)] = (
                f"closed ({breaker.failures} transient failures in a row)"
            )
        else:
            breakers[(row.app, row.platform)] = "closed"
    return {
        **values,
        "totals": totals,
        "chart": chart,
        "series": series,
        "breakers": breakers,
        "delivers": worker is not None,
    }


async def _tokens(request: web.Request, viewer: Viewer) -> dict[str, Any]:
    values = _filters(request, viewer)
    runtime = _runtime(request)
    health = await runtime.services.console.token_health(viewer.caller, values["app"])
    counts_chart = stacked_columns(
        [f"{row.app} {row.platform}" for row in health.rows],
        [{"active": row.active, "stale": row.stale, "invalid": row.invalid} for row in health.rows],
        series=["active", "stale", "invalid"],
        height=220,
    )
    invalidations_chart = stacked_columns(
        [f"{day:%m-%d}" for day in health.days],
        [health.invalidations.get(day, {}) for day in health.days],
        series=health.reasons,
        label_every=2,
        height=220,
    )
    guard = runtime.worker.queue.guard if runtime.worker is not None else None
    shown = [values["app"]] if values["app"] in values["apps"] else values["apps"]
    tripped = [app for app in shown if guard is not None and guard.in_alarm(app)]
    return {
        **values,
        "health": health,
        "counts_chart": counts_chart,
        "invalidations_chart": invalidations_chart,
        "guard": guard,
        "tripped": tripped,
    }


async def _funnel(request: web.Request, viewer: Viewer) -> dict[str, Any]:
    values = _filters(request, viewer)
    runtime = _runtime(request)
    app = values["app"] or (values["apps"][0] if values["apps"] else None)
    platform = _param(request, "platform")
    if platform not in (None, "ios", "android"):
        message = f"platform must be ios or android, not {platform[:32]!r}"
        raise ValidationFailed(message, errors=[FieldError("platform", message)])
    today = runtime.context.clock().astimezone(UTC).date()
    since = _date(request, "since") or today - timedelta(days=29)
    until = _date(request, "until")
    if until is not None and until < since:
        message = "the last day must not be before the first"
        raise ValidationFailed(message, errors=[FieldError("until", message)])
    if until is not None and until >= date.max - timedelta(days=1):
        message = f"the last day must be before {date.max.isoformat()}"
        raise ValidationFailed(message, errors=[FieldError("until", message)])
    if app is None:
        raise Forbidden(
            f"API key {viewer.caller.name!r} may see no configured app", code="app_not_allowed"
        )
    query = parse_model(
        FunnelQuery,
        {
            "since": datetime.combine(since, time(), tzinfo=UTC),
            # the last day is included: the window ends when it does
            "until": datetime.combine(until + timedelta(days=1), time(), tzinfo=UTC)
            if until is not None
            else None,
            "platform": platform,
        },
    )
    funnel = await runtime.services.permission.funnel(viewer.caller, app, query)
    counts = funnel.counts.model_dump()
    steps = []
    previous: int | None = None
    for step in FUNNEL_CHART_STEPS:
        value = counts[step]
        share = (
            ""
            if previous is None
            else (f"{value / previous:.0%} of the step before" if previous else DASH)
        )
        steps.append((step.replace("_", " "), value, share))
        previous = value
    return {
        **values,
        "app": app,
        "platform": platform,
        "since": since.isoformat(),
        "until": until.isoformat() if until else "",
        "funnel": funnel,
        "counts": counts,
        "chart": horizontal_bars(steps),
    }


async def _users(request: web.Request, viewer: Viewer) -> dict[str, Any]:
    raw = _param(request, "user_id")
    if raw is None:
        return {"user_id": "", "found": None}
    try:
        user_id = _USER_ID.validate_python(raw)
    except ValidationError:
        message = "a user id is 1 to 128 characters with no whitespace or control character"
        raise ValidationFailed(message, errors=[FieldError("user_id", message)]) from None
    services = _runtime(request).services
    caller = viewer.caller
    devices = await services.devices.of_user(caller, user_id)
    preferences = await services.preferences.get(caller, user_id)
    history = await services.preferences.history(caller, user_id, PageQuery(limit=USER_ROWS))
    notifications = await services.notifications.of_user(
        caller, user_id, UserNotificationsQuery(limit=USER_ROWS)
    )
    return {
        "user_id": user_id,
        "found": True,
        "devices": devices.devices,
        "preferences": preferences,
        "history": history.history,
        "notifications": [(n, decision_in_words(n)) for n in notifications.notifications],
    }


_PAGES: dict[str, PageHandler] = {
    "deferred": _deferred,
    "deliveries": _deliveries,
    "tokens": _tokens,
    "funnel": _funnel,
    "users": _users,
}
