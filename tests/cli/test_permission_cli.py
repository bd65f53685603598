"""``pushgate permission funnel`` against a real SQLite file and PostgreSQL schema."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.cli import cli
from gateway.config import load_settings
from gateway.runtime import Role, build_runtime
from gateway.schemas import PermissionEventReport
from gateway.services.access import Caller
from tests.api.conftest import FakeClock

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)


@pytest.fixture
def config(tmp_path: Path, database_url: str) -> Path:
    path = tmp_path / "pushgate.toml"
    path.write_text(
        f'[database]\nurl = "{database_url}"\n\n[sandbox]\nenabled = true\n\n'
        '[[apps]]\nid = "demo"\n\n[[apps]]\nid = "other"\n',
        encoding="utf-8",
    )
    return path


async def invoke(config: Path, *args: str) -> Result:
    """Run ``pushgate ARGS --config CONFIG`` off the event loop (the CLI runs its own)."""
    runner = CliRunner()
    return await asyncio.to_thread(
        runner.invoke, cli, [*args, "--config", str(config)], catch_exceptions=False
    )


async def report_events(config: Path, engine: AsyncEngine) -> None:
    """Four users shown the soft ask yesterday: three accept, one grants; one Android user."""
    settings = load_settings(config)
    operator = Caller.operator("test")
    yesterday = NOW - timedelta(days=1)
    journeys = {
        "u1": ["soft_ask_shown", "soft_ask_accepted", ("os_prompt_result", "granted")],
        "u2": ["soft_ask_shown", "soft_ask_accepted", ("os_prompt_result", "denied")],
        "u3": ["soft_ask_shown", "soft_ask_accepted"],
        "u4": ["soft_ask_shown", "soft_ask_declined"],
    }
    async with build_runtime(
        settings, role=Role.OPERATOR, engine=engine, clock=FakeClock(NOW)
    ) as runtime:
        permission = runtime.services.permission
        for user_id, events in journeys.items():
            platform = "android" if user_id == "u4" else "ios"
            for event in events:
                kind, result = event if isinstance(event, tuple) else (event, None)
                report = PermissionEventReport.model_validate(
                    {
                        "app": "demo",
                        "event": kind,
                        "result": result,
                        "platform": platform,
                        "at": yesterday,
                    }
                )
                await permission.record(operator, user_id, report)


def row(output: str, name: str) -> list[str]:
    """The cells of the table row that starts with ``name``."""
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.strip("│ ").split("│")]
        if cells and cells[0] == name:
            return cells
    raise AssertionError(f"no row {name!r} in:\n{output}")


async def test_funnel_prints_counts_and_rates(config: Path, engine: AsyncEngine) -> None:
    await report_events(config, engine)

    result = await invoke(config, "permission", "funnel", "--app", "demo", "--since", "2026-06-01")

    assert result.exit_code == 0, result.output
    assert row(result.output, "soft_ask_shown") == ["soft_ask_shown", "4"]
    assert row(result.output, "soft_ask_accepted") == ["soft_ask_accepted", "3"]
    assert row(result.output, "os_granted") == ["os_granted", "1"]
    assert row(result.output, "re_enabled") == ["re_enabled", "0"]
    assert row(result.output, "rate soft_ask_acceptance") == ["rate soft_ask_acceptance", "75.0%"]
    assert row(result.output, "rate os_grant_after_soft_ask") == [
        "rate os_grant_after_soft_ask",
        "33.3%",
    ]
    assert row(result.output, "rate opt_in") == ["rate opt_in", "25.0%"]


async def test_funnel_of_one_platform_and_window(config: Path, engine: AsyncEngine) -> None:
    await report_events(config, engine)

    result = await invoke(
        config,
        "permission",
        "funnel",
        "--app",
        "demo",
        "--platform",
        "android",
        "--since",
        "2026-06-14T00:00:00+00:00",
        "--until",
        "2026-06-15T00:00:00+02:00",
    )

    assert result.exit_code == 0, result.output
    assert row(result.output, "soft_ask_declined") == ["soft_ask_declined", "1"]
    assert row(result.output, "soft_ask_shown") == ["soft_ask_shown", "1"]
    assert row(result.output, "rate os_grant_after_soft_ask") == [
        "rate os_grant_after_soft_ask",
        "-",
    ]


async def test_an_empty_funnel_has_no_rates(config: Path, engine: AsyncEngine) -> None:
    result = await invoke(config, "permission", "funnel", "--app", "other")
    assert result.exit_code == 0, result.output
    assert row(result.output, "value_moment") == ["value_moment", "0"]
    assert row(result.output, "rate opt_in") == ["rate opt_in", "-"]


@pytest.mark.parametrize(
    "args",
    [
        ["--app", "nope"],
        ["--app", "demo", "--since", "2026-06-10", "--until", "2026-06-01"],
        ["--app", "demo", "--since", "last week"],
        ["--app", "demo", "--since", "2026-06-10T08:00:00"],
        ["--app", "demo", "--platform", "web"],
        [],
    ],
)
async def test_usage_errors_exit_2(config: Path, engine: AsyncEngine, args: list[str]) -> None:
    result = await invoke(config, "permission", "funnel", *args)
    assert result.exit_code == 2, result.output


async def test_an_unreachable_database_exits_1(tmp_path: Path) -> None:
    # a PostgreSQL port nobody listens on: refused at once
    path = tmp_path / "pushgate.toml"
    path.write_text(
        '[database]\nurl = "postgresql+asyncpg://postgres@127.0.0.1:9/test"\n\n'
        '[sandbox]\nenabled = true\n\n[[apps]]\nid = "demo"\n',
        encoding="utf-8",
    )
    result = await invoke(path, "permission", "funnel", "--app", "demo")
    assert result.exit_code == 1, result.output
