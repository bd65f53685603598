"""deliveries.end_reason: why a delivery ended, as a value instead of a suffix of its error

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03 08:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(
            sa.Column("end_reason", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True)
        )
    # Deliveries that ended before this column existed: read their reason off the error text,
    # the way the code used to.
    op.execute(
        """
        UPDATE deliveries SET end_reason = CASE
            WHEN status = 'sent' THEN 'delivered'
            WHEN status = 'invalid_token' THEN 'token_dead'
            WHEN error = 'expired' OR error LIKE '% (expired)' THEN 'expired'
            WHEN error LIKE '% (attempts exhausted)' THEN 'attempts_exhausted'
            WHEN error = 'cancelled' THEN 'cancelled'
            WHEN error LIKE 'device_%' OR error = 'permission_denied' THEN 'device_unavailable'
            ELSE 'rejected'
        END
        WHERE status <> 'pending'
        """
    )


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("end_reason")
