"""The first five minutes: no configuration file, ``--dev``, read-only commands in an empty
folder, a relative SQLite path, and configuration messages that name the keys."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import aiohttp
import pytest
from click.testing import CliRunner

from gateway.cli import cli
from gateway.config import load_settings
from tests.multiprocess.harness import pushgate_command, wait_until

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.toml"


@pytest.fixture
def empty_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The working directory: an empty folder, and no ``PUSHGATE_*`` in the environment."""
    folder = tmp_path / "empty"
    folder.mkdir()
    monkeypatch.chdir(folder)
    for name in list(os.environ):
        if name.startswith("PUSHGATE_"):
            monkeypatch.delenv(name)
    return folder


def test_serve_without_a_configuration_refuses_and_exits_2(empty_folder: Path) -> None:
    result = CliRunner().invoke(cli, ["serve"])
    assert result.exit_code == 2
    assert "no configuration file: give --config PATH or set PUSHGATE_CONFIG" in result.output
    assert "--dev" in result.output
    assert list(empty_folder.iterdir()) == []  # nothing started, nothing created


async def test_serve_dev_runs_the_built_in_defaults_and_says_so(empty_folder: Path) -> None:
    log_path = empty_folder.parent / "dev.log"
    env = {
        **{key: value for key, value in os.environ.items() if not key.startswith("PUSHGATE_")},
        "PUSHGATE_SERVER__PORT": "0",
        "PYTHONUNBUFFERED": "1",
    }
    with log_path.open("wb") as log_file:
        process = await asyncio.create_subprocess_exec(
            *pushgate_command(),
            "serve",
            "--dev",
            cwd=empty_folder,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
            env=env,
        )
    try:

        async def listening() -> bool:
            assert process.returncode is None, log_path.read_text()
            return "listening on http://" in log_path.read_text()

        await wait_until(listening, within_seconds=30, what="pushgate serve --dev listening")
        text = log_path.read_text()
        assert "no configuration file (--dev): running on the built-in defaults" in text
        assert "no [[api_keys]] configured" in text
        url = "http://" + text.split("listening on http://", 1)[1].split()[0]
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{url}/healthz") as response:
                assert response.status == 200
            async with http.get(f"{url}/v1/users/u1/devices") as response:
                assert response.status == 401  # no keys: as the log warned
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert (empty_folder / "pushgate.db").exists()  # the default, in the working directory


@pytest.mark.parametrize(
    "command",
    [
        ["tokens", "stats"],
        ["notifications", "show", "0f8fad5b-d9cb-469f-a165-70867728950e"],
        ["deferred", "stats"],
        ["tokens", "cleanup", "--dry-run"],
        ["tokens", "purge", "--dry-run"],
    ],
    ids=lambda command: " ".join(command[:2]),
)
def test_commands_never_create_a_database(empty_folder: Path, command: list[str]) -> None:
    result = CliRunner().invoke(cli, command)
    assert result.exit_code == 2, result.output
    assert f"no database at {empty_folder / 'pushgate.db'}" in result.output
    assert "pushgate db upgrade" in result.output
    assert list(empty_folder.iterdir()) == []

    config = empty_folder.parent / "elsewhere.toml"
    config.write_text('[database]\nurl = "sqlite+aiosqlite:///./missing.db"\n')
    result = CliRunner().invoke(cli, [*command, "--config", str(config)])
    assert result.exit_code == 2
    assert f"no database at {empty_folder.parent / 'missing.db'}" in result.output
    assert not (empty_folder.parent / "missing.db").exists()


def test_a_relative_sqlite_path_is_relative_to_the_config_file(empty_folder: Path) -> None:
    conf = empty_folder.parent / "conf"
    conf.mkdir()
    config = conf / "pushgate.toml"
    config.write_text('[database]\nurl = "sqlite+aiosqlite:///./data.db?timeout=5"\n')
    settings = load_settings(config)
    assert settings.database.url == f"sqlite+aiosqlite:///{conf / 'data.db'}?timeout=5"

    runner = CliRunner()
    upgraded = runner.invoke(cli, ["db", "upgrade", "--config", "../conf/pushgate.toml"])
    assert upgraded.exit_code == 0, upgraded.output
    assert (conf / "data.db").exists()
    assert list(empty_folder.iterdir()) == []  # not in the working directory
    stats = runner.invoke(cli, ["tokens", "stats", "--config", str(config)])
    assert stats.exit_code == 0, stats.output


def test_a_relative_path_from_the_environment_stays_relative_to_the_working_directory(
    empty_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = empty_folder.parent / "pushgate.toml"
    config.write_text('[database]\nurl = "sqlite+aiosqlite:///./from-file.db"\n')
    monkeypatch.setenv("PUSHGATE_DATABASE__URL", "sqlite+aiosqlite:///./from-env.db")
    assert load_settings(config).database.url == "sqlite+aiosqlite:///./from-env.db"


def test_sandbox_turned_off_from_the_environment_names_the_keys(
    empty_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PUSHGATE_SANDBOX__ENABLED", "false")
    result = CliRunner().invoke(cli, ["serve", "--config", str(EXAMPLE)])
    assert result.exit_code == 2
    assert (
        "apps[demo] has no [apps.apns] or [apps.fcm] section and sandbox.enabled is false "
        "(PUSHGATE_SANDBOX__ENABLED=false in the environment)" in result.output
    )
    assert "Value error" not in result.output


def test_config_messages_carry_no_pydantic_prefix(empty_folder: Path) -> None:
    config = empty_folder.parent / "pushgate.toml"
    config.write_text(
        '[policy]\ndefault_timezone = "+05:00"\n[logging]\nformat = "xml"\nlevel = "DEBUG"\n'
    )
    result = CliRunner().invoke(cli, ["tokens", "stats", "--config", str(config)])
    assert result.exit_code == 2
    assert (
        "policy.default_timezone: '+05:00' is not an IANA time zone name such as "
        "'Europe/Paris'" in result.output
    )
    assert "logging.format: Input should be 'text' or 'json'" in result.output
    assert "logging.level" not in result.output  # any case will do
    assert "Value error" not in result.output


def test_a_configuration_from_the_environment_alone_is_a_configuration(
    empty_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # as a container sets it: no file, every key from PUSHGATE_* variables; this one is a
    # mistake, so the start-up stops at the configuration instead of at "no configuration"
    monkeypatch.setenv("PUSHGATE_SERVER__PORT", "not-a-port")
    result = CliRunner().invoke(cli, ["serve"])
    assert result.exit_code == 2
    assert "server.port" in result.output and "no configuration file" not in result.output
