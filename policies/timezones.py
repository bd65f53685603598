"""IANA time zones from the pinned ``tzdata`` package.

Zones are read from ``tzdata`` explicitly, never from the host's ``/usr/share/zoneinfo``: every
machine then agrees on when quiet hours end, and the rules move only with a release of
pushgate. The set of valid names is tzdata's own list, so a directory such as ``America`` or a
data file shipped beside the zones is never taken for a zone.
"""

from __future__ import annotations

from importlib import resources
from zoneinfo import ZoneInfo

__all__ = ["AVAILABLE_TIMEZONES", "ZoneDatabase", "is_valid_timezone", "load_zone"]

AVAILABLE_TIMEZONES: frozenset[str] = frozenset(
    resources.files("tzdata").joinpath("zones").read_text(encoding="utf-8").split()
)
"""Every zone name tzdata ships, links such as ``US/Eastern`` included."""


def is_valid_timezone(name: str) -> bool:
    """Whether ``name`` is an IANA time zone of the pinned tzdata (e.g. "Europe/Dublin")."""
    return name in AVAILABLE_TIMEZONES


def load_zone(name: str) -> ZoneInfo:
    """Read zone ``name`` from tzdata; raise ``ValueError`` naming it when it is unknown.

    Each call reads and parses the zone (tens of microseconds): decisions go through a
    :class:`ZoneDatabase`, which keeps what it loaded.
    """
    if not is_valid_timezone(name):
        raise ValueError(f"unknown IANA time zone {name!r}")
    with resources.files("tzdata.zoneinfo").joinpath(*name.split("/")).open("rb") as data:
        return ZoneInfo.from_file(data, key=name)


class ZoneDatabase:
    """Zones loaded from tzdata, kept by name for the life of this object.

    One belongs to each :class:`~policies.settings.PolicySettings`, so the zones of a running
    gateway are read once. The tz database does not change under a running process, and there
    are only about 600 names, so nothing is ever evicted.
    """

    __slots__ = ("_zones",)

    def __init__(self) -> None:
        self._zones: dict[str, ZoneInfo] = {}

    def get(self, name: str) -> ZoneInfo | None:
        """Zone ``name``, or None when it is not an IANA zone."""
        zone = self._zones.get(name)
        if zone is None and is_valid_timezone(name):
            zone = self._zones[name] = load_zone(name)
        return zone

    def load(self, name: str) -> ZoneInfo:
        """Zone ``name``; raise ``ValueError`` naming it when it is unknown."""
        zone = self.get(name)
        if zone is None:
            raise ValueError(f"unknown IANA time zone {name!r}")
        return zone
