"""scheduled sends, explained decisions, and a user's notifications newest first

notifications.send_at / send_at_local / scheduled_wall_time / scheduled_zone: a send scheduled
for an instant or for a wall time in the user's zone (kept to be read again at release).
notifications.decision: how the policy decided, as JSON. ix_notifications_user_created: the
keyset pages of GET /v1/users/{user_id}/notifications.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import tokens.models

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.add_column(
            sa.Column("send_at", tokens.models.UTCDateTime(timezone=True), nullable=True)
        )
        batch.add_column(
            sa.Column("send_at_local", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True)
        )
        batch.add_column(
            sa.Column(
                "scheduled_wall_time", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True
            )
        )
        batch.add_column(
            sa.Column("scheduled_zone", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True)
        )
        # Notifications decided before this column existed have no recorded decision (null).
        batch.add_column(sa.Column("decision", sa.JSON(), nullable=True))
        batch.create_index(
            "ix_notifications_user_created", ["user_id", "created_at", "id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.drop_index("ix_notifications_user_created")
        batch.drop_column("decision")
        batch.drop_column("scheduled_zone")
        batch.drop_column("scheduled_wall_time")
        batch.drop_column("send_at_local")
        batch.drop_column("send_at")
