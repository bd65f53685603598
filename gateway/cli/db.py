"""``pushgate db``: schema migrations."""

from __future__ import annotations

from pathlib import Path

import click

from gateway.cli.context import config_option, console, open_engine, run_async, settings_from
from gateway.db import autogenerate_revision, upgrade_database


@click.group()
def db() -> None:
    """Database schema commands."""


@db.command()
@config_option
@run_async
async def upgrade(config_path: Path | None) -> None:
    """Apply pending schema migrations (safe to run again; one process at a time on PostgreSQL)."""
    settings = settings_from(config_path)
    engine = await open_engine(settings, require_current_schema=False)
    try:
        before = await upgrade_database(engine)
    finally:
        await engine.dispose()
    if before.is_current:
        console.print(f"schema already at {before.head}; nothing to do")
    else:
        console.print(f"schema upgraded from {before.current or 'empty'} to {before.head}")


@db.command()
@config_option
@click.option("-m", "--message", required=True, help="What the migration changes.")
@run_async
async def revision(config_path: Path | None, message: str) -> None:
    """(Development) Write a new migration from the difference between the models and the
    database, after bringing the database to the current head."""
    settings = settings_from(config_path)
    engine = await open_engine(settings, require_current_schema=False)
    try:
        path = await autogenerate_revision(engine, message)
    finally:
        await engine.dispose()
    console.print(f"wrote {path}; read it before committing")
