"""Wake-ups through PostgreSQL: an API process announces queued work, a worker hears it, only
on its own schema's channel, and listens again after its connection is cut."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.config import DatabaseConfig
from gateway.db import create_engine
from gateway.delivery import wakeups
from gateway.delivery.wakeups import WakeupAnnouncer, WakeupListener, channel_name
from tests.conftest import drop_postgres_schema, make_postgres_schema_url, require_postgres

pytestmark = pytest.mark.postgres


@pytest.fixture
async def schema_engines() -> AsyncIterator[list[tuple[str, AsyncEngine]]]:
    """Two schemas of the same database: (url, engine) each."""
    await require_postgres()
    made = [await make_postgres_schema_url() for _ in range(2)]
    engines = [(url, create_engine(DatabaseConfig(url=url))) for url, _ in made]
    try:
        yield engines
    finally:
        for _, engine in engines:
            await engine.dispose()
        for _, schema in made:
            await drop_postgres_schema(schema)


class Wakes:
    def __init__(self) -> None:
        self.count = 0
        self.event = asyncio.Event()

    def __call__(self) -> None:
        self.count += 1
        self.event.set()

    async def next(self) -> None:
        async with asyncio.timeout(30):
            await self.event.wait()
        self.event.clear()


async def listening(listener: WakeupListener) -> None:
    async with asyncio.timeout(30):
        await listener.listening.wait()


def test_each_schema_has_its_own_channel() -> None:
    assert channel_name("postgresql+asyncpg://u@h/db") == "pushgate_deliveries"
    assert channel_name("postgresql+asyncpg://u@h/db?search_path=t_1") == "pushgate_deliveries_t_1"
    assert len(channel_name(f"postgresql+asyncpg://u@h/db?search_path={'s' * 80}")) == 63


async def test_a_worker_hears_its_schema_and_not_another(
    schema_engines: list[tuple[str, AsyncEngine]],
) -> None:
    (url_a, engine_a), (url_b, engine_b) = schema_engines
    wakes = Wakes()
    listener = WakeupListener(engine_a, channel_name(url_a), wakes)
    task = asyncio.create_task(listener.run())
    try:
        await listening(listener)
        await wakes.next()  # listening, it looks once for what came before
        other = WakeupAnnouncer(engine_b, channel_name(url_b))
        other()
        await other.close()
        own = WakeupAnnouncer(engine_a, channel_name(url_a))
        own()
        own()  # folded into the one on its way, or sent after it
        await own.close()
        await wakes.next()
        # a round trip on the listener's channel after both: anything heard by now was sent
        marker = WakeupAnnouncer(engine_a, channel_name(url_a))
        marker()
        await marker.close()
        await wakes.next()
        assert 3 <= wakes.count <= 4  # the first look, own (once or twice), the marker
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_a_listener_cut_off_listens_again(
    schema_engines: list[tuple[str, AsyncEngine]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wakeups, "RECONNECT_SECONDS", 0.05)
    (url, engine), _ = schema_engines
    wakes = Wakes()
    listener = WakeupListener(engine, channel_name(url), wakes)
    task = asyncio.create_task(listener.run())
    try:
        await listening(listener)
        await wakes.next()
        async with engine.connect() as connection:
            cut = await connection.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE query LIKE 'LISTEN%' AND pid <> pg_backend_pid()"
                    " AND datname = current_database()"
                    " AND query LIKE :channel"
                ),
                {"channel": f"%{channel_name(url)}%"},
            )
            assert cut.scalars().all() == [True]
        await wakes.next()  # back, it looks again for what it may have missed
        assert listener.listening.is_set()
        announcer = WakeupAnnouncer(engine, channel_name(url))
        announcer()
        await announcer.close()
        await wakes.next()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_an_announcement_that_fails_is_logged_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    engine = create_engine(DatabaseConfig(url="postgresql+asyncpg://postgres@127.0.0.1:1/none"))
    announcer = WakeupAnnouncer(engine, "pushgate_deliveries")
    announcer()
    await announcer.close()
    await engine.dispose()
    assert "it finds the work at its next poll" in caplog.text
