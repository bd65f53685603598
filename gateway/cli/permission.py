"""``pushgate permission``: the opt-in funnel in the terminal.

Exit status: 0 done, 1 the database failed, 2 bad usage or configuration (an unknown app, a
window that ends before it starts).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, time
from pathlib import Path

import click
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError

from gateway.cli.context import config_option, console, errors, settings_from, with_services
from gateway.errors import GatewayError, ValidationFailed
from gateway.schemas import FunnelOut, FunnelQuery
from gateway.services import Services
from gateway.services.access import Caller
from policies import FunnelStep
from tokens.models import Platform

EXIT_FAILED = 1
EXIT_USAGE = 2


def _parse_instant(
    _ctx: click.Context, param: click.Parameter, value: str | None
) -> datetime | None:
    """An ISO 8601 instant with an offset, or a date (midnight UTC of that day)."""
    if value is None:
        return None
    try:
        return datetime.combine(date.fromisoformat(value), time(), tzinfo=UTC)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter(
            f"{value!r} is neither a date (2026-06-01) nor an instant (2026-06-01T00:00:00+00:00)"
        ) from exc
    if parsed.tzinfo is None:
        raise click.BadParameter("give the instant an offset, e.g. 2026-06-01T08:00:00+02:00")
    return parsed


@click.group()
def permission() -> None:
    """Notification permission: the opt-in funnel."""


@permission.command("funnel")
@config_option
@click.option("--app", "app_id", required=True, help="The app whose funnel to show.")
@click.option(
    "--since",
    callback=_parse_instant,
    help="Start of the window (included): a date (UTC midnight) or an ISO 8601 instant with "
    "an offset. Default: 30 days before --until.",
)
@click.option(
    "--until",
    callback=_parse_instant,
    help="End of the window (excluded), like --since. Default: none, everything since counts.",
)
@click.option(
    "--platform",
    type=click.Choice([platform.value for platform in Platform]),
    help="Only this platform's users (default: both).",
)
def permission_funnel(
    config_path: Path | None,
    app_id: str,
    since: datetime | None,
    until: datetime | None,
    platform: str | None,
) -> None:
    """Distinct users per step of APP's opt-in funnel in a window, and its rates."""
    settings = settings_from(config_path)
    query = FunnelQuery(
        since=since, until=until, platform=Platform(platform) if platform is not None else None
    )

    async def body(services: Services) -> FunnelOut:
        return await services.permission.funnel(Caller.operator("cli"), app_id, query)

    try:
        funnel = asyncio.run(with_services(settings, body))
    except ValidationFailed as exc:
        errors.print(f"[bold red]error:[/] {exc.detail}", highlight=False, soft_wrap=True)
        raise SystemExit(EXIT_USAGE) from None
    except (GatewayError, SQLAlchemyError, OSError) as exc:
        errors.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise SystemExit(EXIT_FAILED) from None
    console.print(funnel_table(funnel))


def funnel_table(funnel: FunnelOut) -> Table:
    """The funnel's counts, then its rates, as one table."""
    platform = funnel.platform.value if funnel.platform is not None else "all platforms"
    until = f"until {_utc(funnel.until)}" if funnel.until is not None else "until now"
    table = Table(
        title=f"permission funnel: {funnel.app}, {platform}",
        caption=f"since {_utc(funnel.since)} {until}",
    )
    table.add_column("step")
    table.add_column("users", justify="right")
    counts = funnel.counts.model_dump()
    for step in FunnelStep:
        table.add_row(step.value, f"{counts[step.value]:,}")
    table.add_section()
    for name, rate in funnel.rates.model_dump().items():
        table.add_row(f"rate {name}", "-" if rate is None else f"{rate:.1%}")
    return table


def _utc(instant: datetime) -> str:
    return f"{instant.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
