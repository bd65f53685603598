"""Operator commands: token hygiene and inspection (``tokens``, ``notifications``, ``deferred``).

Exit status: 0 done, 1 the work failed (database error; the summary says how far it got),
2 bad usage or configuration, 130 interrupted (committed batches stay done: run it again).
"""

from __future__ import annotations

import asyncio
import getpass
import itertools
import json
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError

from gateway.cli.context import (
    config_option,
    console,
    errors,
    report_error,
    settings_from,
    with_services,
)
from gateway.cli.explain import decisions_of, explain_notification
from gateway.config import Settings
from gateway.models import Delivery, Notification
from gateway.services import Services
from gateway.services.release import DeferredHistogram, release_hour_edges
from policies import DeferReason
from policies.timezones import ZoneDatabase
from tokens import CleanupResult
from tokens.cleanup import DEFAULT_BATCH_SIZE
from tokens.models import Platform

T = TypeVar("T")

EXIT_FAILED = 1
EXIT_INTERRUPTED = 130


def _parse_now(_ctx: click.Context, _param: click.Parameter, value: str | None) -> datetime:
    """The instant the command works at: ``--now`` (tests, replays) or the clock."""
    if value is None:
        return datetime.now(UTC)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 timestamp") from exc
    if parsed.tzinfo is None:
        raise click.BadParameter("give an offset, e.g. 2026-03-01T12:00:00+00:00")
    return parsed.astimezone(UTC)


now_option = click.option(
    "--now",
    callback=_parse_now,
    hidden=True,
    help="Pretend the current time is this ISO 8601 instant (tests and replays).",
)
batch_option = click.option(
    "--batch-size",
    type=click.IntRange(min=1, max=20_000),
    default=DEFAULT_BATCH_SIZE,
    show_default=True,
    help="Rows per transaction; each committed batch survives an interruption.",
)


