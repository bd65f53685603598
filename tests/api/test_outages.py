"""While the database cannot take work, callers get 503 with Retry-After (never 500), /readyz
agrees, nothing of a message reaches the log, and the gateway recovers by itself."""

from __future__ import annotations

import logging

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.api.keys import SERVICES
from gateway.db import StorageHealth
from tests.api.conftest import FCM_TOKEN, Client, register

OTP = "Your OTP is 493817"


async def _page_count(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int((await connection.exec_driver_sql("PRAGMA page_count")).scalar_one())


async def _limit_pages(engine: AsyncEngine, pages: int) -> None:
    # SQLite's own "database or disk is full" (SQLITE_FULL), as a full disk gives it. The
    # gateway keeps one SQLite connection, so the limit holds for everything it does.
    async with engine.connect() as connection:
        await connection.exec_driver_sql(f"PRAGMA max_page_count = {pages}")


async def test_a_full_disk_answers_503_and_not_ready_then_recovers(
    client: Client,
    engine: AsyncEngine,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip(
            "a full disk is simulated with SQLite's page limit; PostgreSQL outages are "
            "in tests/faults"
        )
    await register(client, platform="android", token=FCM_TOKEN)
    await _limit_pages(engine, await _page_count(engine))
    body = {
        "user_id": "u1",
        "app": "demo",
        "tier": "transactional",
        "title": OTP,
        "data": {"blob": "x" * 3000},
    }
    batch = {"notifications": [body] * 20}  # more than the free room left in any page
    with caplog.at_level(logging.INFO):
        response = await client.post("/v1/notifications/batch", json=batch)
        assert response.status == 503, await response.text()
        assert response.headers["Retry-After"] == "5"
        problem = await response.json()
        assert problem["code"] == "unavailable" and "disk full" in problem["detail"]
        ready = await client.get("/readyz")
        assert ready.status == 503
        assert "disk full" in (await ready.json())["reason"]
    assert "493817" not in caplog.text  # SQLAlchemy's error carried the parameters before
    assert FCM_TOKEN not in caplog.text

    await _limit_pages(engine, 1_000_000)  # room again
    monkeypatch.setattr(StorageHealth, "HOLD_SECONDS", 0.0)  # as if the hold had passed
    assert (await client.get("/readyz")).status == 200
    assert (await client.post("/v1/notifications/batch", json=batch)).status == 200


async def test_readiness_writes_so_a_database_it_cannot_write_is_not_ready(
    client: Client, engine: AsyncEngine
) -> None:
    assert (await client.get("/readyz")).status == 200
    async with engine.connect() as connection:
        checked = await connection.execute(sa.text("SELECT count(*) FROM readiness_probe"))
        assert checked.scalar_one() == 1


def test_the_reasons_to_answer_503_and_the_errors_that_are_not(client: Client) -> None:
    services = client.app[SERVICES]
    import sqlite3  # noqa: PLC0415

    full = sa.exc.OperationalError(
        "INSERT", {}, sqlite3.OperationalError("database or disk is full")
    )
    assert services.note_storage_failure(full) is not None
    assert services.note_storage_failure(ConnectionRefusedError()) is not None
    assert services.note_storage_failure(sa.exc.TimeoutError()) is not None
    bug = sa.exc.IntegrityError("INSERT", {}, sqlite3.IntegrityError("UNIQUE constraint failed"))
    assert services.note_storage_failure(bug) is None
    assert services.note_storage_failure(ValueError("a bug")) is None
