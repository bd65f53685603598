"""Stale cleanup and purge: the rules, dry runs, interruption and re-run, and volume."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tokens import mark_stale_devices, purge_invalid_devices, stale_cutoffs, token_stats
from tokens.cleanup import devices, token_events
from tokens.models import DeviceStatus, TokenEventKind

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
Sessions = async_sessionmaker[AsyncSession]


async def insert_devices(
    engine: AsyncEngine,
    count: int,
    *,
    last_seen_at: datetime,
    app: str = "shop",
    platform: str = "ios",
    status: str = DeviceStatus.ACTIVE,
    invalidated_at: datetime | None = None,
    prefix: str = "d",
) -> None:
    """Bulk core inserts, in chunks: fast enough for hundreds of thousands of rows."""
    chunk = 10_000
    async with engine.begin() as connection:
        for start in range(0, count, chunk):
            await connection.execute(
                sa.insert(devices),
                [
                    {
                        "id": f"{prefix}-{app}-{platform}-{i:08d}",
                        "user_id": f"user-{i}",
                        "app": app,
                        "platform": platform,
                        "token": f"{prefix}{platform}{app}{i:064d}",
                        "environment": "production",
                        "permission": "granted",
                        "status": status,
                        "invalid_reason": "Unregistered" if invalidated_at else None,
                        "invalidated_at": invalidated_at,
                        "created_at": last_seen_at,
                        "last_seen_at": last_seen_at,
                        "updated_at": last_seen_at,
                    }
                    for i in range(start, min(start + chunk, count))
                ],
            )


async def status_counts(sessions: Sessions) -> Counter[tuple[str, str, str]]:
    async with sessions() as session:
        return Counter(
            {(row.app, row.platform, row.status): row.count for row in await token_stats(session)}
        )


async def event_counts(engine: AsyncEngine) -> Counter[str]:
    async with engine.connect() as connection:
        result = await connection.execute(
            sa.select(token_events.c.kind, sa.func.count()).group_by(token_events.c.kind)
        )
        return Counter({kind: count for kind, count in result})


def cutoffs(days: int = 270) -> dict[str, datetime]:
    return stale_cutoffs(NOW, {"ios": days, "android": days})


async def test_only_active_devices_seen_before_the_cutoff_become_stale(
    engine: AsyncEngine, sessions: Sessions
) -> None:
    cutoff = NOW - timedelta(days=270)
    await insert_devices(engine, 3, last_seen_at=cutoff - timedelta(seconds=1), prefix="old")
    await insert_devices(engine, 2, last_seen_at=cutoff, prefix="edge")  # exactly at: kept
    await insert_devices(engine, 4, last_seen_at=NOW - timedelta(days=1), prefix="new")
    await insert_devices(
        engine,
        5,
        last_seen_at=cutoff - timedelta(days=9),
        status=DeviceStatus.INVALID,
        invalidated_at=NOW - timedelta(days=1),
        prefix="dead",
    )

    result = await mark_stale_devices(sessions, now=NOW, cutoffs=cutoffs(), actor="test")

    assert result.total == 3 and result.counts == Counter({("shop", "ios"): 3})
    assert await status_counts(sessions) == Counter(
        {("shop", "ios", "active"): 6, ("shop", "ios", "stale"): 3, ("shop", "ios", "invalid"): 5}
    )
    assert (await event_counts(engine))[TokenEventKind.STALE] == 3


async def test_cutoffs_per_platform_and_app_filter(engine: AsyncEngine, sessions: Sessions) -> None:
    seen = NOW - timedelta(days=100)
    for app in ("shop", "ride"):
        for platform in ("ios", "android"):
            await insert_devices(engine, 2, last_seen_at=seen, app=app, platform=platform)

    per_platform = stale_cutoffs(NOW, {"ios": 90, "android": 270})
    result = await mark_stale_devices(
        sessions, now=NOW, cutoffs=per_platform, actor="test", app="shop"
    )

    assert result.counts == Counter({("shop", "ios"): 2})


async def test_dry_run_counts_and_changes_nothing(engine: AsyncEngine, sessions: Sessions) -> None:
    await insert_devices(engine, 7, last_seen_at=NOW - timedelta(days=400))
    before = await status_counts(sessions)

    result = await mark_stale_devices(
        sessions, now=NOW, cutoffs=cutoffs(), actor="test", dry_run=True
    )

    assert result.dry_run and result.total == 7 and result.batches == 0
    assert await status_counts(sessions) == before
    assert await event_counts(engine) == Counter()


async def test_interrupted_cleanup_finishes_when_run_again(
    engine: AsyncEngine, sessions: Sessions
) -> None:
    await insert_devices(engine, 1_000, last_seen_at=NOW - timedelta(days=400))

    class Interrupted(Exception):
        pass

    def interrupt_after_three_batches(_batch: Counter[tuple[str, str]]) -> None:
        nonlocal batches
        batches += 1
        if batches == 3:
            raise Interrupted

    batches = 0
    with pytest.raises(Interrupted):
        await mark_stale_devices(
            sessions,
            now=NOW,
            cutoffs=cutoffs(),
            actor="test",
            batch_size=100,
            on_batch=interrupt_after_three_batches,
        )
    assert (await status_counts(sessions))[("shop", "ios", "stale")] == 300  # committed batches

    rerun = await mark_stale_devices(
        sessions, now=NOW, cutoffs=cutoffs(), actor="test", batch_size=100
    )

    assert rerun.total == 700
    assert await status_counts(sessions) == Counter({("shop", "ios", "stale"): 1_000})
    assert (await event_counts(engine))[TokenEventKind.STALE] == 1_000  # one event per device


async def test_purge_deletes_long_invalid_devices_and_keeps_events(
    engine: AsyncEngine, sessions: Sessions
) -> None:
    seen = NOW - timedelta(days=60)
    await insert_devices(
        engine,
        4,
        last_seen_at=seen,
        status=DeviceStatus.INVALID,
        invalidated_at=NOW - timedelta(days=31),
        prefix="old",
    )
    await insert_devices(
        engine,
        3,
        last_seen_at=seen,
        status=DeviceStatus.INVALID,
        invalidated_at=NOW - timedelta(days=29),
        prefix="recent",
    )
    await insert_devices(engine, 2, last_seen_at=seen, status=DeviceStatus.STALE, prefix="st")
    before = NOW - timedelta(days=30)

    dry = await purge_invalid_devices(
        sessions, now=NOW, invalidated_before=before, actor="t", dry_run=True
    )
    assert dry.total == 4
    assert sum((await status_counts(sessions)).values()) == 9

    result = await purge_invalid_devices(
        sessions, now=NOW, invalidated_before=before, actor="t", batch_size=3
    )

    assert result.total == 4 and result.batches == 2
    assert await status_counts(sessions) == Counter(
        {("shop", "ios", "invalid"): 3, ("shop", "ios", "stale"): 2}
    )
    async with engine.connect() as connection:
        purged = (
            await connection.execute(
                sa.select(token_events.c.token_suffix, token_events.c.reason).where(
                    token_events.c.kind == TokenEventKind.PURGED
                )
            )
        ).all()
    assert len(purged) == 4
    assert all(len(suffix) == 6 and reason == "Unregistered" for suffix, reason in purged)


@pytest.mark.slow
async def test_cleanup_of_200_000_devices(engine: AsyncEngine, sessions: Sessions) -> None:
    await insert_devices(engine, 150_000, last_seen_at=NOW - timedelta(days=300))
    await insert_devices(
        engine, 50_000, last_seen_at=NOW - timedelta(days=3), platform="android", prefix="fresh"
    )

    started = time.perf_counter()
    result = await mark_stale_devices(sessions, now=NOW, cutoffs=cutoffs(), actor="test")
    elapsed = time.perf_counter() - started  # reported, never asserted

    print(f"\n{engine.dialect.name}: marked {result.total} of 200000 in {elapsed:.1f}s")
    assert result.total == 150_000 and result.batches == 30
    assert await status_counts(sessions) == Counter(
        {("shop", "ios", "stale"): 150_000, ("shop", "android", "active"): 50_000}
    )
    assert (await event_counts(engine))[TokenEventKind.STALE] == 150_000
