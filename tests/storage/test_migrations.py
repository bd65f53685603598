"""The migrations build exactly the schema the models describe, on both backends."""

from collections.abc import Callable
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import SQLModel

from gateway.config import DatabaseConfig
from gateway.db import _alembic_config, create_engine, schema_state, upgrade_database


async def test_migrations_match_models(engine: AsyncEngine) -> None:
    def diff(connection: object) -> list[object]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})  # type: ignore[arg-type]
        return list(compare_metadata(context, SQLModel.metadata))

    async with engine.connect() as connection:
        assert await connection.run_sync(diff) == []


async def test_upgrade_is_idempotent_and_reports_state(engine: AsyncEngine) -> None:
    state = await schema_state(engine)
    assert state.is_current and not state.is_empty
    before = await upgrade_database(engine)
    assert before.is_current


async def test_0009_gives_stored_deliveries_their_notification_app(database_url: str) -> None:
    """Deliveries stored before the console's migration get their notification's app."""
    engine = create_engine(DatabaseConfig(url=database_url))
    try:

        def to(revision: str) -> Callable[[Connection], None]:
            return lambda connection: command.upgrade(_alembic_config(connection), revision)

        async with engine.begin() as connection:
            await connection.run_sync(to("0008"))
            sqlite = engine.dialect.name == "sqlite"
            now = {"now": "2026-06-15 12:00:00" if sqlite else datetime(2026, 6, 15, tzinfo=UTC)}
            await connection.execute(
                sa.text(
                    "INSERT INTO notifications (id, user_id, app, tier, classified_by, status, "
                    "sender, expires_at, created_at, updated_at) VALUES ('n1', 'u1', 'shop', "
                    "'transactional', 'tier', 'sent', 'k', :now, :now, :now)"
                ),
                now,
            )
            await connection.execute(
                sa.text(
                    "INSERT INTO deliveries (id, notification_id, device_id, platform, status, "
                    "attempts, next_attempt_at, created_at, updated_at) VALUES ('d1', 'n1', "
                    "'dev1', 'ios', 'sent', 1, :now, :now, :now)"
                ),
                now,
            )
        async with engine.begin() as connection:
            await connection.run_sync(to("head"))
            app = await connection.execute(sa.text("SELECT app FROM deliveries WHERE id = 'd1'"))
            assert app.scalar_one() == "shop"
    finally:
        await engine.dispose()
