"""The operator commands run through click against a real SQLite file and PostgreSQL schema."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.cli import cli

Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture
def config(tmp_path: Path, database_url: str) -> Path:
    path = tmp_path / "pushgate.toml"
    path.write_text(f'[database]\nurl = "{database_url}"\n', encoding="utf-8")
    return path


def append_config(config: Path, text: str) -> None:
    config.write_text(config.read_text(encoding="utf-8") + text, encoding="utf-8")


async def invoke(config: Path, *args: str) -> Result:
    """Run ``pushgate ARGS --config CONFIG`` off the event loop (the CLI runs its own)."""
    runner = CliRunner()
    return await asyncio.to_thread(
        runner.invoke, cli, [*args, "--config", str(config)], catch_exceptions=False
    )
