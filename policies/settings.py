"""The inputs of a decision: operator policy (from `[policy]` and `[categories]`) and user facts.

Both are plain frozen values so `policies` stays free of I/O: the gateway reads configuration,
preferences, devices and recent counts, and hands them over.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import time
from enum import StrEnum
from types import MappingProxyType
from zoneinfo import ZoneInfo

from policies.memo import DecisionMemo
from policies.tiers import Tier
from policies.timezones import ZoneDatabase, is_valid_timezone

__all__ = [
    "BEHAVIORAL_DEFAULT_OPT_IN",
    "DEFAULT_FREQUENCY_CAPS",
    "DEFAULT_MAX_SCHEDULE_DAYS",
    "DEFAULT_QUIET_HOURS",
    "DEFAULT_RELEASE_SPREAD_MINUTES",
    "DEFAULT_TIER",
    "DEFAULT_TIMEZONE",
    "DEFAULT_TTL_SECONDS",
    "FrequencyCap",
    "PolicySettings",
    "QuietWindow",
    "UserFacts",
    "ZoneSource",
    "locate_user",
    "resolve_timezone",
    "resolve_zone",
]


@dataclass(frozen=True, slots=True)
class QuietWindow:
    """Naive local wall-clock times; quiet from `start` up to (not including) `end`.

    `start > end` wraps midnight (22:00-08:00), `start < end` does not, `start == end` is
    never quiet.
    """

    start: time
    end: time

    def __post_init__(self) -> None:
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError("quiet hours are local wall-clock times; give naive times")

    @property
    def is_empty(self) -> bool:
        """True when the window is never quiet (start == end)."""
        return self.start == self.end


@dataclass(frozen=True, slots=True)
class FrequencyCap:
    """At most `max` notifications of a tier per user in any rolling `window_seconds`."""

    max: int
    window_seconds: int

    def __post_init__(self) -> None:
        if self.max < 0:
            raise ValueError(f"frequency cap max must be >= 0, got {self.max}")
        if self.window_seconds <= 0:
            raise ValueError(f"frequency cap window_seconds must be > 0, got {self.window_seconds}")


# The defaults of every policy knob, here and only here: the configuration file's defaults are
# these values.
DEFAULT_TIMEZONE = "UTC"
DEFAULT_QUIET_HOURS = QuietWindow(time(22), time(8))
DEFAULT_RELEASE_SPREAD_MINUTES = 30
BEHAVIORAL_DEFAULT_OPT_IN = True
DEFAULT_TIER = Tier.PROMOTIONAL  # the most restrictive: an unlabelled notification is a promo
DEFAULT_TTL_SECONDS: Mapping[Tier, int] = MappingProxyType(
    {Tier.TRANSACTIONAL: 86_400, Tier.BEHAVIORAL: 86_400, Tier.PROMOTIONAL: 3 * 86_400}
)
DEFAULT_FREQUENCY_CAPS: Mapping[Tier, FrequencyCap] = MappingProxyType(
    {
        Tier.PROMOTIONAL: FrequencyCap(max=2, window_seconds=86_400),
        Tier.BEHAVIORAL: FrequencyCap(max=6, window_seconds=86_400),
    }
)
DEFAULT_MAX_SCHEDULE_DAYS = 365  # a year ahead covers yearly reminders; further is a typo


@dataclass(frozen=True, slots=True)
class PolicySettings:
    """Operator policy. Invalid values raise `ValueError`.

    It also carries the zone database and the memo that keep decisions cheap (see
    :mod:`policies.memo`): derived data that never changes an answer, owned by whoever holds
    these settings.
    """

    default_timezone: str = DEFAULT_TIMEZONE
    quiet_hours: QuietWindow = DEFAULT_QUIET_HOURS
    release_spread_minutes: int = DEFAULT_RELEASE_SPREAD_MINUTES
    behavioral_default_opt_in: bool = BEHAVIORAL_DEFAULT_OPT_IN
    default_ttl_seconds: Mapping[Tier, int] = field(default_factory=lambda: DEFAULT_TTL_SECONDS)
    frequency_caps: Mapping[Tier, FrequencyCap] = field(
        default_factory=lambda: DEFAULT_FREQUENCY_CAPS
    )
    default_tier: Tier = DEFAULT_TIER
    categories: Mapping[str, Tier] = field(default_factory=lambda: MappingProxyType({}))
    max_schedule_days: int = DEFAULT_MAX_SCHEDULE_DAYS
    """How far ahead a caller may schedule a send (`send_at`, `send_at_local`)."""
    zones: ZoneDatabase = field(default_factory=ZoneDatabase, compare=False, repr=False)
    memo: DecisionMemo = field(default_factory=DecisionMemo, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not is_valid_timezone(self.default_timezone):
            raise ValueError(f"default_timezone: unknown IANA time zone {self.default_timezone!r}")
        if self.release_spread_minutes < 0:
            raise ValueError("release_spread_minutes must be >= 0")
        if self.max_schedule_days < 1:
            raise ValueError(f"max_schedule_days must be >= 1, got {self.max_schedule_days}")
        missing = [tier.value for tier in Tier if tier not in self.default_ttl_seconds]
        if missing:
            raise ValueError(f"default_ttl_seconds: no TTL for {', '.join(missing)}")
        for tier, ttl in self.default_ttl_seconds.items():
            if ttl <= 0:
                raise ValueError(f"default_ttl_seconds.{tier}: must be > 0, got {ttl}")
        if Tier.TRANSACTIONAL in self.frequency_caps:
            # Transactional is counted but never capped: an order update always goes out.
            raise ValueError("frequency_caps.transactional: transactional is never capped")


@dataclass(frozen=True, slots=True)
class UserFacts:
    """What the gateway knows about the recipient at the moment of the decision."""

    user_id: str
    timezone: str | None = None
    """IANA zone from the user's preferences."""
    device_timezone: str | None = None
    """Zone reported by the user's most recently seen device."""
    behavioral_opt_in: bool | None = None
    """None: not set, `PolicySettings.behavioral_default_opt_in` applies."""
    promotional_opt_in: bool | None = None
    """None: not set, which means no (promotional needs an explicit opt-in)."""
    quiet_hours: QuietWindow | None = None
    """None: `PolicySettings.quiet_hours` applies."""
    active_devices: int = 0
    """Active devices of the user for the app whose permission is not `denied`."""
    recent_counts: Mapping[Tier, int] = field(default_factory=lambda: MappingProxyType({}))
    """Notifications of each tier counted in that tier's cap window ending at now
    (see `cap_window_start`)."""


