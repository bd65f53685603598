"""Shared fixtures: a migrated database on SQLite and on PostgreSQL.

Every database test runs twice, once per backend. PostgreSQL tests use the server at
``PUSHGATE_TEST_POSTGRES_URL`` (default: the local trust-auth ``postgres@127.0.0.1:5432/test``),
each test in a schema of its own; they skip when that server is unreachable, unless
``PUSHGATE_TEST_POSTGRES_REQUIRED=1`` (set by ``.ci/run``), where they fail instead.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from gateway.config import DatabaseConfig
from gateway.db import create_engine, session_factory, upgrade_database

POSTGRES_URL = os.environ.get(
    "PUSHGATE_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
POSTGRES_REQUIRED = os.environ.get("PUSHGATE_TEST_POSTGRES_REQUIRED") == "1"

_postgres_probe: dict[str, bool] = {}  # probed once per test session


async def _postgres_available() -> bool:
    if POSTGRES_URL not in _postgres_probe:
        engine = create_engine(DatabaseConfig(url=POSTGRES_URL))
        try:
            async with engine.connect() as connection:
                await connection.execute(sa.text("SELECT 1"))
            _postgres_probe[POSTGRES_URL] = True
        except Exception:  # any failure means "not available here"
            _postgres_probe[POSTGRES_URL] = False
        finally:
            await engine.dispose()
    return _postgres_probe[POSTGRES_URL]


async def require_postgres() -> None:
    """Skip (or, in CI, fail) when the PostgreSQL test server is not reachable."""
    if await _postgres_available():
        return
    if POSTGRES_REQUIRED:
        pytest.fail(f"PostgreSQL required (PUSHGATE_TEST_POSTGRES_REQUIRED=1) at {POSTGRES_URL}")
    pytest.skip(f"PostgreSQL not reachable at {POSTGRES_URL}")


async def make_postgres_schema_url() -> tuple[str, str]:
    """Create a throwaway schema; returns (url with that schema as search_path, schema)."""
    schema = f"t_{uuid.uuid4().hex[:16]}"
    admin = create_engine(DatabaseConfig(url=POSTGRES_URL))
    async with admin.begin() as connection:
        await connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    await admin.dispose()
    separator = "&" if "?" in POSTGRES_URL else "?"
    return f"{POSTGRES_URL}{separator}search_path={schema}", schema


async def drop_postgres_schema(schema: str) -> None:
    admin = create_engine(DatabaseConfig(url=POSTGRES_URL))
    async with admin.begin() as connection:
        await connection.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    await admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A URL of an empty database on each backend."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'pushgate.db'}"
        return
    await require_postgres()
    url, schema = await make_postgres_schema_url()
    try:
        yield url
    finally:
        await drop_postgres_schema(schema)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """A migrated database engine on each backend."""
    engine = create_engine(DatabaseConfig(url=database_url))
    await upgrade_database(engine)
    try:
        yield engine
    finally:
        # dispose() closes only the connections in the pool: one still checked out would leak
        # and surface later, in another test, as an "unclosed connection" warning. The usual
        # cause is an app torn down after its engine: request ``engine`` before
        # ``aiohttp_client``, whose teardown closes the app.
        held = engine.sync_engine.pool.checkedout()  # type: ignore[attr-defined]
        await engine.dispose()
        assert held == 0, f"{held} connection(s) still in use when the test's engine closed"


@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return session_factory(engine)
