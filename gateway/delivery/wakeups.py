"""Wake a delivery worker in another process the moment notifications are queued (PostgreSQL).

In one process the API hands what it queued straight to the worker (``ServiceContext.dispatch``).
When the API and the worker are different processes (``--api-only`` beside ``--worker-only``, or
``pushgate serve --processes N``), the worker would otherwise find new work only at its next
poll, up to ``delivery.poll_interval_seconds`` later. On PostgreSQL the API process announces
queued work with ``NOTIFY`` on a channel of its schema and every worker ``LISTEN``s on it, so a
push leaves as fast as in one process. The poll stays as the safety net: a lost announcement
delays work by one poll interval, never loses it. SQLite has no such channel (and one process
delivers from it anyway).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.db import storage_unavailable

log = logging.getLogger(__name__)

CHANNEL_PREFIX = "pushgate_deliveries"
# Seconds between attempts to listen again after the connection was lost (the poll covers
# the gap).
RECONNECT_SECONDS = 2.0


def channel_name(database_url: str) -> str:
    """The channel of the configured schema (``?search_path=`` in the URL): several pushgate
    schemas may share one database, and a worker should hear only its own."""
    schema = str(sa.make_url(database_url).query.get("search_path", "") or "")
    return f"{CHANNEL_PREFIX}_{schema}"[:63] if schema else CHANNEL_PREFIX


class WakeupAnnouncer:
    """The API side: :meth:`__call__` is a ``Dispatch``. It never waits and never fails the
    request; announcements that come while one is on its way are folded into the next one."""

    def __init__(self, engine: AsyncEngine, channel: str) -> None:
        self.engine = engine
        self.channel = channel
        self._sending: asyncio.Task[None] | None = None
        self._again = False

    def __call__(self, _ids: Sequence[str] = ()) -> None:
        if self._sending is not None:
            self._again = True
            return
        self._sending = asyncio.get_running_loop().create_task(self._send())

    async def _send(self) -> None:
        try:
            while True:
                self._again = False
                async with self.engine.begin() as connection:
                    await connection.execute(sa.select(sa.func.pg_notify(self.channel, "")))
                if not self._again:
                    return
        except Exception as error:  # the poll delivers it a little later
            log.warning(
                "could not wake the delivery worker (%s); it finds the work at its next poll",
                storage_unavailable(error) or type(error).__name__,
            )
        finally:
            self._sending = None

    async def close(self) -> None:
        if self._sending is not None:
            with contextlib.suppress(Exception):
                await self._sending


class WakeupListener:
    """The worker side: :meth:`run` listens until cancelled, calling ``wake`` on every
    announcement, and once more each time it (re)connects, for whatever was queued while it
    was not listening."""

    def __init__(self, engine: AsyncEngine, channel: str, wake: Callable[[], None]) -> None:
        self.engine = engine
        self.wake = wake
        self.channel = channel
        self.listening = asyncio.Event()
        """Set while LISTEN holds (tests wait for it)."""

    async def run(self) -> None:
        while True:
            try:
                await self._listen_once()
            except Exception as error:
                log.warning(
                    "not listening for queued work (%s); polling until it listens again",
                    storage_unavailable(error) or type(error).__name__,
                )
            self.listening.clear()
            await asyncio.sleep(RECONNECT_SECONDS)

    async def _listen_once(self) -> None:
        lost = asyncio.Event()

        def on_notify(*_args: object) -> None:
            self.wake()

        def on_lost(*_args: object) -> None:
            lost.set()

        async with self.engine.connect() as connection:
            raw = await connection.get_raw_connection()
            driver = raw.driver_connection
            assert driver is not None
            driver.add_termination_listener(on_lost)
            await driver.add_listener(self.channel, on_notify)
            try:
                self.listening.set()
                self.wake()
                await lost.wait()
            finally:
                driver.remove_termination_listener(on_lost)
                if not driver.is_closed():
                    with contextlib.suppress(Exception):
                        await driver.remove_listener(self.channel, on_notify)
                # a connection that held LISTEN goes back to the pool only as a new one
                await connection.invalidate()
