"""What the policy needs to know about users at one instant, loaded in a few queries, and the
per-user locks that keep frequency caps exact under concurrency.

Acceptance and release both decide from a :class:`UsersSnapshot`: one query for preferences,
one for devices and one for the recent counts of capped tiers, whatever the number of users.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from gateway.config import parse_hhmm
from gateway.models import Notification, Preference
from policies import PolicySettings, QuietWindow, UserFacts, cap_window_start
from policies.tiers import Tier
from tokens.models import DeviceState
from tokens.registry import devices_of_users, is_deliverable, latest_timezone

# The key space of the users' advisory locks, so they cannot collide with another user of
# pg_advisory_xact_lock in the same database.
_USER_LOCK_SPACE = 7210431


@dataclass(frozen=True, slots=True)
class PreferenceState:
    """A user's stored preferences, as plain values (None: not set, the default applies)."""

    user_id: str
    timezone: str | None
    behavioral: bool | None
    promotional: bool | None
    quiet_start: str | None
    quiet_end: str | None

    @classmethod
    def columns(cls) -> list[Any]:
        return [col(getattr(Preference, name)) for name in cls.__dataclass_fields__]


@dataclass
class UsersSnapshot:
    """What the policy needs to know about a set of users at one instant; the release job
    decides a whole batch from one snapshot."""

    preferences: dict[str, PreferenceState]
    devices: dict[str, list[DeviceState]]
    recent_counts: dict[str, dict[Tier, int]]  # by user, then tier (capped tiers only)

    def facts(self, user_id: str, app: str) -> tuple[UserFacts, list[DeviceState]]:
        """The user's facts for ``app``, and the devices a notification would go to."""
        preference = self.preferences.get(user_id)
        devices = self.devices.get(user_id, [])
        deliverable = [device for device in devices if is_deliverable(device, app)]
        facts = UserFacts(
            user_id=user_id,
            timezone=preference.timezone if preference else None,
            device_timezone=latest_timezone(devices),
            behavioral_opt_in=preference.behavioral if preference else None,
            promotional_opt_in=preference.promotional if preference else None,
            quiet_hours=quiet_window_of(preference),
            active_devices=len(deliverable),
            recent_counts=dict(self.recent_counts.get(user_id, {})),
        )
        return facts, deliverable

    def count_queued(self, user_id: str, tier: Tier) -> None:
        """A notification of the batch was just queued: it counts against the user's cap."""
        counts = self.recent_counts.get(user_id)
        if counts is not None and tier in counts:
            counts[tier] += 1


async def snapshot_users(
    session: AsyncSession, user_ids: Collection[str], *, now: datetime, policy: PolicySettings
) -> UsersSnapshot:
    """Preferences, devices and frequency-cap counts of ``user_ids`` at ``now``.

    A notification counts against its user's cap from when it is queued (``counted_at``);
    deferred ones have none yet, so one being released never counts against itself.
    """
    users = list(user_ids)
    preferences = [
        PreferenceState(*row)
        for row in await session.execute(
            sa.select(*PreferenceState.columns()).where(col(Preference.user_id).in_(users))
        )
    ]
    recent_counts: dict[str, dict[Tier, int]] = {user_id: {} for user_id in users}
    windows = []
    for tier in Tier:
        since = cap_window_start(now, tier, policy)
        if since is None:
            continue
        for counts in recent_counts.values():
            counts[tier] = 0
        windows.append(
            sa.and_(col(Notification.tier) == tier, col(Notification.counted_at) >= since)
        )
    if windows:  # every capped tier, each in its own window, in one query
        rows = await session.execute(
            sa.select(col(Notification.user_id), col(Notification.tier), sa.func.count())
            .where(col(Notification.user_id).in_(users), sa.or_(*windows))
            .group_by(col(Notification.user_id), col(Notification.tier))
        )
        for user_id, tier_name, count in rows.all():
            recent_counts[user_id][Tier(tier_name)] = count
    return UsersSnapshot(
        preferences={preference.user_id: preference for preference in preferences},
        devices=await devices_of_users(session, users),
        recent_counts=recent_counts,
    )


def quiet_window_of(preference: PreferenceState | None) -> QuietWindow | None:
    """The user's own quiet hours, or None when the default applies."""
    if preference is None or preference.quiet_start is None or preference.quiet_end is None:
        return None
    return QuietWindow(parse_hhmm(preference.quiet_start), parse_hhmm(preference.quiet_end))


async def lock_users(session: AsyncSession, user_ids: Collection[str]) -> None:
    """Serialise acceptances for these users until the transaction ends, so two concurrent
    requests cannot both count themselves under the frequency cap. The locks are taken in one
    statement, in sorted order, so two transactions locking overlapping sets cannot deadlock.
    PostgreSQL only: SQLite already runs one write transaction at a time."""
    if user_ids and session.get_bind().dialect.name == "postgresql":
        await session.execute(
            sa.text(
                "SELECT pg_advisory_xact_lock(hashtextextended(u, :space)) "
                "FROM (SELECT DISTINCT u FROM unnest(CAST(:ids AS text[])) AS u ORDER BY u) AS s"
            ),
            {"ids": sorted(set(user_ids)), "space": _USER_LOCK_SPACE},
        )


async def try_lock_users(session: AsyncSession, user_ids: Collection[str]) -> set[str]:
    """The users of ``user_ids`` whose acceptance lock (see :func:`lock_users`) this transaction
    now holds, taken without waiting: a user being accepted for right now is left out. On SQLite
    every user (one write transaction at a time already)."""
    if session.get_bind().dialect.name != "postgresql":
        return set(user_ids)
    rows = await session.execute(
        sa.text(
            "SELECT u FROM unnest(CAST(:ids AS text[])) AS u "
            "WHERE pg_try_advisory_xact_lock(hashtextextended(u, :space))"
        ),
        {"ids": sorted(set(user_ids)), "space": _USER_LOCK_SPACE},
    )
    return set(rows.scalars())
