"""``pushgate serve``: start the HTTP API, the delivery worker and the scheduler.

Schema handling at start-up: an empty database is created to the current schema (so the quick
start is one command); a database at an older revision is refused with a pointer to
``pushgate db upgrade``, because migrating a shared production database is a deliberate step
that must not race between several starting processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from enum import StrEnum

from aiohttp import web

from gateway.api.app import init_app
from gateway.config import Settings
from gateway.db import create_engine, schema_state, upgrade_database
from gateway.metrics import Metrics

log = logging.getLogger(__name__)


class Role(StrEnum):
    ALL = "all"
    API = "api"
    WORKER = "worker"


class StartupError(Exception):
    """The gateway cannot start; the message says why and what to do."""


def configure_logging() -> None:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # aiohttp's access log would print every path; the metrics cover request volume
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


async def serve(settings: Settings, role: Role, *, stop: asyncio.Event | None = None) -> None:
    """Run until ``stop`` is set (or SIGINT/SIGTERM)."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)

    engine = create_engine(settings.database)
    try:
        state = await schema_state(engine)
        if state.is_empty:
            log.info("empty database: creating the schema (revision %s)", state.head)
            await upgrade_database(engine)
        elif not state.is_current:
            raise StartupError(
                f"the database schema is at revision {state.current} but this version needs "
                f"{state.head}: run `pushgate db upgrade` (once, from one process), "
                "then start again"
            )
        metrics = Metrics()
        runner: web.AppRunner | None = None
        if role in (Role.ALL, Role.API):
            app = init_app(settings, engine=engine, metrics=metrics)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, settings.server.host, settings.server.port)
            await site.start()
            log.info(
                "pushgate API listening on http://%s:%d (role %s, database %s)",
                settings.server.host,
                settings.server.port,
                role,
                "SQLite" if settings.database.is_sqlite else "PostgreSQL",
            )
        if role is Role.WORKER:
            log.info("pushgate worker started (no HTTP API in this process)")
        await stop.wait()
        log.info("shutting down")
        if runner is not None:
            await runner.cleanup()
    finally:
        await engine.dispose()


def run(settings: Settings, role: Role) -> int:
    """Entry point for the CLI; returns the process exit code."""
    configure_logging()
    try:
        asyncio.run(serve(settings, role))
    except StartupError as exc:
        log.error("%s", exc)
        return 2
    except OSError as exc:
        log.error("cannot start: %s", exc)
        return 1
    return 0
