"""Registration rules: upsert, refresh, reactivation, move between users, replacement, removal."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import select

from tokens import (
    Registration,
    apply_report,
    deliverable_devices,
    forget_user_devices,
    grant_undecided_devices,
    register_device,
    unregister_device,
    user_devices,
)
from tokens.models import Device, DeviceStatus, TokenEvent, TokenEventKind
from tokens.reports import DeliveryReport, Outcome

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TOKEN = "a" * 58 + "123456"
OTHER = "b" * 58 + "654321"
Sessions = async_sessionmaker[AsyncSession]


async def register(sessions: Sessions, now: datetime = T0, **fields: object) -> Registration:
    values: dict[str, object] = {
        "user_id": "u1",
        "app": "shop",
        "platform": "ios",
        "token": TOKEN,
        "actor": "api:test",
    }
    values.update(fields)
    async with sessions() as session, session.begin():
        return await register_device(session, now=now, **values)  # type: ignore[arg-type]


async def events(sessions: Sessions) -> list[tuple[str, str | None]]:
    async with sessions() as session:
        result = await session.execute(select(TokenEvent).order_by(TokenEvent.id))  # type: ignore[arg-type]
        return [(event.kind, event.reason) for event in result.scalars()]


async def test_new_token_is_created_active_with_defaults(sessions: Sessions) -> None:
    registration = await register(sessions, timezone="Europe/Paris", locale="fr-FR")

    device = registration.device
    assert registration.created and registration.retired is None
    assert registration.previous_user_id is None
    assert (device.status, device.environment, device.permission) == (
        "active",
        "production",
        "unknown",
    )
    assert device.timezone == "Europe/Paris" and device.created_at == T0
    assert await events(sessions) == [(TokenEventKind.REGISTERED, None)]


async def test_registering_again_refreshes_the_same_row(sessions: Sessions) -> None:
    first = await register(sessions, timezone="Europe/Paris", permission="granted")
    later = T0 + timedelta(days=3)
    again = await register(sessions, later, timezone="Asia/Tokyo", locale="ja-JP")

    assert not again.created
    assert again.device.id == first.device.id
    assert again.device.last_seen_at == later and again.device.created_at == T0
    assert (again.device.timezone, again.device.locale) == ("Asia/Tokyo", "ja-JP")
    assert again.device.permission == "granted"  # not given: kept
    assert await events(sessions) == [(TokenEventKind.REGISTERED, None)]  # refreshes are quiet


async def test_same_token_on_another_app_or_platform_is_another_device(sessions: Sessions) -> None:
    first = await register(sessions)
    other_app = await register(sessions, app="ride")
    other_platform = await register(sessions, platform="android")
    assert len({first.device.id, other_app.device.id, other_platform.device.id}) == 3


async def test_token_of_another_user_moves_to_the_new_user(sessions: Sessions) -> None:
    first = await register(sessions, user_id="alice")
    moved = await register(sessions, T0 + timedelta(hours=1), user_id="bob")

    assert not moved.created and moved.device.id == first.device.id
    assert moved.device.user_id == "bob" and moved.previous_user_id == "alice"
    async with sessions() as session:
        assert await deliverable_devices(session, "alice", "shop") == []
        assert [d.id for d in await deliverable_devices(session, "bob", "shop")] == [
            first.device.id
        ]
    assert (TokenEventKind.MOVED, None) in await events(sessions)


@pytest.mark.parametrize("status", [DeviceStatus.INVALID, DeviceStatus.STALE])
async def test_invalid_or_stale_token_registered_again_becomes_active(
    sessions: Sessions, status: DeviceStatus
) -> None:
    first = await register(sessions)
    async with sessions() as session, session.begin():
        device = await session.get(Device, first.device.id)
        assert device is not None
        device.status = status
        device.invalid_reason = "Unregistered" if status == DeviceStatus.INVALID else None
        device.invalidated_at = T0

    again = await register(sessions, T0 + timedelta(days=1))

    assert again.device.status == DeviceStatus.ACTIVE
    assert again.device.invalid_reason is None and again.device.invalidated_at is None
    kinds = [kind for kind, _ in await events(sessions)]
    assert kinds == [TokenEventKind.REGISTERED, TokenEventKind.REACTIVATED]


async def test_replaces_retires_the_old_token(sessions: Sessions) -> None:
    old = await register(sessions, token=OTHER)
    later = T0 + timedelta(minutes=5)
    new = await register(sessions, later, replaces=OTHER)

    assert new.created
    assert new.retired is not None and new.retired.id == old.device.id
    assert new.retired.status == DeviceStatus.INVALID
    assert new.retired.invalid_reason == "replaced" and new.retired.invalidated_at == later
    async with sessions() as session:
        assert [d.token for d in await deliverable_devices(session, "u1", "shop")] == [TOKEN]
    assert (TokenEventKind.REPLACED, "replaced") in await events(sessions)


async def test_replaces_an_unknown_or_identical_token_retires_nothing(sessions: Sessions) -> None:
    assert (await register(sessions, replaces="never-seen-token")).retired is None
    assert (await register(sessions, replaces=TOKEN)).retired is None


async def test_concurrent_registrations_of_one_new_token_both_succeed(sessions: Sessions) -> None:
    results = await asyncio.gather(
        *(register(sessions, user_id=f"user{i}") for i in range(4)), return_exceptions=True
    )

    assert not [r for r in results if isinstance(r, BaseException)], results
    assert sum(r.created for r in results) == 1  # type: ignore[union-attr]
    assert len({r.device.id for r in results}) == 1  # type: ignore[union-attr]
    async with sessions() as session:
        rows = (await session.execute(select(Device))).scalars().all()
    assert len(rows) == 1


async def test_unregister_deletes_the_row_and_keeps_an_event(sessions: Sessions) -> None:
    device = (await register(sessions)).device
    async with sessions() as session, session.begin():
        removed = await unregister_device(session, device.id, now=T0, actor="api:test")
        missing = await unregister_device(session, "no-such-id", now=T0, actor="api:test")
    assert removed is not None and removed.id == device.id and missing is None
    async with sessions() as session:
        assert await user_devices(session, "u1") == []
    assert await events(sessions) == [
        (TokenEventKind.REGISTERED, None),
        (TokenEventKind.UNREGISTERED, None),
    ]


async def test_forget_user_removes_every_device_of_that_user_only(sessions: Sessions) -> None:
    await register(sessions)
    await register(sessions, token=OTHER, platform="android")
    await register(sessions, user_id="someone-else", token="c" * 64)
    async with sessions() as session, session.begin():
        assert await forget_user_devices(session, "u1", now=T0, actor="api:erase") == 2
    async with sessions() as session:
        assert await user_devices(session, "u1") == []
        assert len(await user_devices(session, "someone-else")) == 1


async def test_denied_permission_is_registered_but_not_deliverable(sessions: Sessions) -> None:
    await register(sessions, permission="denied")
    async with sessions() as session:
        assert await deliverable_devices(session, "u1", "shop") == []
        assert len(await user_devices(session, "u1")) == 1


async def test_registration_after_a_410_reactivates(sessions: Sessions) -> None:
    device = (await register(sessions)).device
    dead = DeliveryReport(
        Outcome.TOKEN_DEAD, reason="Unregistered", status=410, token_invalid_since=T0
    )
    async with sessions() as session, session.begin():
        await apply_report(session, device.id, dead, now=T0 + timedelta(hours=1), actor="w")
    again = await register(sessions, T0 + timedelta(hours=2))
    assert again.device.status == DeviceStatus.ACTIVE


async def test_a_permission_change_is_kept_in_the_audit_trail(sessions: Sessions) -> None:
    first = await register(sessions, permission="granted")
    same = await register(sessions, T0 + timedelta(hours=1), permission="granted")
    changed = await register(sessions, T0 + timedelta(hours=2), permission="denied")

    assert (first.previous_permission, first.permission_changed) == (None, True)
    assert (same.previous_permission, same.permission_changed) == ("granted", False)
    assert (changed.previous_permission, changed.permission_changed) == ("granted", True)
    assert changed.device.updated_at == T0 + timedelta(hours=2)
    assert await events(sessions) == [
        (TokenEventKind.REGISTERED, None),
        (TokenEventKind.PERMISSION, "denied"),
    ]


async def test_a_new_device_without_a_permission_changes_none(sessions: Sessions) -> None:
    registration = await register(sessions)
    assert registration.device.permission == "unknown"
    assert not registration.permission_changed


async def test_a_yes_without_a_device_goes_to_the_undecided_active_devices(
    sessions: Sessions,
) -> None:
    unknown = (await register(sessions)).device
    provisional = (await register(sessions, token=OTHER, permission="provisional")).device
    denied = (await register(sessions, token="c" * 64, permission="denied")).device
    stale = (await register(sessions, token="d" * 64)).device
    android = (await register(sessions, token="e" * 64, platform="android")).device
    elsewhere = (await register(sessions, token="f" * 64, app="ride")).device
    async with sessions() as session, session.begin():
        device = await session.get(Device, stale.id)
        assert device is not None
        device.status = DeviceStatus.STALE

    async with sessions() as session, session.begin():
        changed = await grant_undecided_devices(
            session, user_id="u1", app="shop", platform="ios", now=T0, actor="api:test"
        )

    assert sorted(device.id for device in changed) == sorted([unknown.id, provisional.id])
    async with sessions() as session:
        permissions = {d.id: d.permission for d in await user_devices(session, "u1")}
    assert permissions == {
        unknown.id: "granted",
        provisional.id: "granted",
        denied.id: "denied",
        stale.id: "unknown",
        android.id: "unknown",
        elsewhere.id: "unknown",
    }
