"""``pushgate serve``: the HTTP API and the delivery worker, in one process or split by role."""

from __future__ import annotations

import os
from pathlib import Path

import click

from gateway.cli.context import config_option, exit_with_error, settings_from
from gateway.config import CONFIG_ENV


@click.command()
@config_option
@click.option("--api-only", is_flag=True, help="Serve the HTTP API only; another process delivers.")
@click.option(
    "--worker-only",
    is_flag=True,
    help="Deliver and run the scheduler only; HTTP serves /healthz, /readyz and /metrics.",
)
@click.option(
    "--processes",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="HTTP API processes sharing server.port (SO_REUSEPORT); the first also delivers.",
)
@click.option(
    "--dev",
    is_flag=True,
    help="Start without a configuration file, on the built-in defaults (no API keys, no apps).",
)
def serve(
    config_path: Path | None, api_only: bool, worker_only: bool, processes: int, dev: bool
) -> None:
    """Run the gateway (HTTP API, delivery worker and scheduler)."""
    if api_only and worker_only:
        raise click.UsageError("--api-only and --worker-only exclude each other; give at most one")
    if worker_only and processes > 1:
        raise click.UsageError(
            "--processes starts API processes and --worker-only serves no API; on PostgreSQL, "
            "start several --worker-only processes to deliver in parallel"
        )
    # A deployment may configure everything through PUSHGATE_* variables (a container, say):
    # that is a configuration too.
    configured_by_environment = any(
        name.startswith("PUSHGATE_") and name != CONFIG_ENV for name in os.environ
    )
    if config_path is None and not configured_by_environment and not dev:
        # Started without one, the gateway would run with no API keys and no apps: up, and
        # refusing every request with 401. Say so before anything starts.
        exit_with_error(
            f"no configuration file: give --config PATH or set {CONFIG_ENV} "
            "(config.example.toml runs as it is), or configure it with PUSHGATE_* variables. "
            "To start on the built-in defaults anyway (no API keys, so every request is "
            "refused; no apps), give --dev"
        )
    settings = settings_from(config_path)
    from gateway.runtime import Role  # noqa: PLC0415  (keeps `pushgate --help` fast)
    from gateway.server import run  # noqa: PLC0415

    role = Role.API if api_only else Role.WORKER if worker_only else Role.ALL
    built_in_defaults = dev and config_path is None
    if processes > 1:
        from gateway.processes import serve_processes  # noqa: PLC0415

        raise SystemExit(
            serve_processes(settings, role, processes, built_in_defaults=built_in_defaults)
        )
    raise SystemExit(run(settings, role, built_in_defaults=built_in_defaults))
