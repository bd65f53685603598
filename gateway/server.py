"""``pushgate serve``: start the HTTP API, the delivery worker and the scheduler.

Schema handling at start-up: an empty database is created to the current schema (so the quick
start is one command); a database at an older revision is refused with a pointer to
``pushgate db upgrade``, because migrating a shared production database is a deliberate step
that must not race between several starting processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import signal
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa
from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.api.app import init_app
from gateway.api.protocol import ProblemAppRunner
from gateway.config import ALL_SCOPES, Settings, demo_key_exposed
from gateway.db import create_engine, schema_state, upgrade_database
from gateway.logs import configure_logging
from gateway.runtime import Role, build_runtime

log = logging.getLogger(__name__)


class StartupError(Exception):
    """The gateway cannot start; the message says why and what to do."""


@contextlib.contextmanager
def sqlite_delivery_lock(settings: Settings) -> Iterator[None]:
    """On SQLite one process owns delivery (there is no SKIP LOCKED to share the queue): hold an
    exclusive lock file next to the database while this process delivers."""
    url = sa.make_url(settings.database.url)
    database = url.database or ""
    if not settings.database.is_sqlite or database in ("", ":memory:"):
        yield
        return
    lock_path = Path(database).with_name(Path(database).name + ".delivery-lock")
    with lock_path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StartupError(
                f"another pushgate process already delivers from {database}: on SQLite one "
                "process owns delivery. Start extra processes with --api-only, or move to "
                "PostgreSQL to run several workers"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def log_api_keys(settings: Settings) -> None:
    """Say who may call and what they may do (names, never the keys themselves)."""
    if not settings.api_keys:
        log.warning("no [[api_keys]] configured: every request will be refused with 401")
    for key in settings.api_keys:
        log.info(
            "API key %s: scopes %s; tiers %s; apps %s",
            key.name,
            "all" if key.scopes == [ALL_SCOPES] else ", ".join(key.scopes),
            ", ".join(key.allowed_tiers),
            ", ".join(key.apps) if key.apps is not None else "all",
        )


async def prepare_schema(engine: AsyncEngine) -> None:
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


def refuse_exposed_demo_key(settings: Settings) -> None:
    exposed = demo_key_exposed(settings)
    if exposed is not None:
        raise StartupError(
            f"API key {exposed!r} is the published demo key (pg-demo-key-change-me) and "
            f"server.host {settings.server.host!r} is reachable from other machines: "
            "anyone could use it. Make a key of your own (key=$(openssl rand -hex 24); "
            'printf %s "$key" | sha256sum) or listen on 127.0.0.1'
        )


async def prepare_to_serve(settings: Settings, role: Role) -> None:
    """The checks and the schema creation of a start, done once before several processes
    start (``--processes``): each of them then finds a current schema."""
    if role.listens:
        refuse_exposed_demo_key(settings)
    engine = create_engine(settings.database)
    try:
        await prepare_schema(engine)
    finally:
        await engine.dispose()


async def serve(
    settings: Settings,
    role: Role,
    *,
    stop: asyncio.Event | None = None,
    reuse_port: bool = False,
) -> None:
    """Run until ``stop`` is set (or SIGINT/SIGTERM). ``reuse_port``: listen with
    ``SO_REUSEPORT``, beside other processes on the same port."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)

    if role.listens:
        refuse_exposed_demo_key(settings)
        log_api_keys(settings)
    async with contextlib.AsyncExitStack() as stack:
        if role.delivers:
            stack.enter_context(sqlite_delivery_lock(settings))
        engine = create_engine(settings.database)
        stack.push_async_callback(engine.dispose)
        await prepare_schema(engine)
        runtime = await stack.enter_async_context(build_runtime(settings, role=role, engine=engine))
        if runtime.worker is not None and runtime.jobs is not None:
            worker, jobs = runtime.worker, runtime.jobs
            scheduler = AsyncIOScheduler(timezone="UTC")
            jobs.schedule(scheduler)
            scheduler.start()
            stack.push_async_callback(jobs.stop, scheduler)
            worker_task = asyncio.create_task(worker.run(), name="delivery-worker")

            async def stop_worker() -> None:
                worker.stop()
                await worker_task

            stack.push_async_callback(stop_worker)
            if runtime.wakeups is not None:
                listening = asyncio.create_task(runtime.wakeups.run(), name="wakeup-listener")

                async def stop_listening() -> None:
                    listening.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await listening

                stack.push_async_callback(stop_listening)
            log.info("delivery worker and scheduler started (%s)", worker.owner)
        if role.listens:
            runner = ProblemAppRunner(init_app(runtime), access_log=None)
            await runner.setup()
            stack.push_async_callback(runner.cleanup)
            site = web.TCPSite(
                runner, settings.server.host, settings.server.port, reuse_port=reuse_port or None
            )
            await site.start()
            host, port = runner.addresses[0][:2]  # the bound port, also when port = 0
            log.info(
                "pushgate %s listening on http://%s:%d (role %s, database %s)",
                "API" if role.accepts else "worker (/healthz, /readyz, /metrics)",
                host,
                port,
                role,
                "SQLite" if settings.database.is_sqlite else "PostgreSQL",
            )
        await stop.wait()
        log.info("shutting down")


def warn_built_in_defaults(settings: Settings) -> None:
    log.warning(
        "no configuration file (--dev): running on the built-in defaults (and any "
        "PUSHGATE_* variables): SQLite at %s; give --config PATH for anything but a quick look",
        settings.database.url,
    )


def run(
    settings: Settings, role: Role, *, built_in_defaults: bool = False, reuse_port: bool = False
) -> int:
    """Entry point for the CLI; returns the process exit code. ``built_in_defaults``: started
    without a configuration file (``--dev``), which the log says first."""
    configure_logging(level=settings.logging.level, log_format=settings.logging.format)
    if built_in_defaults:
        warn_built_in_defaults(settings)
    try:
        asyncio.run(serve(settings, role, reuse_port=reuse_port))
    except StartupError as exc:
        log.error("%s", exc)
        return 2
    except OSError as exc:
        log.error("cannot start: %s", exc)
        return 1
    return 0
