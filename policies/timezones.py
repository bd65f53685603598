"""Looking up IANA time zones, and which one a user's local time is read in (SPEC §3 rule 6)."""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

if TYPE_CHECKING:
    from policies.settings import PolicySettings, UserFacts

__all__ = ["is_valid_timezone", "load_zone", "resolve_timezone", "resolve_zone"]


@lru_cache(maxsize=2048)
def _zone_or_none(name: str) -> ZoneInfo | None:
    # Cached, misses included: stored preferences are re-read on every decision, and a bad
    # name would otherwise cost a failed file lookup each time. The tz database does not
    # change under a running process (zoneinfo caches its zones for the same reason).
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        # ValueError: empty or path-like names ("../x"); OSError: directories ("America").
        return None


def is_valid_timezone(name: str) -> bool:
    """Whether `name` is an IANA time zone this process can load (e.g. "Europe/Dublin")."""
    return _zone_or_none(name) is not None


def load_zone(name: str) -> ZoneInfo:
    """Return the `ZoneInfo` for `name`; raise `ValueError` naming it when it is unknown."""
    zone = _zone_or_none(name)
    if zone is None:
        raise ValueError(f"unknown IANA time zone {name!r}")
    return zone


def resolve_zone(user: UserFacts, settings: PolicySettings) -> ZoneInfo:
    """Like `resolve_timezone`, but return the loaded zone."""
    for name in (user.timezone, user.device_timezone):
        if name:
            zone = _zone_or_none(name)
            if zone is not None:
                return zone
    return load_zone(settings.default_timezone)


def resolve_timezone(user: UserFacts, settings: PolicySettings) -> str:
    """Return the IANA zone the user's local time is read in.

    The user's preference, else the zone reported by their most recently seen device, else
    `settings.default_timezone`. A stored name that no longer loads (a typo that slipped in,
    a zone removed from tzdata) falls through to the next source instead of failing delivery.
    """
    for name in (user.timezone, user.device_timezone):
        if name and _zone_or_none(name) is not None:
            return name
    return settings.default_timezone
