"""Database engine, sessions and schema migrations (alembic, run in-process).

SQLite runs in WAL mode with a busy timeout so the API and the delivery worker of one process
can write side by side; PostgreSQL is reached through asyncpg.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from gateway.config import DatabaseConfig
from gateway.models import Notification

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 30_000


def create_engine(config: DatabaseConfig) -> AsyncEngine:
    """An async engine for ``config.url``; SQLite gets WAL, foreign keys and a busy timeout."""
    kwargs: dict[str, Any] = {"echo": config.echo}
    url = sa.make_url(config.url)
    if config.is_sqlite:
        kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
        # SQLite has one writer at a time. Several pooled connections racing for that lock
        # wait in SQLite's busy handler, which sleeps in growing steps: at 32 concurrent
        # requests that was 290 ms p50 for 1 ms of work. One connection makes the requests
        # queue in the event loop instead, where the next one starts the moment it is free.
        kwargs.update(pool_size=1, max_overflow=0, pool_timeout=SQLITE_BUSY_TIMEOUT_MS / 1000)
    else:
        kwargs.update(pool_size=config.pool_size, max_overflow=config.pool_size, pool_pre_ping=True)
        # asyncpg takes no search_path argument: `?search_path=schema` in the URL becomes a
        # server setting, so one database can hold several pushgate schemas.
        search_path = url.query.get("search_path")
        if search_path:
            url = url.difference_update_query(["search_path"])
            kwargs["connect_args"] = {"server_settings": {"search_path": str(search_path)}}
    engine = create_async_engine(url, **kwargs)
    if config.is_sqlite:
        sa.event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def transaction(
    sessions: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """A session whose work is committed on success and rolled back on any error."""
    async with sessions() as session, session.begin():
        yield session


async def lock_notifications(session: AsyncSession, notification_ids: Collection[str]) -> None:
    """Row-lock the notifications (in id order, so two lockers cannot deadlock) until the
    transaction ends.

    Two transactions finishing deliveries of one notification (its iOS and Android groups in
    one round, or two workers) must not both count the other's delivery as still pending under
    READ COMMITTED, or neither finishes the notification and it stays ``queued`` for good. With
    the lock the second one waits, then counts with the first one's deliveries committed.
    SQLite serialises writers anyway and renders no ``FOR UPDATE``, so there is nothing to
    run.
    """
    if notification_ids and session.get_bind().dialect.name != "sqlite":
        notifications = Notification.__table__  # type: ignore[attr-defined]
        await session.execute(
            sa.select(notifications.c.id)
            .where(notifications.c.id.in_(list(notification_ids)))
            .order_by(notifications.c.id)
            .with_for_update()
        )


def _alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).with_name("migrations")))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@dataclass(frozen=True)
class SchemaState:
    current: str | None  # revision the database is at (None: empty database)
    head: str  # revision this code expects

    @property
    def is_current(self) -> bool:
        return self.current == self.head

    @property
    def is_empty(self) -> bool:
        return self.current is None


async def schema_state(engine: AsyncEngine) -> SchemaState:
    """Which migration the database is at, against the one this code needs."""
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None

    def current(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    async with engine.connect() as connection:
        return SchemaState(current=await connection.run_sync(current), head=head)


async def upgrade_database(engine: AsyncEngine) -> SchemaState:
    """Apply every pending migration; returns the state before the upgrade."""
    before = await schema_state(engine)

    def upgrade(connection: Connection) -> None:
        command.upgrade(_alembic_config(connection), "head")

    async with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            # two processes starting at once must not both create the tables
            await connection.execute(sa.text("SELECT pg_advisory_xact_lock(7210431)"))
        await connection.run_sync(upgrade)
    return before


async def database_reachable(engine: AsyncEngine) -> bool:
    try:
        async with engine.connect() as connection:
            await connection.execute(sa.text("SELECT 1"))
    except Exception:  # readiness answers "no" for any database failure
        log.warning("readiness check: database unreachable", exc_info=True)
        return False
    return True


async def autogenerate_revision(engine: AsyncEngine, message: str) -> str:
    """Upgrade to head, then write a migration for what the models add; returns its path."""
    await upgrade_database(engine)
    paths: list[str] = []

    def generate(connection: Connection) -> None:
        script = command.revision(_alembic_config(connection), message=message, autogenerate=True)
        scripts = script if isinstance(script, list) else [script]
        paths.extend(item.path for item in scripts if item is not None)

    async with engine.begin() as connection:
        await connection.run_sync(generate)
    return ", ".join(paths)
