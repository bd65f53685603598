"""The device-token registry's tables: devices and the audit trail of what happened to each token.

Times are stored as UTC; :class:`UTCDateTime` hands back aware datetimes on SQLite too (which has
no time zone type), so no naive datetime ever leaves the storage layer.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlmodel import Field, SQLModel


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """A timestamp stored as UTC and always returned aware (UTC)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; pass an aware UTC datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utc_column(*, nullable: bool = False, index: bool = False) -> Any:
    return sa.Column(UTCDateTime(), nullable=nullable, index=index)


def new_id() -> str:
    return str(uuid.uuid4())


class Platform(StrEnum):
    IOS = "ios"
    ANDROID = "android"


class Environment(StrEnum):
    PRODUCTION = "production"
    SANDBOX = "sandbox"


class Permission(StrEnum):
    GRANTED = "granted"
    PROVISIONAL = "provisional"
    DENIED = "denied"
    UNKNOWN = "unknown"


class DeviceStatus(StrEnum):
    ACTIVE = "active"
    INVALID = "invalid"  # a provider said the token is dead; kept with its reason until purged
    STALE = "stale"  # not seen for stale_after_days; not sent to


class Device(SQLModel, table=True):
    __tablename__ = "devices"
    __table_args__ = (
        sa.UniqueConstraint("app", "platform", "token", name="uq_devices_app_platform_token"),
        sa.Index("ix_devices_user_app", "user_id", "app"),
        sa.Index("ix_devices_status_last_seen", "status", "last_seen_at"),
        # the purge of tokens invalid for more than N days
        sa.Index("ix_devices_status_invalidated", "status", "invalidated_at"),
        # the console's token counts per app, platform and status, read from the index alone
        sa.Index("ix_devices_app_platform_status", "app", "platform", "status"),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    user_id: str = Field(max_length=128)
    app: str = Field(max_length=64)
    platform: str = Field(max_length=16)
    token: str = Field(max_length=4096)
    environment: str = Field(default=Environment.PRODUCTION, max_length=16)
    timezone: str | None = Field(default=None, max_length=64)
    locale: str | None = Field(default=None, max_length=35)
    permission: str = Field(default=Permission.UNKNOWN, max_length=16)
    status: str = Field(default=DeviceStatus.ACTIVE, max_length=16)
    invalid_reason: str | None = Field(default=None, max_length=64)
    invalidated_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    invalidated_by: str | None = Field(default=None, max_length=128)
    created_at: datetime = Field(sa_column=utc_column())
    last_seen_at: datetime = Field(sa_column=utc_column())
    updated_at: datetime = Field(sa_column=utc_column())


@dataclass(frozen=True, slots=True)
class DeviceState:
    """The columns of a device that deciding and sending need, read as plain values: loading
    a tracked ORM instance per device cost more than the decision it served."""

    id: str
    user_id: str
    app: str
    platform: str
    token: str
    environment: str
    timezone: str | None
    permission: str
    status: str
    invalid_reason: str | None
    last_seen_at: datetime

    @classmethod
    def columns(cls) -> list[sa.Column[Any]]:
        """The devices table's columns, in field order."""
        table = Device.__table__  # type: ignore[attr-defined]
        return [table.c[name] for name in cls.__dataclass_fields__]


class TokenEventKind(StrEnum):
    REGISTERED = "registered"
    MOVED = "moved"  # re-registered by another user (shared device)
    REPLACED = "replaced"  # retired by a registration naming it in `replaces`
    INVALIDATED = "invalidated"
    REACTIVATED = "reactivated"
    STALE = "stale"
    UNREGISTERED = "unregistered"
    PURGED = "purged"
    PERMISSION = "permission"  # the device's notification permission changed; reason: the new one


class TokenEvent(SQLModel, table=True):
    """The audit trail: who or what changed a token's state, when, and why.

    ``token_suffix`` keeps the last 6 characters only, so the trail survives a purge without
    keeping a usable token around.
    """

    __tablename__ = "token_events"
    # the console's invalidations per day: one kind over a range of days
    __table_args__ = (sa.Index("ix_token_events_kind_at", "kind", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    device_id: str = Field(max_length=36, index=True)
    app: str = Field(max_length=64)
    platform: str = Field(max_length=16)
    token_suffix: str = Field(max_length=6)
    kind: str = Field(max_length=16)
    reason: str | None = Field(default=None, max_length=64)
    actor: str = Field(max_length=128)
    at: datetime = Field(sa_column=utc_column(index=True))


def token_suffix(token: str) -> str:
    """The last 6 characters: enough to correlate in logs, useless to an attacker."""
    return token[-6:]


def utcnow() -> datetime:
    return datetime.now(UTC)
