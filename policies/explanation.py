"""Why a decision came out as it did, in terms a person can check against the user's clock.

Every decision is explained by the rule that made it, the zone the user's local time was read
in and where that zone came from, the instant of the decision (read in that zone, it is what
the user's clock showed), and the quiet hours when they took part.
:func:`~policies.rules.decide_and_explain` builds the explanation where each rule decides, so
the two cannot disagree; it is built for every notification, which is why it is a named tuple
(a frozen dataclass costs four times as much to build, as much as the decision itself).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from policies.settings import QuietWindow, ZoneSource

__all__ = ["Explanation", "Rule"]


class Rule(StrEnum):
    """The rule that decided, in the order the rules are evaluated."""

    CONSENT = "consent"  # the user's opt-in (or opt-out) for the tier
    DEVICES = "devices"  # no device of the user's could receive it
    EXPIRY = "expiry"  # it ran out of time (or would before its scheduled moment)
    SCHEDULED = "scheduled"  # it waits for the moment the caller asked for
    QUIET_HOURS = "quiet_hours"  # it is night in the user's zone
    FREQUENCY_CAP = "frequency_cap"  # the user had enough of this tier lately
    SEND = "send"  # nothing held it back: it goes now


class Explanation(NamedTuple):
    """How one decision was reached.

    ``quiet_hours`` is the window the decision applied, or None when it applied none: the tier
    ignores quiet hours (transactional), or an earlier rule decided before they were checked
    (consent, devices, expiry, or a scheduled moment not yet come).
    """

    rule: Rule
    zone: ZoneInfo
    zone_source: ZoneSource
    at: datetime
    """The instant of the decision, in UTC."""
    quiet_hours: QuietWindow | None

    @property
    def local_time(self) -> datetime:
        """The instant of the decision as the user's clock showed it, with that zone's offset."""
        return self.at.astimezone(self.zone)

    def as_dict(self) -> dict[str, Any]:
        """The explanation as JSON values: ``zone``, ``zone_source``, ``local_time`` (RFC 3339
        with the zone's offset), ``quiet_hours`` (``{"start", "end"}`` as "HH:MM", or None)
        and ``rule``."""
        window = self.quiet_hours
        return {
            "zone": self.zone.key,
            "zone_source": str(self.zone_source),
            "local_time": self.local_time.isoformat(),
            "quiet_hours": (
                None
                if window is None
                else {"start": window.start.strftime("%H:%M"), "end": window.end.strftime("%H:%M")}
            ),
            "rule": str(self.rule),
        }
