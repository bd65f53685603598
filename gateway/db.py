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
from typing import Any, cast

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from gateway.config import DatabaseConfig
from gateway.models import Notification, ReadinessProbe
from tokens.models import utcnow

log = logging.getLogger(__name__)

_READINESS = cast(sa.Table, ReadinessProbe.__table__)  # type: ignore[attr-defined]

SQLITE_BUSY_TIMEOUT_MS = 30_000


def create_engine(config: DatabaseConfig) -> AsyncEngine:
    """An async engine for ``config.url``; SQLite gets WAL, foreign keys and a busy timeout.

    Statement parameters never appear in SQLAlchemy's error messages (``hide_parameters``):
    they hold notification titles and device tokens, and errors end up in logs.
    """
    kwargs: dict[str, Any] = {"echo": config.echo, "hide_parameters": True}
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


# PostgreSQL error classes that mean "the database cannot take work now", not "this request is
# wrong": 08 connection exception, 53 insufficient resources (disk full, out of memory, too
# many connections), 57P operator intervention (shutdown, cannot connect now).
_UNAVAILABLE_SQLSTATES = ("08", "53", "57P")
# SQLite's words for the same (SQLITE_FULL, SQLITE_IOERR, SQLITE_CANTOPEN, SQLITE_BUSY past the
# busy timeout, SQLITE_READONLY).
_SQLITE_UNAVAILABLE = (
    "database or disk is full",
    "disk i/o error",
    "unable to open database file",
    "database is locked",
    "attempt to write a readonly database",
)


class StorageHealth:
    """The last time the database refused work, as this process saw it.

    A full disk still answers reads, and a readiness probe's small write can fit in a page
    that already exists; so a failure the requests met keeps the process unready for
    :attr:`HOLD_SECONDS` after it, then the next requests try again.
    """

    HOLD_SECONDS = 15.0

    def __init__(self) -> None:
        self._failed_at: float | None = None
        self._reason: str | None = None

    def note_failure(self, reason: str, *, at: float) -> None:
        self._failed_at, self._reason = at, reason

    def failing(self, *, at: float) -> str | None:
        """The reason of a failure within the hold period before ``at`` (monotonic seconds)."""
        if self._failed_at is not None and at - self._failed_at < self.HOLD_SECONDS:
            return self._reason
        return None


def storage_unavailable(error: BaseException) -> str | None:
    """Why ``error`` means the database is away or cannot write (a reason to answer 503 and
    retry later), or None when it is about the request itself."""
    if isinstance(error, sa.exc.TimeoutError):
        return "no database connection was free in time"
    if isinstance(error, OSError):
        return "the database is unreachable"
    sqlstate = getattr(error, "sqlstate", None)
    if isinstance(error, sa.exc.DBAPIError):
        if error.connection_invalidated:
            return "the connection to the database was lost"
        sqlstate = getattr(error.orig, "sqlstate", None) or getattr(error.orig, "pgcode", None)
        message = str(error.orig).lower()
        if any(words in message for words in _SQLITE_UNAVAILABLE):
            return "the database cannot write now (disk full, locked or unreadable)"
        if isinstance(error, sa.exc.InterfaceError):
            return "the connection to the database failed"
    if isinstance(sqlstate, str) and sqlstate.startswith(_UNAVAILABLE_SQLSTATES):
        return "the database cannot take work now"
    return None


async def database_ready(engine: AsyncEngine) -> str | None:
    """None when the database answers and can write; otherwise why not. A read alone would
    pass on a full disk, so this writes one row (and rolls nothing back)."""
    try:
        async with engine.begin() as connection:
            updated = await connection.execute(
                sa.update(_READINESS).where(_READINESS.c.id == 1).values(checked_at=utcnow())
            )
            if not updated.rowcount:
                await connection.execute(
                    sa.insert(_READINESS).values(id=1, checked_at=utcnow()).prefix_with("OR IGNORE")
                    if engine.dialect.name == "sqlite"
                    else postgresql.insert(_READINESS)
                    .values(id=1, checked_at=utcnow())
                    .on_conflict_do_nothing()
                )
    except Exception as error:  # readiness answers "no" for any database failure
        reason = storage_unavailable(error) or f"the database failed ({type(error).__name__})"
        log.warning("readiness check: %s", reason)
        return reason
    return None


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
