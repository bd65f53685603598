"""Tables the gateway owns: preferences, notifications, deliveries and idempotency records.

Devices and the token audit trail belong to :mod:`tokens.models`. The notification and delivery
rows are also the durable queue: their ``status`` columns, and the deliveries' leases, are the
journal that a restarted or second process picks work up from.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlmodel import JSON, Column, Field, SQLModel

from tokens.models import new_id, utc_column


class NotificationStatus(StrEnum):
    QUEUED = "queued"
    DEFERRED = "deferred"
    SENT = "sent"
    FAILED = "failed"
    DROPPED = "dropped"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


PENDING_NOTIFICATION_STATUSES = (NotificationStatus.QUEUED, NotificationStatus.DEFERRED)


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"
    INVALID_TOKEN = "invalid_token"


class DeliveryEnd(StrEnum):
    """Why a delivery ended (``deliveries.end_reason``; null while it is pending). The
    ``error`` column keeps the provider's own words; this says what they came to."""

    DELIVERED = "delivered"  # the provider accepted it
    TOKEN_DEAD = "token_dead"  # the provider said the token will never work again
    REJECTED = "rejected"  # the provider refused this message for good (auth, size ...)
    EXPIRED = "expired"  # the notification ran out of time before it could be sent
    ATTEMPTS_EXHAUSTED = "attempts_exhausted"  # transient failures until the attempt limit
    CANCELLED = "cancelled"  # its notification was cancelled
    DEVICE_UNAVAILABLE = "device_unavailable"  # the device was unregistered, died or went stale


class Preference(SQLModel, table=True):
    __tablename__ = "preferences"

    user_id: str = Field(primary_key=True, max_length=128)
    timezone: str | None = Field(default=None, max_length=64)
    behavioral: bool | None = None
    promotional: bool | None = None
    quiet_start: str | None = Field(default=None, max_length=5)  # "HH:MM"
    quiet_end: str | None = Field(default=None, max_length=5)
    updated_at: datetime = Field(sa_column=utc_column())


class PreferenceChange(SQLModel, table=True):
    """One change of a user's preferences: when, by which API key, and each field's old and new
    value (``{field: [old, new]}``). Consent is the user's; this is the evidence of it."""

    __tablename__ = "preference_changes"
    __table_args__ = (sa.Index("ix_preference_changes_user_at", "user_id", "at", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    user_id: str = Field(max_length=128)
    at: datetime = Field(sa_column=utc_column())
    by: str = Field(max_length=64)
    changes: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))


class Notification(SQLModel, table=True):
    __tablename__ = "notifications"
    __table_args__ = (
        # the release job's scan: due deferred rows in deliver_at order
        sa.Index("ix_notifications_status_deliver_at", "status", "deliver_at"),
        # frequency caps count a user's recent notifications per tier
        sa.Index("ix_notifications_user_tier_counted", "user_id", "tier", "counted_at"),
        sa.Index("ix_notifications_collapse", "user_id", "app", "collapse_key"),
        # a user's notifications newest first, a page at a time (keyset on created_at, id)
        sa.Index("ix_notifications_user_created", "user_id", "created_at", "id"),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    user_id: str = Field(max_length=128)
    app: str = Field(max_length=64)
    tier: str = Field(max_length=16)
    category: str | None = Field(default=None, max_length=64)
    classified_by: str = Field(max_length=16)
    status: str = Field(max_length=16)
    reason: str | None = Field(default=None, max_length=64)
    title: str | None = Field(default=None, max_length=1024)
    body: str | None = Field(default=None, max_length=4096)
    data: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    collapse_key: str | None = Field(default=None, max_length=64)
    badge: int | None = None
    sound: str | None = Field(default=None, max_length=256)
    thread_id: str | None = Field(default=None, max_length=256)
    sender: str = Field(max_length=64)  # the API key name that sent it
    # the X-Request-Id of the request that created it, so its delivery log events name it
    request_id: str | None = Field(default=None, max_length=128)
    deliver_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    expires_at: datetime = Field(sa_column=utc_column())
    # when the notification started counting against the user's frequency cap (queued)
    counted_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    created_at: datetime = Field(sa_column=utc_column())
    updated_at: datetime = Field(sa_column=utc_column())
    # A scheduled send: the instant it is due (``send_at`` as given, or ``send_at_local``
    # resolved in the user's zone; it moves with a user who changes zone before it is due).
    send_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    send_at_local: str | None = Field(default=None, max_length=16)  # as the caller gave it
    # For ``send_at_local``: the local date and time chosen ("YYYY-MM-DDTHH:MM") and the zone
    # it was read in, so that the release reads it again where the user is by then.
    scheduled_wall_time: str | None = Field(default=None, max_length=16)
    scheduled_zone: str | None = Field(default=None, max_length=64)
    # How the policy decided (the latest decision, as the API shows it), what that did
    # (status, reason, deliver_at), and the decisions it replaced under "earlier", oldest first.
    decision: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))


class Delivery(SQLModel, table=True):
    __tablename__ = "deliveries"
    __table_args__ = (
        sa.UniqueConstraint(
            "notification_id", "device_id", name="uq_deliveries_notification_device"
        ),
        sa.Index("ix_deliveries_status_next_attempt", "status", "next_attempt_at"),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    notification_id: str = Field(
        sa_column=Column(
            sa.String(36),
            sa.ForeignKey("notifications.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        )
    )
    device_id: str = Field(max_length=36, index=True)
    platform: str = Field(max_length=16)
    status: str = Field(default=DeliveryStatus.PENDING, max_length=16)
    attempts: int = 0
    provider_id: str | None = Field(default=None, max_length=256)
    error: str | None = Field(default=None, max_length=256)
    end_reason: str | None = Field(default=None, max_length=32)
    next_attempt_at: datetime = Field(sa_column=utc_column())
    lease_owner: str | None = Field(default=None, max_length=64)
    lease_until: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    created_at: datetime = Field(sa_column=utc_column())
    updated_at: datetime = Field(sa_column=utc_column())


class IdempotencyRecord(SQLModel, table=True):
    """The first answer to a request with an ``Idempotency-Key``, scoped to the calling key."""

    __tablename__ = "idempotency_records"

    api_key: str = Field(primary_key=True, max_length=64)
    key: str = Field(primary_key=True, max_length=255)
    request_sha256: str = Field(max_length=64)
    response_status: int
    response_body: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(sa_column=utc_column(index=True))


class IdempotencyNotification(SQLModel, table=True):
    """Which notifications an idempotency record's answer holds, so that forgetting a user
    also forgets the answers that would replay their erased notifications."""

    __tablename__ = "idempotency_notifications"
    __table_args__ = (
        sa.ForeignKeyConstraint(
            ["api_key", "key"],
            ["idempotency_records.api_key", "idempotency_records.key"],
            ondelete="CASCADE",
        ),
        sa.Index("ix_idempotency_notifications_notification", "notification_id"),
    )

    api_key: str = Field(primary_key=True, max_length=64)
    key: str = Field(primary_key=True, max_length=255)
    notification_id: str = Field(primary_key=True, max_length=36)


class ReadinessProbe(SQLModel, table=True):
    """One row the readiness check writes: a database that can be read but not written (a full
    disk) is not ready."""

    __tablename__ = "readiness_probe"

    id: int = Field(primary_key=True)
    checked_at: datetime = Field(sa_column=utc_column())
