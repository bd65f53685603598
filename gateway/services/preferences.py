"""A user's preferences: time zone, tier opt-ins and quiet hours."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from gateway.config import Settings
from gateway.db import transaction
from gateway.models import Preference, PreferenceChange
from gateway.schemas import (
    PageQuery,
    PreferenceChangeOut,
    PreferenceHistory,
    PreferencesOut,
    PreferencesUpdate,
    QuietHours,
)
from gateway.services.access import Caller
from gateway.services.context import ServiceContext
from gateway.services.pagination import encode_cursor, older_than


def preferences_out(user_id: str, row: Preference | None, settings: Settings) -> PreferencesOut:
    """The user's preferences as answered: their own values, and the defaults where unset."""
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
        or QuietHours(start=default.start.strftime("%H:%M"), end=default.end.strftime("%H:%M")),
        updated_at=row.updated_at if row is not None else None,
    )


class PreferenceService:
    def __init__(self, context: ServiceContext) -> None:
        self._context = context

    async def get(self, caller: Caller, user_id: str) -> PreferencesOut:
        async with self._context.sessions() as session:
            row = await session.get(Preference, user_id)
            return preferences_out(user_id, row, self._context.settings)

    async def update(
        self, caller: Caller, user_id: str, update: PreferencesUpdate, *, replace: bool
    ) -> PreferencesOut:
        """Change the fields given (``replace``: every field, those left out to defaults), and
        keep the change, with the caller's name, in the user's history."""
        fields = set(PreferencesUpdate.model_fields) if replace else update.model_fields_set
        now = self._context.clock()
        try:
            return await self._write(caller, user_id, update, fields, now)
        except IntegrityError:
            # a concurrent first write for this user created the row: apply ours on top of it
            return await self._write(caller, user_id, update, fields, now)

    async def _write(
        self,
        caller: Caller,
        user_id: str,
        update: PreferencesUpdate,
        fields: set[str],
        now: datetime,
    ) -> PreferencesOut:
        async with transaction(self._context.sessions) as session:
            row = await session.get(Preference, user_id, with_for_update=True)
            if row is None:
                row = Preference(user_id=user_id, updated_at=now)
            before = _recorded_values(row)
            if "timezone" in fields:
                row.timezone = update.timezone
            if "behavioral" in fields:
                row.behavioral = update.behavioral
            if "promotional" in fields:
                row.promotional = update.promotional
            if "quiet_hours" in fields:
                row.quiet_start = update.quiet_hours.start if update.quiet_hours else None
                row.quiet_end = update.quiet_hours.end if update.quiet_hours else None
            after = _recorded_values(row)
            changes = {
                field: [before[field], after[field]]
                for field in before
                if before[field] != after[field]
            }
            row.updated_at = now
            session.add(row)
            if changes:
                session.add(
                    PreferenceChange(user_id=user_id, at=now, by=caller.name, changes=changes)
                )
            await session.flush()
            return preferences_out(user_id, row, self._context.settings)

    async def history(self, caller: Caller, user_id: str, page: PageQuery) -> PreferenceHistory:
        """The user's preference changes, newest first, a page at a time."""
        at, change_id = col(PreferenceChange.at), col(PreferenceChange.id)
        limit = page.limit
        query = (
            select(PreferenceChange)
            .where(col(PreferenceChange.user_id) == user_id)
            .order_by(at.desc(), change_id.desc())
            .limit(limit + 1)
        )
        if page.cursor is not None:
            query = query.where(older_than(at, change_id, page.cursor, id_type=int))
        async with self._context.sessions() as session:
            rows = list((await session.execute(query)).scalars())
        changes, more = rows[:limit], len(rows) > limit
        last = changes[-1] if changes else None
        return PreferenceHistory(
            history=[PreferenceChangeOut.model_validate(row) for row in changes],
            next_cursor=encode_cursor(last.at, last.id) if more and last is not None else None,
        )


def _recorded_values(row: Preference) -> dict[str, Any]:
    """The fields of a preference row as the history records them (None: the default)."""
    quiet_hours = (
        {"start": row.quiet_start, "end": row.quiet_end}
        if row.quiet_start is not None and row.quiet_end is not None
        else None
    )
    return {
        "timezone": row.timezone,
        "behavioral": row.behavioral,
        "promotional": row.promotional,
        "quiet_hours": quiet_hours,
    }