def _actor(command: str) -> str:
    """Who the audit trail names: the command and the operating-system user running it."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no login name in some containers
        user = "unknown"
    return f"cli:{command}:{user}"[:128]


def _run(settings: Settings, body: Callable[[Services], Awaitable[T]]) -> T:
    """Run ``body`` with the services; a database failure exits 1 with its message."""
    try:
        return asyncio.run(with_services(settings, body))
    except (SQLAlchemyError, OSError) as exc:
        report_error(f"database: {exc}")
        raise SystemExit(EXIT_FAILED) from None


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=errors,  # progress on stderr keeps the summary on stdout clean
        transient=True,
    )


def _counts_table(title: str, counts: Mapping[tuple[str, str], int]) -> Table:
    table = Table(title=title)
    table.add_column("app")
    table.add_column("platform")
    table.add_column("devices", justify="right")
    for (app, platform), count in sorted(counts.items()):
        table.add_row(app, platform, f"{count:,}")
    table.add_section()
    table.add_row("total", "", f"{sum(counts.values()):,}")
    return table


@click.group()
def tokens() -> None:
    """Device-token registry: statistics, stale cleanup, purge of invalid tokens."""


@tokens.command("stats")
@config_option
def tokens_stats(config_path: Path | None) -> None:
    """How many devices each app has, per platform and status."""
    settings = settings_from(config_path)

    async def body(services: Services) -> list[Any]:
        return await services.devices.stats()

    rows = _run(settings, body)
    table = Table(title="devices")
    for name in ("app", "platform", "status"):
        table.add_column(name)
    table.add_column("devices", justify="right")
    for row in rows:
        table.add_row(row.app, row.platform, row.status, f"{row.count:,}")
    table.add_section()
    table.add_row("total", "", "", f"{sum(row.count for row in rows):,}")
    console.print(table)


@tokens.command("cleanup")
@config_option
@click.option(
    "--stale-days",
    type=click.IntRange(min=1),
    help="Devices not seen for this many days become stale "
    "(default: tokens.stale_after_days from the configuration, per platform).",
)
@click.option("--app", "app_id", help="Only this app's devices.")
@click.option("--dry-run", is_flag=True, help="Count what would become stale; change nothing.")
@batch_option
@now_option
def tokens_cleanup(
    *,
    config_path: Path | None,
    stale_days: int | None,
    app_id: str | None,
    dry_run: bool,
    batch_size: int,
    now: datetime,
) -> None:
    """Mark devices whose app has not registered for a long time as stale.

    Stale devices are not sent to; the app's next registration makes them active again.
    Safe to interrupt and re-run: work is committed batch by batch.
    """
    settings = settings_from(config_path)
    days: dict[str, int] = (
        {platform.value: stale_days for platform in Platform}
        if stale_days is not None
        else settings.tokens.stale_days_by_platform()
    )
    rule = ", ".join(f"{platform} not seen for {n} days" for platform, n in sorted(days.items()))
    done: Counter[tuple[str, str]] = Counter()

    async def body(services: Services) -> CleanupResult:
        devices = services.devices
        if dry_run:
            return await devices.mark_stale(
                now=now, stale_after_days=days, actor="dry-run", app=app_id, dry_run=True
            )
        total = await devices.count_stale(now=now, stale_after_days=days, app=app_id)
        return await _with_progress(
            "marking stale",
            total,
            done,
            lambda advance: devices.mark_stale(
                now=now,
                stale_after_days=days,
                actor=_actor("tokens cleanup"),
                app=app_id,
                batch_size=batch_size,
                on_batch=advance,
            ),
        )

    _finish(
        settings,
        body,
        done,
        title=f"stale devices ({rule}{f', app {app_id}' if app_id else ''})",
        verb="would mark" if dry_run else "marked",
        what="stale",
    )


@tokens.command("purge")
@config_option
@click.option(
    "--invalid-older-than-days",
    "days",
    type=click.IntRange(min=0),
    help="Delete tokens invalid for more than this many days "
    "(default: retention.invalid_tokens_days from the configuration).",
)
@click.option("--dry-run", is_flag=True, help="Count what would be deleted; change nothing.")
@batch_option
@now_option
def tokens_purge(
    config_path: Path | None, days: int | None, dry_run: bool, batch_size: int, now: datetime
) -> None:
    """Delete tokens that providers declared dead long enough ago.

    Each deleted device keeps a ``purged`` audit event (device id, last 6 characters of the
    token, the reason it was invalid). Safe to interrupt and re-run.
    """
    settings = settings_from(config_path)
    if days is None:
        days = settings.retention.invalid_tokens_days
    before = now - timedelta(days=days)
    done: Counter[tuple[str, str]] = Counter()

    async def body(services: Services) -> CleanupResult:
        devices = services.devices
        if dry_run:
            return await devices.purge_invalid(
                now=now, invalidated_before=before, actor="dry-run", dry_run=True
            )
        total = await devices.count_purgeable(invalidated_before=before)
        return await _with_progress(
            "purging",
            total,
            done,
            lambda advance: devices.purge_invalid(
                now=now,
                invalidated_before=before,
                actor=_actor("tokens purge"),
                batch_size=batch_size,
                on_batch=advance,
            ),
        )

    _finish(
        settings,
        body,
        done,
        title=f"invalid devices purged (invalid for more than {days} days)",
        verb="would delete" if dry_run else "deleted",
        what="invalid",
    )


async def _with_progress(
    description: str,
    total: int,
    done: Counter[tuple[str, str]],
    run: Callable[[Callable[[Counter[tuple[str, str]]], None]], Awaitable[CleanupResult]],
) -> CleanupResult:
    """Run a batched job with a progress bar; ``done`` keeps what committed batches did, for
    the summary of an interrupted or failed run."""
    with _progress() as progress:
        task = progress.add_task(description, total=total)

        def advance(batch: Counter[tuple[str, str]]) -> None:
            done.update(batch)
            progress.advance(task, batch.total())

        return await run(advance)


def _finish(
    settings: Settings,
    body: Callable[[Services], Awaitable[CleanupResult]],
    done: Counter[tuple[str, str]],
    *,
    title: str,
    verb: str,
    what: str,
) -> None:
    """Run a batched job and print its summary, also when it fails or is interrupted."""
    try:
        result = asyncio.run(with_services(settings, body))
    except KeyboardInterrupt:
        console.print(_counts_table(title, done))
        errors.print(
            f"interrupted: {sum(done.values()):,} {what} devices done in committed batches; "
            "run the same command again to finish",
            highlight=False,
        )
        raise SystemExit(EXIT_INTERRUPTED) from None
    except (SQLAlchemyError, OSError) as exc:
        console.print(_counts_table(title, done))
        report_error(
            f"database: {exc}\n"
            f"{sum(done.values()):,} devices were done in committed batches; run it again"
        )
        raise SystemExit(EXIT_FAILED) from None
    console.print(_counts_table(title, result.counts))
    suffix = "; nothing changed (dry run)" if result.dry_run else f" in {result.batches} batches"
    console.print(f"{verb} {result.total:,} {what} devices{suffix}", highlight=False)


@click.group()
def notifications() -> None:
    """Inspect notifications."""


def _when(value: datetime | None) -> str:
    return value.isoformat() if value is not None else "-"


@notifications.command("show")
@config_option
@click.argument("notification_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
def notifications_show(config_path: Path | None, notification_id: str, as_json: bool) -> None:
    """Show one notification and its deliveries (``explain`` tells why it went when it did).
    Exits 1 when there is no such notification."""
    settings = settings_from(config_path)

    async def body(services: Services) -> tuple[Notification, list[Delivery]] | None:
        return await services.notifications.inspect(notification_id)

    found = _run(settings, body)
    if found is None:
        report_error(f"no notification {notification_id}")
        raise SystemExit(EXIT_FAILED)
    notification, deliveries = found
    if as_json:
        document = notification.model_dump(mode="json")
        document["deliveries"] = [delivery.model_dump(mode="json") for delivery in deliveries]
        click.echo(json.dumps(document, indent=2, sort_keys=True))
        return

    summary = Table(title=f"notification {notification.id}", show_header=False)
    summary.add_column("field", style="bold")
    summary.add_column("value")
    fields: list[tuple[str, object]] = [
        ("user_id", notification.user_id),
        ("app", notification.app),
        ("tier", notification.tier),
        ("category", notification.category),
        ("classified_by", notification.classified_by),
        ("status", notification.status),
        ("reason", notification.reason),
        ("title", notification.title),
        ("body", notification.body),
        ("collapse_key", notification.collapse_key),
        ("sender", notification.sender),
        ("request_id", notification.request_id),
        ("created_at", _when(notification.created_at)),
        ("deliver_at", _when(notification.deliver_at)),
        ("expires_at", _when(notification.expires_at)),
        ("updated_at", _when(notification.updated_at)),
        ("send_at", _when(notification.send_at)),
        ("send_at_local", notification.send_at_local),
        ("decided by", (notification.decision or {}).get("rule")),
    ]
    for name, value in fields:
        summary.add_row(name, "-" if value is None else str(value))
    console.print(summary)

    table = Table(title=f"deliveries ({len(deliveries)})")
    for name in ("device_id", "platform", "status", "attempts", "provider_id", "error", "next"):
        table.add_column(name)
    for delivery in deliveries:
        table.add_row(
            delivery.device_id,
            delivery.platform,
            delivery.status,
            str(delivery.attempts),
            delivery.provider_id or "-",
            delivery.error or "-",
            _when(delivery.next_attempt_at),
        )
    console.print(table)


@notifications.command("explain")
@config_option
@click.argument("notification_id")
@click.option("--json", "as_json", is_flag=True, help="Print the recorded decisions as JSON.")
def notifications_explain(config_path: Path | None, notification_id: str, as_json: bool) -> None:
    """Why a notification went, waits or was dropped: every policy decision, in the user's
    local time, and where it stands now. Exits 1 when there is no such notification."""
    settings = settings_from(config_path)

    async def body(services: Services) -> tuple[Notification, list[Delivery]] | None:
        return await services.notifications.inspect(notification_id)

    found = _run(settings, body)
    if found is None:
        errors.print(f"[bold red]error:[/] no notification {notification_id}", highlight=False)
        raise SystemExit(EXIT_FAILED)
    notification, deliveries = found
    if as_json:
        decisions = decisions_of(notification)
        document = {
            name: value
            for name, value in notification.model_dump(mode="json").items()
            if name
            in (
                "id",
                "user_id",
                "app",
                "tier",
                "status",
                "reason",
                "deliver_at",
                "expires_at",
                "send_at",
                "send_at_local",
                "scheduled_wall_time",
                "scheduled_zone",
            )
        }
        document["decision"] = decisions[-1] if decisions else None
        document["decisions"] = decisions
        click.echo(json.dumps(document, indent=2, sort_keys=True))
        return
    for line in explain_notification(notification, deliveries, ZoneDatabase()):
        click.echo(line)


@click.group()
def deferred() -> None:
    """Inspect deferred notifications."""


@deferred.command("stats")
@config_option
@click.option("--app", "app_id", help="Only this app's notifications.")
@now_option
def deferred_stats(config_path: Path | None, app_id: str | None, now: datetime) -> None:
    """How many deferred notifications are due for release in each of the next 24 hours (UTC),
    those waiting for the end of quiet hours apart from those a caller scheduled."""
    settings = settings_from(config_path)
    # hour 0 runs from now to the next full hour; "overdue" and "later" catch the rest
    edges = release_hour_edges(now)

    async def body(services: Services) -> DeferredHistogram:
        return await services.maintenance.deferred_by_hour(now, app=app_id)

    histogram = _run(settings, body)
    quiet = histogram.by_reason.get(DeferReason.QUIET_HOURS, [])
    scheduled = histogram.by_reason.get(DeferReason.SCHEDULED, [])
    totals = histogram.totals
    labels = ["overdue (due before now)"]
    labels += [f"{start:%Y-%m-%d %H:%M} - {end:%H:%M}" for start, end in itertools.pairwise(edges)]
    labels.append(f"later (from {edges[-1]:%Y-%m-%d %H:%M})")
    table = Table(title="deferred notifications by release hour (UTC)")
    table.add_column("release")
    table.add_column("quiet hours", justify="right")
    table.add_column("scheduled", justify="right")
    table.add_column("total", justify="right")
    for index, label in enumerate(labels):
        table.add_row(label, f"{quiet[index]:,}", f"{scheduled[index]:,}", f"{totals[index]:,}")
    table.add_section()
    table.add_row("total deferred", f"{sum(quiet):,}", f"{sum(scheduled):,}", f"{sum(totals):,}")
    console.print(table)