class ZoneSource(StrEnum):
    """Where the zone a user's local time is read in came from."""

    PREFERENCES = "preferences"  # the user set it
    DEVICE = "device"  # their most recently seen device reported it
    DEFAULT = "default"  # neither did: the operator's `default_timezone`


def locate_user(user: UserFacts, settings: PolicySettings) -> tuple[ZoneInfo, ZoneSource]:
    """The zone the user's local time is read in (see :func:`resolve_timezone`), loaded, and
    where it came from."""
    name = user.timezone
    if name:
        zone = settings.zones.get(name)
        if zone is not None:
            return zone, ZoneSource.PREFERENCES
    name = user.device_timezone
    if name:
        zone = settings.zones.get(name)
        if zone is not None:
            return zone, ZoneSource.DEVICE
    return settings.zones.load(settings.default_timezone), ZoneSource.DEFAULT


def resolve_zone(user: UserFacts, settings: PolicySettings) -> ZoneInfo:
    """Like :func:`resolve_timezone`, but return the loaded zone."""
    for name in (user.timezone, user.device_timezone):
        if name:
            zone = settings.zones.get(name)
            if zone is not None:
                return zone
    return settings.zones.load(settings.default_timezone)


def resolve_timezone(user: UserFacts, settings: PolicySettings) -> str:
    """Return the IANA zone the user's local time is read in.

    The user's preference, else the zone reported by their most recently seen device, else
    ``settings.default_timezone``. A stored name that no longer loads (a typo that slipped in,
    a zone removed from tzdata) falls through to the next source instead of failing delivery.
    """
    for name in (user.timezone, user.device_timezone):
        if name and is_valid_timezone(name):
            return name
    return settings.default_timezone
