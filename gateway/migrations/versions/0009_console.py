"""console_sessions; deliveries.app (their notification's app); and the indexes the operator
console reads through: deliveries by the time they last changed (with what the page counts), deferred notifications by release time with what the queue groups by (a
partial index of deferred rows only), devices by app, platform and status, token events by kind
and instant

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 10:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import tokens.models

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _text(length: int) -> sqlmodel.sql.sqltypes.AutoString:
    return sqlmodel.sql.sqltypes.AutoString(length=length)


def upgrade() -> None:
    op.create_table(
        "console_sessions",
        sa.Column("token_sha256", _text(64), nullable=False),
        sa.Column("key_name", _text(64), nullable=False),
        sa.Column("key_fingerprint", _text(64), nullable=False),
        sa.Column("created_at", tokens.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", tokens.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("token_sha256"),
    )
    with op.batch_alter_table("console_sessions") as batch:
        batch.create_index("ix_console_sessions_expires_at", ["expires_at"], unique=False)
    # deliveries carry their notification's app, filled in for those already stored
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("app", _text(64), nullable=True))
    op.execute(
        "UPDATE deliveries SET app = (SELECT notifications.app FROM notifications "
        "WHERE notifications.id = deliveries.notification_id)"
    )
    with op.batch_alter_table("deliveries") as batch:
        batch.alter_column("app", existing_type=_text(64), nullable=False)
        batch.create_index(
            "ix_deliveries_updated_at",
            ["updated_at", "platform", "app", "status", "attempts", "created_at"],
            unique=False,
        )
    with op.batch_alter_table("notifications") as batch:
        batch.create_index(
            "ix_notifications_deferred_console",
            ["deliver_at", "app", "tier", "reason", "status"],
            unique=False,
            sqlite_where=sa.text("status = 'deferred'"),
            postgresql_where=sa.text("status = 'deferred'"),
        )
    with op.batch_alter_table("devices") as batch:
        batch.create_index(
            "ix_devices_app_platform_status", ["app", "platform", "status"], unique=False
        )
    with op.batch_alter_table("token_events") as batch:
        batch.create_index("ix_token_events_kind_at", ["kind", "at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("token_events") as batch:
        batch.drop_index("ix_token_events_kind_at")
    with op.batch_alter_table("devices") as batch:
        batch.drop_index("ix_devices_app_platform_status")
    with op.batch_alter_table("notifications") as batch:
        batch.drop_index("ix_notifications_deferred_console")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_index("ix_deliveries_updated_at")
        batch.drop_column("app")
    with op.batch_alter_table("console_sessions") as batch:
        batch.drop_index("ix_console_sessions_expires_at")
    op.drop_table("console_sessions")
