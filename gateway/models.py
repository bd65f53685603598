"""Tables the gateway owns: preferences, notifications, deliveries, idempotency records, and
users' permission history with its funnel rollup.

Devices and the token audit trail belong to :mod:`tokens.models`. The notification and delivery
rows are also the durable queue: their ``status`` columns, and the deliveries' leases, are the
journal that a restarted or second process picks work up from.
"""

from __future__ import annotations

from datetime import date, datetime
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
        # the console's deferred queue: only deferred rows, with every column it groups and
        # filters by, so a day of them is counted from the index alone
        sa.Index(
            "ix_notifications_deferred_console",
            "deliver_at",
            "app",
            "tier",
            "reason",
            "status",  # SQLite reads an index alone only when it holds every column named
            sqlite_where=sa.text("status = 'deferred'"),
            postgresql_where=sa.text("status = 'deferred'"),
        ),
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
        # the console's last 24 hours of deliveries: a range of the time they last changed,
        # with every column the page counts, so it is read from the index alone
        sa.Index(
            "ix_deliveries_updated_at",
            "updated_at",
            "platform",
            "app",
            "status",
            "attempts",
            "created_at",
        ),
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
    # the notification's (and the device's) app, kept here so counting a day of deliveries
    # per app needs no lookup of each one's notification
    app: str = Field(max_length=64)
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


class PermissionEventSource(StrEnum):
    """Who put a permission event in a user's history."""

    REPORTED = "reported"  # the app's backend reported it (POST .../permission-events)
    REGISTRATION = "registration"  # a device registration changed the device's permission


class PermissionEventRecord(SQLModel, table=True):
    """One event of a user's permission history for an app (see :mod:`policies.permission`).

    Immutable once stored. Besides what was reported it keeps what the funnel counts it as:
    ``funnel_step`` (null for a permission change seen at registration, which answers no prompt)
    and ``re_enabled`` (it turned a ``denied`` device ``granted``), so the funnel never has to
    work either out again.
    """

    __tablename__ = "permission_events"
    __table_args__ = (
        # a repeated event_id of the user in the app answers with the first record
        sa.UniqueConstraint("user_id", "app", "event_id", name="uq_permission_events_event_id"),
        # the soft ask reads one user's history for an app and platform, in order
        sa.Index("ix_permission_events_history", "user_id", "app", "platform", "at"),
        # the funnel reads the events of the partial days at the edges of its window
        sa.Index("ix_permission_events_app_at", "app", "at"),
    )

    # 64-bit: an event log outgrows 2^31 rows; SQLite's rowid (an INTEGER key) already is
    id: int | None = Field(
        default=None,
        sa_column=Column(
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
    )
    user_id: str = Field(max_length=128)
    app: str = Field(max_length=64)
    platform: str = Field(max_length=16)
    event: str = Field(max_length=32)
    result: str | None = Field(default=None, max_length=16)
    device_id: str | None = Field(default=None, max_length=36)
    event_id: str | None = Field(default=None, max_length=128)
    source: str = Field(max_length=16)
    reported_by: str = Field(max_length=64)  # the API key's name
    # the device's permission before this event set it; null when it set none
    previous_permission: str | None = Field(default=None, max_length=16)
    funnel_step: str | None = Field(default=None, max_length=32)
    re_enabled: bool = False
    at: datetime = Field(sa_column=utc_column())
    recorded_at: datetime = Field(sa_column=utc_column())


class PermissionFunnelDay(SQLModel, table=True):
    """The funnel's rollup: this user reached this step of the app's funnel on this UTC day.

    One row per (app, day, platform, step, user), written as each event is stored (a second
    event of the same user, step and day adds nothing). Distinct users per step over whole days
    is then a ``COUNT(DISTINCT user_id)`` over a range of this key, without touching the events;
    see :mod:`gateway.services.permission` for how a window's partial days are counted.
    """

    __tablename__ = "permission_funnel_days"
    __table_args__ = (
        # forgetting a user
        sa.Index("ix_permission_funnel_days_user", "user_id", "app"),
    )

    # the key's order is the query's: one app, a range of days, then platform and step
    app: str = Field(primary_key=True, max_length=64)
    day: date = Field(primary_key=True)
    platform: str = Field(primary_key=True, max_length=16)
    step: str = Field(primary_key=True, max_length=32)
    user_id: str = Field(primary_key=True, max_length=128)


ALL_PLATFORMS = "all"
"""``permission_funnel_users.scope`` of the rows that count a user on any platform."""


class PermissionFunnelUser(SQLModel, table=True):
    """The funnel's rollup for windows without an end: the last UTC day this user reached this
    step of the app's funnel, on one platform (``scope`` is the platform) and on any
    (``scope`` is ``all``).

    Users who reached a step since day D are then the rows with ``last_day >= D``: a count over
    a range of an index, without collecting distinct users. Written as each event is stored
    (the later day wins, whatever order events arrive in).
    """

    __tablename__ = "permission_funnel_users"
    __table_args__ = (
        # the funnel since a day: one range per app and scope, the step read from the index
        sa.Index("ix_permission_funnel_users_last_day", "app", "scope", "last_day", "step"),
    )

    # the key leads with the user: the rollup's upserts and forgetting a user look them up
    user_id: str = Field(primary_key=True, max_length=128)
    app: str = Field(primary_key=True, max_length=64)
    scope: str = Field(primary_key=True, max_length=16)
    step: str = Field(primary_key=True, max_length=32)
    last_day: date


class ConsoleSession(SQLModel, table=True):
    """A signed-in operator console: the browser holds a random token in a cookie, and only its
    sha256 is kept here, so a copy of this table opens no console.

    The session names the API key it was opened with (its name and a digest of the key's own
    stored digest); each request reads that key's current scopes and app limits from the
    configuration, so a key removed, rotated or narrowed there takes its sessions with it.
    """

    __tablename__ = "console_sessions"

    token_sha256: str = Field(primary_key=True, max_length=64)
    key_name: str = Field(max_length=64)
    key_fingerprint: str = Field(max_length=64)
    created_at: datetime = Field(sa_column=utc_column())
    # expired sessions are deleted as new ones are opened
    expires_at: datetime = Field(sa_column=utc_column(index=True))
