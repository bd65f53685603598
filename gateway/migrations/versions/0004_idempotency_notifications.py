"""idempotency_notifications: which notifications an idempotency record's answer holds

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 07:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "idempotency_notifications",
        sa.Column("api_key", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("key", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("notification_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.ForeignKeyConstraint(
            ["api_key", "key"],
            ["idempotency_records.api_key", "idempotency_records.key"],
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("api_key", "key", "notification_id"),
    )
    op.create_index(
        "ix_idempotency_notifications_notification",
        "idempotency_notifications",
        ["notification_id"],
    )


def downgrade() -> None:
    op.drop_index(
        "ix_idempotency_notifications_notification", table_name="idempotency_notifications"
    )
    op.drop_table("idempotency_notifications")
