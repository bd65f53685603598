"""What every command shares: the ``--config`` option, loading settings, a database engine."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from functools import wraps
from pathlib import Path
from typing import Any, NoReturn, ParamSpec, TypeVar

import click
import sqlalchemy as sa
from rich.console import Console
from rich.markup import escape
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.config import CONFIG_ENV, ConfigError, Settings, load_settings
from gateway.db import create_engine, schema_state
from gateway.runtime import Role, build_runtime
from gateway.services import Services

P = ParamSpec("P")
T = TypeVar("T")

console = Console()
errors = Console(stderr=True)

config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar=CONFIG_ENV,
    help=f"TOML configuration file (default: ${CONFIG_ENV}, else built-in defaults).",
)


def report_error(message: str) -> None:
    """Print ``message`` on stderr as an error, as written: brackets in it (``[apps.apns]``,
    SQLAlchemy's ``[SQL: ...]``) are text, not console markup."""
    errors.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)


def exit_with_error(message: str, code: int = 2) -> NoReturn:
    report_error(message)
    raise SystemExit(code)


def settings_from(config_path: Path | None) -> Settings:
    """Load and validate the configuration, or exit 2 with the error naming the key."""
    try:
        return load_settings(config_path)
    except ConfigError as exc:
        exit_with_error(str(exc))


def run_async(function: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, T]:
    """Run an async command body on a fresh event loop."""

    @wraps(function)
    def runner(*args: P.args, **kwargs: P.kwargs) -> T:
        return asyncio.run(function(*args, **kwargs))

    return runner


def missing_sqlite_file(settings: Settings) -> Path | None:
    """The configured SQLite database file when it does not exist (connecting would create
    an empty one); None when it exists or the database is not a SQLite file."""
    if not settings.database.is_sqlite:
        return None
    database = sa.make_url(settings.database.url).database
    if not database or database == ":memory:":
        return None
    path = Path(database)
    return None if path.exists() else path


async def open_engine(settings: Settings, *, require_current_schema: bool = True) -> AsyncEngine:
    """An engine for the configured database. With ``require_current_schema`` (every command
    but ``db``'s) it must exist and be up to date, else the command exits 2: a command that
    reads never creates an empty database."""
    if require_current_schema:
        missing = missing_sqlite_file(settings)
        if missing is not None:
            exit_with_error(
                f"no database at {missing.resolve()} (database.url); this command works on "
                "an existing database and never creates one: check --config and "
                "database.url, or create it with `pushgate db upgrade`"
            )
    engine = create_engine(settings.database)
    if require_current_schema:
        state = await schema_state(engine)
        if not state.is_current:
            await engine.dispose()
            exit_with_error(
                f"database schema is at {state.current or 'nothing'}, this version needs "
                f"{state.head}; run `pushgate db upgrade` first"
            )
    return engine


async def with_services(settings: Settings, body: Callable[[Services], Awaitable[T]]) -> T:
    """Run ``body`` with the gateway's services on the configured database (exits 2 when its
    schema is not up to date)."""
    engine = await open_engine(settings)
    try:
        async with build_runtime(settings, role=Role.OPERATOR, engine=engine) as runtime:
            return await body(runtime.services)
    finally:
        await engine.dispose()
