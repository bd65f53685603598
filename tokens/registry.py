"""Registry queries and rules for device tokens: registration, refresh, reassignment, removal.

Functions take an :class:`AsyncSession` that the caller (the gateway) owns and commits, and an
aware ``now``; none of them reads the clock.

Rules, as :func:`register_device` applies them:

- A token is identified by ``(app, platform, token)``. Registering it again refreshes
  ``last_seen_at``, time zone, locale and permission (apps call this on every launch), and
  brings an ``invalid`` or ``stale`` token back to ``active``: the app holding it just proved it
  is alive. A provider's later 410 with an older ``timestamp`` then leaves it alone (see
  :func:`tokens.feedback.apply_report`).
- A token registered by another user moves to the caller (a shared or handed-down device).
- ``replaces`` names the token this one supersedes (the OS rotated it); the old one is retired
  as ``invalid`` with reason ``replaced`` and handed back, so the gateway can move its pending
  deliveries to the new device.
- A change of a device's notification permission, at registration or from the answer to the OS
  prompt (:func:`change_permission`), leaves a ``permission`` audit event naming the new one.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from tokens.models import (
    Device,
    DeviceState,
    DeviceStatus,
    Environment,
    Permission,
    TokenEvent,
    TokenEventKind,
    new_id,
    token_suffix,
)

log = logging.getLogger(__name__)

REPLACED_REASON = "replaced"
FORGOTTEN_REASON = "user_forgotten"


@dataclass(frozen=True)
class Registration:
    """What :func:`register_device` did.

    ``created``: the token was new (HTTP 201). ``retired``: the device ``replaces`` named, now
    invalid; its pending deliveries belong to ``device`` from now on. ``previous_user_id``: the
    user the token belonged to before it moved to this one. ``previous_permission``: the
    device's permission before this registration (None for a new device).
    """

    device: Device
    created: bool
    retired: Device | None = None
    previous_user_id: str | None = None
    previous_permission: str | None = None

    @property
    def permission_changed(self) -> bool:
        """The registration gave the device a permission it did not have (a new device counts
        when it arrives with one it reports)."""
        return self.device.permission != (self.previous_permission or Permission.UNKNOWN)


@dataclass(frozen=True)
class TokenCount:
    app: str
    platform: str
    status: str
    count: int


def record_event(
    session: AsyncSession,
    device: Device,
    kind: TokenEventKind,
    *,
    now: datetime,
    actor: str,
    reason: str | None = None,
) -> None:
    """Add one audit-trail row for ``device`` (flushed with the session)."""
    session.add(
        TokenEvent(
            device_id=device.id,
            app=device.app,
            platform=device.platform,
            token_suffix=token_suffix(device.token),
            kind=kind,
            reason=reason,
            actor=actor,
            at=now,
        )
    )


async def register_device(
    session: AsyncSession,
    *,
    now: datetime,
    user_id: str,
    app: str,
    platform: str,
    token: str,
    environment: str | None = None,
    timezone: str | None = None,
    locale: str | None = None,
    permission: str | None = None,
    replaces: str | None = None,
    actor: str,
    default_environment: str = Environment.PRODUCTION,
) -> Registration:
    """Register or refresh ``token`` for ``user_id``; returns the device and what changed.

    Optional fields left as ``None`` keep their stored value; a new device gets the defaults
    (``default_environment``, ``unknown`` permission). Safe against a concurrent registration
    of the same token: the loser of the insert race refreshes the winner's row instead of
    failing.
    """
    device, created = await _find_or_insert(
        session,
        now=now,
        user_id=user_id,
        app=app,
        platform=platform,
        token=token,
        environment=environment or default_environment,
        timezone=timezone,
        locale=locale,
        permission=permission,
    )
    previous_user_id: str | None = None
    previous_permission = None if created else device.permission
    if created:
        record_event(session, device, TokenEventKind.REGISTERED, now=now, actor=actor)
        log.info("registered %s token …%s for app %s", platform, token_suffix(token), app)
    else:
        if device.user_id != user_id:
            previous_user_id = device.user_id
            device.user_id = user_id
            record_event(session, device, TokenEventKind.MOVED, now=now, actor=actor)
            log.info("token …%s of app %s moved to another user", token_suffix(token), app)
        if device.status != DeviceStatus.ACTIVE:
            record_event(
                session,
                device,
                TokenEventKind.REACTIVATED,
                now=now,
                actor=actor,
                reason=device.invalid_reason or device.status,
            )
            device.status = DeviceStatus.ACTIVE
            device.invalid_reason = None
            device.invalidated_at = None
            device.invalidated_by = None
        device.last_seen_at = now
        device.updated_at = now
        if environment is not None:
            device.environment = environment
        if timezone is not None:
            device.timezone = timezone
        if locale is not None:
            device.locale = locale
        if permission is not None:
            change_permission(session, device, permission, now=now, actor=actor)

    retired = None
    if replaces is not None and replaces != token:
        retired = await _retire_replaced(
            session, app=app, platform=platform, token=replaces, now=now, actor=actor
        )
    await session.flush()
    return Registration(
        device=device,
        created=created,
        retired=retired,
        previous_user_id=previous_user_id,
        previous_permission=previous_permission,
    )


def change_permission(
    session: AsyncSession, device: Device, permission: str, *, now: datetime, actor: str
) -> bool:
    """Give ``device`` the notification ``permission``; True when that changed it.

    A change is kept in the audit trail (a ``permission`` event whose reason is the new one);
    the same permission reported again changes nothing and records nothing.
    """
    if device.permission == permission:
        return False
    device.permission = permission
    device.updated_at = now
    record_event(
        session, device, TokenEventKind.PERMISSION, now=now, actor=actor, reason=permission
    )
    return True


# Permissions the user has not answered the OS prompt for in full: never asked, or iOS's quiet
# provisional delivery (the full prompt may still come).
_UNDECIDED_PERMISSIONS = (Permission.UNKNOWN, Permission.PROVISIONAL)


async def grant_undecided_devices(
    session: AsyncSession,
    *,
    user_id: str,
    app: str,
    platform: str,
    now: datetime,
    actor: str,
) -> list[Device]:
    """Mark ``granted`` the user's active devices of ``app`` and ``platform`` whose permission
    is not decided yet (``unknown`` or ``provisional``); returns the devices changed.

    For a "yes" to the OS prompt that did not say which device asked: one of these did, and
    which one cannot be told, so all of them take it. A device that reported ``denied`` keeps
    it: a yes elsewhere does not turn it on. Each device's next registration reports its own
    permission again, which corrects a guess that was wrong.
    """
    result = await session.execute(
        select(Device)
        .where(
            Device.user_id == user_id,
            Device.app == app,
            Device.platform == platform,
            Device.status == DeviceStatus.ACTIVE,
            col(Device.permission).in_(_UNDECIDED_PERMISSIONS),
        )
        .order_by(col(Device.id))
        .with_for_update()
    )
    devices = list(result.scalars())
    for device in devices:
        change_permission(session, device, Permission.GRANTED, now=now, actor=actor)
    await session.flush()
    return devices


async def _find_or_insert(
    session: AsyncSession,
    *,
    now: datetime,
    user_id: str,
    app: str,
    platform: str,
    token: str,
    environment: str | None,
    timezone: str | None,
    locale: str | None,
    permission: str | None,
) -> tuple[Device, bool]:
    """The locked row for the token, inserting it first when absent; ``(device, created)``."""
    # Most calls refresh a known token, so look first; insert only when it is missing.
    for _attempt in range(3):
        device = await _lock_device(session, app, platform, token)
        if device is not None:
            return device, False
        values: dict[str, Any] = {
            "id": new_id(),
            "user_id": user_id,
            "app": app,
            "platform": platform,
            "token": token,
            "environment": environment or Environment.PRODUCTION,
            "timezone": timezone,
            "locale": locale,
            "permission": permission or Permission.UNKNOWN,
            "status": DeviceStatus.ACTIVE,
            "created_at": now,
            "last_seen_at": now,
            "updated_at": now,
        }
        # ON CONFLICT DO NOTHING instead of catching IntegrityError: a failed INSERT would
        # abort a PostgreSQL transaction, and savepoints are unreliable under pysqlite.
        inserted = await session.execute(
            _insert_ignoring_duplicates(session, values).returning(sa.column("id"))
        )
        if inserted.scalar_one_or_none() is not None:
            device = await _lock_device(session, app, platform, token)
            assert device is not None  # we just inserted it in this transaction
            return device, True
        # a concurrent registration inserted it first: refresh that row instead
    raise RuntimeError(f"could not register token …{token_suffix(token)} for app {app}")


def _insert_ignoring_duplicates(session: AsyncSession, values: dict[str, Any]) -> Any:
    table = Device.__table__  # type: ignore[attr-defined]
    columns = ["app", "platform", "token"]
    if session.get_bind().dialect.name == "postgresql":
        return (
            postgresql.insert(table).values(values).on_conflict_do_nothing(index_elements=columns)
        )
    return sqlite.insert(table).values(values).on_conflict_do_nothing(index_elements=columns)


async def _lock_device(session: AsyncSession, app: str, platform: str, token: str) -> Device | None:
    result = await session.execute(
        select(Device)
        .where(Device.app == app, Device.platform == platform, Device.token == token)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return result.scalar_one_or_none()


async def _retire_replaced(
    session: AsyncSession, *, app: str, platform: str, token: str, now: datetime, actor: str
) -> Device | None:
    old = await _lock_device(session, app, platform, token)
    if old is None:
        return None
    if old.status != DeviceStatus.INVALID:
        old.status = DeviceStatus.INVALID
        old.invalid_reason = REPLACED_REASON
        old.invalidated_at = now
        old.invalidated_by = actor
        old.updated_at = now
        record_event(
            session, old, TokenEventKind.REPLACED, now=now, actor=actor, reason=REPLACED_REASON
        )
        log.info("token …%s of app %s replaced by a new token", token_suffix(token), app)
    return old


async def unregister_device(
    session: AsyncSession, device_id: str, *, now: datetime, actor: str
) -> Device | None:
    """Delete the device (``DELETE /v1/devices/{id}``), keeping an ``unregistered`` audit event.

    Returns the deleted device, or ``None`` when there was none with that id.
    """
    device = await session.get(Device, device_id, with_for_update=True)
    if device is None:
        return None
    record_event(session, device, TokenEventKind.UNREGISTERED, now=now, actor=actor)
    await session.delete(device)
    await session.flush()
    return device


async def forget_user_devices(
    session: AsyncSession,
    user_id: str,
    *,
    now: datetime,
    actor: str,
    apps: Collection[str] | None = None,
) -> int:
    """Delete the devices of ``user_id`` (user erasure), of ``apps`` only when given; returns
    how many were deleted.

    The audit events kept name the device id and the token's last 6 characters, never the user.
    """
    query = select(Device).where(Device.user_id == user_id)
    if apps is not None:
        query = query.where(col(Device.app).in_(list(apps)))
    result = await session.execute(query.order_by(col(Device.id)).with_for_update())
    devices = result.scalars().all()
    for device in devices:
        record_event(
            session,
            device,
            TokenEventKind.UNREGISTERED,
            now=now,
            actor=actor,
            reason=FORGOTTEN_REASON,
        )
        await session.delete(device)
    await session.flush()
    return len(devices)


async def user_devices(session: AsyncSession, user_id: str) -> Sequence[Device]:
    """Every device of the user, whatever its status, most recently seen first."""
    result = await session.execute(
        select(Device)
        .where(Device.user_id == user_id)
        .order_by(col(Device.last_seen_at).desc(), col(Device.id))
    )
    return result.scalars().all()


def is_deliverable(device: Device | DeviceState, app: str) -> bool:
    """Whether ``device`` receives ``app``'s notifications: active, permission not denied.

    ``stale`` and ``invalid`` devices are never sent to: a stale device comes back as soon as
    its app registers again (every launch does).
    """
    return (
        device.app == app
        and device.status == DeviceStatus.ACTIVE
        and device.permission != Permission.DENIED
    )


def latest_timezone(devices: Iterable[Device | DeviceState]) -> str | None:
    """The time zone reported by the most recently seen of ``devices`` that reported one."""
    zoned = [device for device in devices if device.timezone is not None]
    if not zoned:
        return None
    return max(zoned, key=lambda device: device.last_seen_at).timezone


async def devices_of_users(
    session: AsyncSession, user_ids: Collection[str]
) -> dict[str, list[DeviceState]]:
    """Every device of each user, whatever its status, in one query."""
    devices: dict[str, list[DeviceState]] = {user_id: [] for user_id in user_ids}
    if user_ids:
        result = await session.execute(
            sa.select(*DeviceState.columns()).where(col(Device.user_id).in_(list(user_ids)))
        )
        for row in result.all():
            device = DeviceState(*row)
            devices[device.user_id].append(device)
    return devices


async def deliverable_devices(
    session: AsyncSession, user_id: str, app: str
) -> Sequence[DeviceState]:
    """The user's devices that receive ``app``'s notifications (see :func:`is_deliverable`)."""
    devices = (await devices_of_users(session, [user_id]))[user_id]
    return [device for device in devices if is_deliverable(device, app)]


async def token_stats(session: AsyncSession) -> list[TokenCount]:
    """How many devices there are per app, platform and status, in that order."""
    result = await session.execute(
        sa.select(col(Device.app), col(Device.platform), col(Device.status), sa.func.count())
        .group_by(col(Device.app), col(Device.platform), col(Device.status))
        .order_by(col(Device.app), col(Device.platform), col(Device.status))
    )
    return [TokenCount(app, platform, status, count) for app, platform, status, count in result]
