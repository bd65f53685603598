"""Registry hygiene in bulk: stale devices and the purge of long-invalid tokens.

Both jobs work in batches, each batch one transaction, so they can be interrupted at any point
and simply run again: a batch either committed (its rows no longer match) or left no trace. On
PostgreSQL each batch claims its rows with ``FOR UPDATE SKIP LOCKED``, so two operators (or an
operator and the delivery worker) never block on or double-process the same rows.

Staleness: a device whose app has not registered for ``stale_after_days`` (per platform; FCM
itself treats Android tokens as expired after 270 days of inactivity) becomes ``stale``. The
gateway sends nothing to stale devices, exactly as for invalid ones; unlike invalid ones they
are not purged, and the next registration from the app (every launch) makes them active again.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tokens.models import Device, DeviceStatus, TokenEvent, TokenEventKind, UTCDateTime

DEFAULT_BATCH_SIZE = 5_000

devices = cast(sa.Table, Device.__table__)  # type: ignore[attr-defined]
token_events = cast(sa.Table, TokenEvent.__table__)  # type: ignore[attr-defined]

# called after each committed batch with that batch's counts per (app, platform)
ProgressCallback = Callable[[Counter[tuple[str, str]]], None]


@dataclass
class CleanupResult:
    """What a cleanup or purge did (or, with ``dry_run``, would do), per (app, platform)."""

    dry_run: bool
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    batches: int = 0

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def stale_cutoffs(now: datetime, stale_after_days: Mapping[str, int]) -> dict[str, datetime]:
    """Per platform, the ``last_seen_at`` before which a device is stale."""
    return {platform: now - timedelta(days=days) for platform, days in stale_after_days.items()}


def _stale_condition(cutoffs: Mapping[str, datetime], app: str | None) -> sa.ColumnElement[bool]:
    if not cutoffs:
        return sa.false()
    if len(set(cutoffs.values())) == 1:
        seen = sa.and_(
            devices.c.platform.in_(list(cutoffs)),
            devices.c.last_seen_at < next(iter(cutoffs.values())),
        )
    else:
        seen = sa.or_(
            *(
                sa.and_(devices.c.platform == platform, devices.c.last_seen_at < cutoff)
                for platform, cutoff in cutoffs.items()
            )
        )
    condition = sa.and_(devices.c.status == DeviceStatus.ACTIVE, seen)
    if app is not None:
        condition = sa.and_(condition, devices.c.app == app)
    return condition


def _purge_condition(invalidated_before: datetime) -> sa.ColumnElement[bool]:
    return sa.and_(
        devices.c.status == DeviceStatus.INVALID,
        devices.c.invalidated_at < invalidated_before,
    )


async def _count(session: AsyncSession, condition: sa.ColumnElement[bool]) -> Counter[Any]:
    result = await session.execute(
        sa.select(devices.c.app, devices.c.platform, sa.func.count())
        .where(condition)
        .group_by(devices.c.app, devices.c.platform)
    )
    return Counter({(app, platform): count for app, platform, count in result})


async def count_stale_candidates(
    session: AsyncSession, *, cutoffs: Mapping[str, datetime], app: str | None = None
) -> Counter[tuple[str, str]]:
    """How many active devices per (app, platform) were last seen before their cutoff."""
    return await _count(session, _stale_condition(cutoffs, app))


async def count_purge_candidates(
    session: AsyncSession, *, invalidated_before: datetime
) -> Counter[tuple[str, str]]:
    """How many invalid devices per (app, platform) were invalidated before the cutoff."""
    return await _count(session, _purge_condition(invalidated_before))


async def _claim(session: AsyncSession, condition: sa.ColumnElement[bool], limit: int) -> list[str]:
    """The ids of up to ``limit`` matching devices, skipping rows another worker holds.

    On PostgreSQL the rows stay locked until the batch commits. On SQLite nothing is locked
    yet, so the statements that follow repeat ``condition``: a device refreshed by a
    registration in between drops out of the batch.
    """
    batch = sa.select(devices.c.id).where(condition).limit(limit)
    if session.get_bind().dialect.name == "postgresql":
        batch = batch.with_for_update(skip_locked=True)
    return list((await session.execute(batch)).scalars())


def _event_rows(
    session: AsyncSession,
    ids: list[str],
    kind: TokenEventKind,
    reason: sa.ColumnElement[Any],
    *,
    now: datetime,
    actor: str,
    condition: sa.ColumnElement[bool] | None = None,
) -> sa.Insert:
    """``INSERT INTO token_events ... SELECT`` from the devices: no row travels through Python."""
    if session.get_bind().dialect.name == "postgresql":
        suffix = sa.func.right(devices.c.token, 6)
    else:
        suffix = sa.func.substr(devices.c.token, -6)
    return sa.insert(token_events).from_select(
        ["device_id", "app", "platform", "token_suffix", "kind", "reason", "actor", "at"],
        sa.select(
            devices.c.id,
            devices.c.app,
            devices.c.platform,
            suffix,
            sa.literal(str(kind)),
            reason,
            sa.literal(actor),
            sa.literal(now, UTCDateTime()),
        ).where(devices.c.id.in_(ids), condition if condition is not None else sa.true()),
    )


async def mark_stale_batch(
    session: AsyncSession,
    *,
    now: datetime,
    cutoffs: Mapping[str, datetime],
    actor: str,
    app: str | None = None,
    limit: int = DEFAULT_BATCH_SIZE,
) -> Counter[tuple[str, str]] | None:
    """Mark up to ``limit`` stale devices in the caller's transaction, each with an audit event.

    Returns how many per (app, platform), or ``None`` when nothing is left to do (an empty
    counter: every claimed device was refreshed meanwhile).
    """
    condition = _stale_condition(cutoffs, app)
    ids = await _claim(session, condition, limit)
    if not ids:
        return None
    result = await session.execute(
        sa.update(devices)
        .where(devices.c.id.in_(ids), condition)
        .values(status=DeviceStatus.STALE, updated_at=now)
        .returning(devices.c.id, devices.c.app, devices.c.platform)
    )
    rows = result.all()
    marked = [row.id for row in rows]
    if marked:
        await session.execute(
            _event_rows(session, marked, TokenEventKind.STALE, sa.null(), now=now, actor=actor)
        )
    return Counter((row.app, row.platform) for row in rows)


async def purge_batch(
    session: AsyncSession,
    *,
    now: datetime,
    invalidated_before: datetime,
    actor: str,
    limit: int = DEFAULT_BATCH_SIZE,
) -> Counter[tuple[str, str]] | None:
    """Delete up to ``limit`` long-invalid devices, keeping a ``purged`` audit event for each.

    Returns how many per (app, platform), or ``None`` when nothing is left to do.
    """
    condition = _purge_condition(invalidated_before)
    ids = await _claim(session, condition, limit)
    if not ids:
        return None
    # the events first: they are copied from the rows about to go
    await session.execute(
        _event_rows(
            session,
            ids,
            TokenEventKind.PURGED,
            devices.c.invalid_reason,
            now=now,
            actor=actor,
            condition=condition,
        )
    )
    result = await session.execute(
        sa.delete(devices)
        .where(devices.c.id.in_(ids), condition)
        .returning(devices.c.app, devices.c.platform)
    )
    return Counter((row.app, row.platform) for row in result)


async def mark_stale_devices(
    sessions: async_sessionmaker[AsyncSession],
    *,
    now: datetime,
    cutoffs: Mapping[str, datetime],
    actor: str,
    app: str | None = None,
    dry_run: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_batch: ProgressCallback | None = None,
) -> CleanupResult:
    """Mark every active device last seen before its platform's cutoff as ``stale``.

    Commits once per batch of ``batch_size``; ``on_batch(counts)`` is called after each commit.
    With ``dry_run`` nothing is written and the counts are what a real run would mark now.
    """
    if dry_run:
        async with sessions() as session:
            counts = await count_stale_candidates(session, cutoffs=cutoffs, app=app)
        return CleanupResult(dry_run=True, counts=counts)

    result = CleanupResult(dry_run=False)
    while True:
        async with sessions() as session, session.begin():
            batch = await mark_stale_batch(
                session, now=now, cutoffs=cutoffs, actor=actor, app=app, limit=batch_size
            )
        if batch is None:
            return result
        result.counts.update(batch)
        result.batches += 1
        if on_batch is not None:
            on_batch(batch)


async def purge_invalid_devices(
    sessions: async_sessionmaker[AsyncSession],
    *,
    now: datetime,
    invalidated_before: datetime,
    actor: str,
    dry_run: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_batch: ProgressCallback | None = None,
) -> CleanupResult:
    """Delete every device invalid since before ``invalidated_before``, in committed batches.

    Each deleted device leaves a ``purged`` audit event (id, token suffix, the invalid reason).
    """
    if dry_run:
        async with sessions() as session:
            counts = await count_purge_candidates(session, invalidated_before=invalidated_before)
        return CleanupResult(dry_run=True, counts=counts)

    result = CleanupResult(dry_run=False)
    while True:
        async with sessions() as session, session.begin():
            batch = await purge_batch(
                session,
                now=now,
                invalidated_before=invalidated_before,
                actor=actor,
                limit=batch_size,
            )
        if batch is None:
            return result
        result.counts.update(batch)
        result.batches += 1
        if on_batch is not None:
            on_batch(batch)
