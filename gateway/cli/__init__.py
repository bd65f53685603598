"""The ``pushgate`` command line: serve, database migrations, and operator commands."""

from __future__ import annotations

import click

from gateway.cli.db import db
from gateway.cli.operator import deferred, notifications, tokens
from gateway.cli.permission import permission
from gateway.cli.serve import serve


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="pushgate")
def cli() -> None:
    """pushgate: push delivery gateway with notification tiers, quiet hours and token hygiene."""


cli.add_command(serve)
cli.add_command(db)
cli.add_command(tokens)
cli.add_command(notifications)
cli.add_command(deferred)
cli.add_command(permission)


def main() -> None:
    cli()
