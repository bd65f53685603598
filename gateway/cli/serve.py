"""``pushgate serve``: the HTTP API and the delivery worker, in one process or split by role."""

from __future__ import annotations

from pathlib import Path

import click

from gateway.cli.context import config_option, settings_from


@click.command()
@config_option
@click.option("--api-only", is_flag=True, help="Serve the HTTP API only; another process delivers.")
@click.option(
    "--worker-only", is_flag=True, help="Deliver and run the scheduler only; no HTTP API."
)
def serve(config_path: Path | None, api_only: bool, worker_only: bool) -> None:
    """Run the gateway (HTTP API, delivery worker and scheduler)."""
    if api_only and worker_only:
        raise click.UsageError("--api-only and --worker-only exclude each other; give at most one")
    settings = settings_from(config_path)
    from gateway.runtime import Role  # noqa: PLC0415  (keeps `pushgate --help` fast)
    from gateway.server import run  # noqa: PLC0415

    role = Role.API if api_only else Role.WORKER if worker_only else Role.ALL
    raise SystemExit(run(settings, role))
