"""permission_events, permission_funnel_days and permission_funnel_users: users' permission
history, and the funnel's two rollups of it (one row per app, UTC day, platform, step and user;
one per user, app, platform or all, and step with the last day it was reached)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import tokens.models

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _text(length: int) -> sqlmodel.sql.sqltypes.AutoString:
    return sqlmodel.sql.sqltypes.AutoString(length=length)


def upgrade() -> None:
    op.create_table(
        "permission_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("user_id", _text(128), nullable=False),
        sa.Column("app", _text(64), nullable=False),
        sa.Column("platform", _text(16), nullable=False),
        sa.Column("event", _text(32), nullable=False),
        sa.Column("result", _text(16), nullable=True),
        sa.Column("device_id", _text(36), nullable=True),
        sa.Column("event_id", _text(128), nullable=True),
        sa.Column("source", _text(16), nullable=False),
        sa.Column("reported_by", _text(64), nullable=False),
        sa.Column("previous_permission", _text(16), nullable=True),
        sa.Column("funnel_step", _text(32), nullable=True),
        sa.Column("re_enabled", sa.Boolean(), nullable=False),
        sa.Column("at", tokens.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", tokens.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("user_id", "app", "event_id", name="uq_permission_events_event_id"),
    )
    with op.batch_alter_table("permission_events") as batch:
        batch.create_index("ix_permission_events_app_at", ["app", "at"], unique=False)
        batch.create_index(
            "ix_permission_events_history", ["user_id", "app", "platform", "at"], unique=False
        )

    op.create_table(
        "permission_funnel_days",
        sa.Column("app", _text(64), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("platform", _text(16), nullable=False),
        sa.Column("step", _text(32), nullable=False),
        sa.Column("user_id", _text(128), nullable=False),
        sa.PrimaryKeyConstraint("app", "day", "platform", "step", "user_id"),
    )
    with op.batch_alter_table("permission_funnel_days") as batch:
        batch.create_index("ix_permission_funnel_days_user", ["user_id", "app"], unique=False)

    op.create_table(
        "permission_funnel_users",
        sa.Column("user_id", _text(128), nullable=False),
        sa.Column("app", _text(64), nullable=False),
        sa.Column("scope", _text(16), nullable=False),
        sa.Column("step", _text(32), nullable=False),
        sa.Column("last_day", sa.Date(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "app", "scope", "step"),
    )
    with op.batch_alter_table("permission_funnel_users") as batch:
        batch.create_index(
            "ix_permission_funnel_users_last_day",
            ["app", "scope", "last_day", "step"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("permission_funnel_users") as batch:
        batch.drop_index("ix_permission_funnel_users_last_day")
    op.drop_table("permission_funnel_users")
    with op.batch_alter_table("permission_funnel_days") as batch:
        batch.drop_index("ix_permission_funnel_days_user")
    op.drop_table("permission_funnel_days")
    with op.batch_alter_table("permission_events") as batch:
        batch.drop_index("ix_permission_events_history")
        batch.drop_index("ix_permission_events_app_at")
    op.drop_table("permission_events")
