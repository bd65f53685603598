"""A user's preferences: time zone, tier opt-ins and quiet hours."""

from __future__ import annotations

from datetime import datetime

from aiohttp import web
from sqlalchemy.exc import IntegrityError

from gateway.api.app import CLOCK, SESSIONS, SETTINGS
from gateway.api.routing import Route, json_response, parse_model, read_json
from gateway.api.schemas import PreferencesOut, PreferencesUpdate, QuietHours
from gateway.config import Settings
from gateway.db import transaction
from gateway.models import Preference
from gateway.notifications import format_hhmm


def preferences_out(user_id: str, row: Preference | None, settings: Settings) -> PreferencesOut:
    default = settings.policy.quiet_hours
    own = (
        QuietHours(start=row.quiet_start, end=row.quiet_end)
        if row is not None and row.quiet_start is not None and row.quiet_end is not None
        else None
    )
    behavioral = row.behavioral if row is not None else None
    promotional = row.promotional if row is not None else None
    return PreferencesOut(
        user_id=user_id,
        timezone=row.timezone if row is not None else None,
        behavioral=settings.policy.behavioral_default_opt_in if behavioral is None else behavioral,
        promotional=bool(promotional),
        quiet_hours=own,
        effective_quiet_hours=own
        or QuietHours(start=format_hhmm(default.start), end=format_hhmm(default.end)),
        updated_at=row.updated_at if row is not None else None,
    )


async def get_preferences(request: web.Request) -> web.Response:
    user_id = request.match_info["user_id"]
    async with request.app[SESSIONS]() as session:
        row = await session.get(Preference, user_id)
        return json_response(preferences_out(user_id, row, request.app[SETTINGS]))


async def _update(request: web.Request, *, replace: bool) -> web.Response:
    user_id = request.match_info["user_id"]
    update = parse_model(PreferencesUpdate, await read_json(request))
    fields = set(PreferencesUpdate.model_fields) if replace else update.model_fields_set
    now = request.app[CLOCK]()
    try:
        return await _write(request, user_id, update, fields, now)
    except IntegrityError:
        # a concurrent first write for this user created the row: apply ours on top of it
        return await _write(request, user_id, update, fields, now)


async def _write(
    request: web.Request,
    user_id: str,
    update: PreferencesUpdate,
    fields: set[str],
    now: datetime,
) -> web.Response:
    async with transaction(request.app[SESSIONS]) as session:
        row = await session.get(Preference, user_id, with_for_update=True)
        if row is None:
            row = Preference(user_id=user_id, updated_at=now)
        if "timezone" in fields:
            row.timezone = update.timezone
        if "behavioral" in fields:
            row.behavioral = update.behavioral
        if "promotional" in fields:
            row.promotional = update.promotional
        if "quiet_hours" in fields:
            row.quiet_start = update.quiet_hours.start if update.quiet_hours else None
            row.quiet_end = update.quiet_hours.end if update.quiet_hours else None
        row.updated_at = now
        session.add(row)
        await session.flush()
        return json_response(preferences_out(user_id, row, request.app[SETTINGS]))


async def put_preferences(request: web.Request) -> web.Response:
    return await _update(request, replace=True)


async def patch_preferences(request: web.Request) -> web.Response:
    return await _update(request, replace=False)


_PATH = "/v1/users/{user_id}/preferences"
ROUTES = [
    Route("GET", _PATH, get_preferences, "A user's preferences", responses={200: PreferencesOut}),
    Route(
        "PUT",
        _PATH,
        put_preferences,
        "Replace a user's preferences (fields left out return to defaults)",
        request_model=PreferencesUpdate,
        responses={200: PreferencesOut},
    ),
    Route(
        "PATCH",
        _PATH,
        patch_preferences,
        "Change the given preference fields",
        request_model=PreferencesUpdate,
        responses={200: PreferencesOut},
    ),
]
