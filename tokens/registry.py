"""Registry queries and rules for device tokens.

Functions take an :class:`AsyncSession` that the caller (the gateway) owns and commits, and an
aware ``now``; none of them reads the clock.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from tokens.models import Device, DeviceStatus, Permission


async def deliverable_devices(session: AsyncSession, user_id: str, app: str) -> Sequence[Device]:
    """The user's active devices for ``app`` whose notification permission is not denied."""
    result = await session.execute(
        select(Device).where(
            Device.user_id == user_id,
            Device.app == app,
            Device.status == DeviceStatus.ACTIVE,
            Device.permission != Permission.DENIED,
        )
    )
    return result.scalars().all()


async def latest_device_timezone(session: AsyncSession, user_id: str) -> str | None:
    """The time zone reported by the user's most recently seen device that reported one."""
    result = await session.execute(
        sa.select(Device.timezone)
        .where(Device.user_id == user_id, col(Device.timezone).is_not(None))
        .order_by(col(Device.last_seen_at).desc())
        .limit(1)
    )
    return result.scalar_one_or_none()
