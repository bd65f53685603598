"""The operator commands, run through click against a real SQLite file and PostgreSQL schema."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from click.testing import Result
from sqlmodel import select

from gateway.models import Delivery, Notification
from tests.cli.conftest import Sessions, append_config, invoke
from tokens import apply_report, register_device
from tokens.models import Device, TokenEvent
from tokens.reports import DeliveryReport, Outcome

NOW = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)


async def add_device(
    sessions: Sessions, token: str, *, seen: datetime, platform: str = "ios", app: str = "shop"
) -> str:
    async with sessions() as session, session.begin():
        registration = await register_device(
            session,
            now=seen,
            user_id="u1",
            app=app,
            platform=platform,
            token=token,
            actor="test",
        )
    return registration.device.id


async def invalidate(sessions: Sessions, device_id: str, at: datetime) -> None:
    report = DeliveryReport(Outcome.TOKEN_DEAD, reason="BadDeviceToken", status=400)
    async with sessions() as session, session.begin():
        await apply_report(session, device_id, report, now=at, actor="test")


async def statuses(sessions: Sessions) -> dict[str, str]:
    async with sessions() as session:
        rows = (await session.execute(select(Device))).scalars().all()
    return {device.token: device.status for device in rows}


async def test_stats_shows_a_row_per_app_platform_and_status(
    config: Path, sessions: Sessions
) -> None:
    await add_device(sessions, "ios-1-aaaaaa", seen=NOW)
    await add_device(sessions, "ios-2-bbbbbb", seen=NOW)
    await add_device(sessions, "and-1-cccccc", seen=NOW, platform="android", app="ride")
    dead = await add_device(sessions, "ios-3-dddddd", seen=NOW)
    await invalidate(sessions, dead, NOW)

    result = await invoke(config, "tokens", "stats")

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any("shop" in line and "active" in line and " 2 " in f"{line} " for line in lines)
    assert any("shop" in line and "invalid" in line for line in lines)
    assert any("ride" in line and "android" in line for line in lines)
    assert any("total" in line and "4" in line for line in lines)


async def test_cleanup_marks_stale_with_summary(config: Path, sessions: Sessions) -> None:
    await add_device(sessions, "old-ios-aaaaaa", seen=NOW - timedelta(days=40))
    await add_device(sessions, "old-and-bbbbbb", seen=NOW - timedelta(days=40), platform="android")
    await add_device(sessions, "new-ios-cccccc", seen=NOW - timedelta(days=5))

    result = await invoke(
        config, "tokens", "cleanup", "--stale-days", "30", "--now", NOW.isoformat()
    )

    assert result.exit_code == 0, result.output
    assert "marked 2 stale devices in 1 batches" in result.output
    assert await statuses(sessions) == {
        "old-ios-aaaaaa": "stale",
        "old-and-bbbbbb": "stale",
        "new-ios-cccccc": "active",
    }


async def test_cleanup_dry_run_changes_nothing(config: Path, sessions: Sessions) -> None:
    await add_device(sessions, "old-ios-aaaaaa", seen=NOW - timedelta(days=40))
    before = await statuses(sessions)

    result = await invoke(
        config, "tokens", "cleanup", "--stale-days", "30", "--dry-run", "--now", NOW.isoformat()
    )

    assert result.exit_code == 0, result.output
    assert "would mark 1 stale devices; nothing changed (dry run)" in result.output
    assert await statuses(sessions) == before


async def test_cleanup_defaults_to_the_configured_days_per_platform(
    config: Path, sessions: Sessions
) -> None:
    append_config(config, "[tokens]\nstale_after_days = {ios = 60, android = 10}\n")
    await add_device(sessions, "ios-30-aaaaaa", seen=NOW - timedelta(days=30))
    await add_device(sessions, "and-30-bbbbbb", seen=NOW - timedelta(days=30), platform="android")

    result = await invoke(config, "tokens", "cleanup", "--app", "shop", "--now", NOW.isoformat())

    assert result.exit_code == 0, result.output
    assert await statuses(sessions) == {"ios-30-aaaaaa": "active", "and-30-bbbbbb": "stale"}


async def test_cleanup_rerun_after_partial_work_finishes(config: Path, sessions: Sessions) -> None:
    for i in range(7):
        await add_device(sessions, f"old-{i}-aaaaaa", seen=NOW - timedelta(days=40))
    args = ("tokens", "cleanup", "--stale-days", "30", "--now", NOW.isoformat())

    first = await invoke(config, *args, "--batch-size", "3")
    again = await invoke(config, *args)

    assert "marked 7 stale devices in 3 batches" in first.output
    assert "marked 0 stale devices" in again.output and again.exit_code == 0


async def test_purge_deletes_old_invalid_tokens_and_keeps_audit(
    config: Path, sessions: Sessions
) -> None:
    old = await add_device(sessions, "old-dead-aaaaaa", seen=NOW - timedelta(days=90))
    recent = await add_device(sessions, "new-dead-bbbbbb", seen=NOW - timedelta(days=90))
    await add_device(sessions, "alive-cccccc", seen=NOW)
    await invalidate(sessions, old, NOW - timedelta(days=45))
    await invalidate(sessions, recent, NOW - timedelta(days=5))
    args = ("tokens", "purge", "--invalid-older-than-days", "30", "--now", NOW.isoformat())

    dry = await invoke(config, *args, "--dry-run")
    assert dry.exit_code == 0 and "would delete 1 invalid devices" in dry.output
    assert len(await statuses(sessions)) == 3

    result = await invoke(config, *args)

    assert result.exit_code == 0, result.output
    assert "deleted 1 invalid devices" in result.output
    assert set(await statuses(sessions)) == {"new-dead-bbbbbb", "alive-cccccc"}
    async with sessions() as session:
        purged = (
            (await session.execute(select(TokenEvent).where(TokenEvent.kind == "purged")))
            .scalars()
            .all()
        )
    assert [(e.device_id, e.token_suffix, e.reason) for e in purged] == [
        (old, "aaaaaa", "BadDeviceToken")
    ]


async def add_notification(
    sessions: Sessions,
    *,
    status: str,
    deliver_at: datetime | None,
    app: str = "shop",
    reason: str | None = None,
) -> str:
    async with sessions() as session, session.begin():
        notification = Notification(
            user_id="u1",
            app=app,
            tier="promotional",
            classified_by="tier",
            status=status,
            reason=reason or ("quiet_hours" if status == "deferred" else None),
            title="Sale",
            sender="marketing",
            deliver_at=deliver_at,
            expires_at=NOW + timedelta(days=3),
            created_at=NOW,
            updated_at=NOW,
        )
        session.add(notification)
    return notification.id


async def test_notifications_show_prints_the_notification_and_deliveries(
    config: Path, sessions: Sessions
) -> None:
    notification_id = await add_notification(sessions, status="sent", deliver_at=None)
    async with sessions() as session, session.begin():
        session.add(
            Delivery(
                notification_id=notification_id,
                device_id="device-1",
                platform="ios",
                app="shop",
                status="sent",
                attempts=2,
                provider_id="apns-123",
                next_attempt_at=NOW,
                created_at=NOW,
                updated_at=NOW,
            )
        )

    result = await invoke(config, "notifications", "show", notification_id)
    as_json = await invoke(config, "notifications", "show", notification_id, "--json")

    assert result.exit_code == 0, result.output
    assert "marketing" in result.output and "apns-123" in result.output
    assert "send_at" in result.output and "decided by" in result.output
    document = json.loads(as_json.output)
    assert document["id"] == notification_id
    assert [d["provider_id"] for d in document["deliveries"]] == ["apns-123"]


async def test_notifications_show_unknown_id_exits_1(config: Path, engine: object) -> None:
    result = await invoke(config, "notifications", "show", "no-such-id")
    assert result.exit_code == 1
    assert "no notification no-such-id" in result.output


async def test_deferred_stats_counts_per_release_hour(config: Path, sessions: Sessions) -> None:
    # NOW is 12:30 UTC: hour 0 runs 12:30-13:00, hour 1 13:00-14:00 ...
    for deliver_at, reason in (
        (NOW - timedelta(minutes=1), "quiet_hours"),  # overdue
        (NOW + timedelta(minutes=10), "quiet_hours"),  # hour 0
        (NOW + timedelta(minutes=40), "quiet_hours"),  # 13:10, hour 1
        (NOW + timedelta(minutes=45), "scheduled"),  # 13:15, hour 1
        (NOW + timedelta(minutes=50), "scheduled"),  # 13:20, hour 1
        (NOW + timedelta(hours=30), "quiet_hours"),  # later
        (NOW + timedelta(days=200), "scheduled"),  # later
    ):
        await add_notification(sessions, status="deferred", deliver_at=deliver_at, reason=reason)
    await add_notification(sessions, status="queued", deliver_at=NOW + timedelta(minutes=5))

    result = await invoke(config, "deferred", "stats", "--now", NOW.isoformat())

    assert result.exit_code == 0, result.output
    assert "quiet hours" in result.output and "scheduled" in result.output
    rows = {
        cells[0]: tuple(cells[1:])
        for cells in (
            [cell.strip() for cell in line.split("│")[1:-1]] for line in _table_rows(result)
        )
    }
    # quiet hours, scheduled, total
    assert rows["overdue (due before now)"] == ("1", "0", "1")
    assert rows["2026-03-01 12:30 - 13:00"] == ("1", "0", "1")
    assert rows["2026-03-01 13:00 - 14:00"] == ("1", "2", "3")
    assert rows["2026-03-02 11:00 - 12:00"] == ("0", "0", "0")
    assert rows["later (from 2026-03-02 12:00)"] == ("1", "1", "2")
    assert rows["total deferred"] == ("4", "3", "7")


def _table_rows(result: Result) -> list[str]:
    return [line for line in result.output.splitlines() if line.count("│") == 5]


async def test_bad_usage_and_config_exit_2(config: Path, tmp_path: Path) -> None:
    bad_days = await invoke(config, "tokens", "cleanup", "--stale-days", "0")
    assert bad_days.exit_code == 2

    broken = tmp_path / "broken.toml"
    broken.write_text('[database]\nurl = "mysql://nope"\n', encoding="utf-8")
    bad_config = await invoke(broken, "tokens", "stats")
    assert bad_config.exit_code == 2
    assert "database.url" in bad_config.output


async def test_unmigrated_database_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "empty.toml"
    config.write_text(
        f'[database]\nurl = "sqlite+aiosqlite:///{tmp_path / "empty.db"}"\n', encoding="utf-8"
    )
    result = await invoke(config, "tokens", "stats")
    assert result.exit_code == 2
    assert "pushgate db upgrade" in " ".join(result.output.split())
