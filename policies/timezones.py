"""Looking up IANA time zones, and which one a user's local time is read in (SPEC §3 rule 6)."""

from __future__ import annotations

from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

if TYPE_CHECKING:
    from policies.settings import PolicySettings, UserFacts

__all__ = ["is_valid_timezone", "load_zone", "resolve_timezone", "resolve_zone"]


# Zones by name, misses included (as None). Stored preferences are re-read on every decision,
# and a bad name would otherwise cost a failed file lookup each time; a plain dict because this
# lookup is on the decision's hot path. The tz database does not change under a running
# process (zoneinfo caches its zones for the same reason). Cleared wholesale past the limit.
_ZONE_CACHE_LIMIT = 4096
_zones: dict[str, ZoneInfo | None] = {}


def _zone_or_none(name: str) -> ZoneInfo | None:
    try:
        return _zones[name]
    except KeyError:
        pass
    zone: ZoneInfo | None
    try:
        zone = ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        # ValueError: empty or path-like names ("../x"); OSError: directories ("America").
        zone = None
    if len(_zones) >= _ZONE_CACHE_LIMIT:
        _zones.clear()
    _zones[name] = zone
    return zone


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
