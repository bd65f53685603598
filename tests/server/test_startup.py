"""What `pushgate serve` and `pushgate db upgrade` do with the schema and the SQLite lock."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.cli import cli
from gateway.config import DatabaseConfig, load_settings
from gateway.db import create_engine, schema_state
from gateway.server import StartupError, prepare_schema, sqlite_delivery_lock


async def test_empty_database_gets_the_schema(database_url: str) -> None:
    engine = create_engine(DatabaseConfig(url=database_url))
    try:
        await prepare_schema(engine)
        assert (await schema_state(engine)).is_current
    finally:
        await engine.dispose()


async def test_out_of_date_schema_is_refused_with_the_fix(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        await connection.execute(sa.text("UPDATE alembic_version SET version_num = '0000'"))
    with pytest.raises(StartupError, match="pushgate db upgrade"):
        await prepare_schema(engine)


def test_one_process_owns_delivery_on_sqlite(tmp_path: Path) -> None:
    settings = load_settings(None, database={"url": f"sqlite+aiosqlite:///{tmp_path}/p.db"})
    with (
        sqlite_delivery_lock(settings),
        pytest.raises(StartupError, match="--api-only"),
        sqlite_delivery_lock(settings),
    ):
        pass
    with sqlite_delivery_lock(settings):  # released: a restarted process takes it again
        pass


def test_db_upgrade_command(tmp_path: Path) -> None:
    config = tmp_path / "pushgate.toml"
    config.write_text(f'[database]\nurl = "sqlite+aiosqlite:///{tmp_path}/cli.db"\n')
    runner = CliRunner()
    first = runner.invoke(cli, ["db", "upgrade", "--config", str(config)])
    assert first.exit_code == 0, first.output
    assert "upgraded from empty" in first.output
    second = runner.invoke(cli, ["db", "upgrade", "--config", str(config)])
    assert second.exit_code == 0
    assert "nothing to do" in second.output


def test_bad_config_names_the_key_and_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "pushgate.toml"
    config.write_text('[policy]\ndefault_timezone = "+05:00"\n[server]\nprot = 1\n')
    result = CliRunner().invoke(cli, ["db", "upgrade", "--config", str(config)])
    assert result.exit_code == 2
    assert "policy.default_timezone" in result.output
    assert "server.prot" in result.output


def test_missing_config_file_exits_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["serve", "--config", str(tmp_path / "nope.toml")])
    assert result.exit_code == 2
    assert "does not exist" in result.output
