"""What every command shares: the ``--config`` option, loading settings, a database engine."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from functools import wraps
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import click
from rich.console import Console
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


def settings_from(config_path: Path | None) -> Settings:
    """Load and validate the configuration, or exit 2 with the error naming the key."""
    try:
        return load_settings(config_path)
    except ConfigError as exc:
        errors.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise SystemExit(2) from None


def run_async(function: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, T]:
    """Run an async command body on a fresh event loop."""

    @wraps(function)
    def runner(*args: P.args, **kwargs: P.kwargs) -> T:
        return asyncio.run(function(*args, **kwargs))

    return runner


async def open_engine(settings: Settings, *, require_current_schema: bool = True) -> AsyncEngine:
    """An engine for the configured database; exits 2 when the schema is not up to date."""
    engine = create_engine(settings.database)
    if require_current_schema:
        state = await schema_state(engine)
        if not state.is_current:
            await engine.dispose()
            errors.print(
                f"[bold red]error:[/] database schema is at {state.current or 'nothing'}, "
                f"this version needs {state.head}; run `pushgate db upgrade` first",
                highlight=False,
                soft_wrap=True,
            )
            raise SystemExit(2)
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
