"""Operator commands: token hygiene and inspection (``tokens``, ``notifications``, ``deferred``)."""

from __future__ import annotations

import click


@click.group()
def tokens() -> None:
    """Device-token registry: statistics, stale cleanup, purge of invalid tokens."""


@click.group()
def notifications() -> None:
    """Inspect notifications."""


@click.group()
def deferred() -> None:
    """Inspect deferred notifications."""
