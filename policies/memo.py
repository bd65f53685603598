"""Answers worth remembering between decisions, held by the caller, never by this package.

A burst of notifications to one time zone at night asks the same question thousands of times:
"when does this quiet stretch end?". The answer is exact for every instant up to that end, so it
can be reused; the deferral value built from it can be shared too (a frozen dataclass costs
about as much to build as the time-zone arithmetic), and so can each user's share of the release
spread (a hash of their id). :class:`DecisionMemo` keeps all three. Each
:class:`~policies.settings.PolicySettings` owns one, so nothing is shared between gateways,
tests or threads by accident.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from policies.decisions import Defer

__all__ = ["DecisionMemo"]

# (zone, quiet start, quiet end) -> (a queried now, the next allowed instant, the next quiet one)
StretchKey = tuple[ZoneInfo, time, time]


class DecisionMemo:
    """Quiet stretches by zone and window, and shared deferral values; see the module text.

    Bounded: each table is emptied wholesale when it reaches :attr:`LIMIT` entries, which
    costs a few recomputations and never a wrong answer.
    """

    LIMIT = 4096
    __slots__ = ("_deferrals", "_offsets", "_stretches")

    def __init__(self) -> None:
        self._stretches: dict[StretchKey, tuple[datetime, datetime, datetime]] = {}
        self._deferrals: dict[tuple[datetime, str], Defer] = {}
        self._offsets: dict[tuple[str, int], timedelta] = {}

    def clear(self) -> None:
        """Forget everything (what the next decisions recompute is the same)."""
        self._stretches.clear()
        self._deferrals.clear()
        self._offsets.clear()

    def offset(
        self, user_id: str, spread_minutes: int, compute: Callable[[str, int], timedelta]
    ) -> timedelta:
        """A user's release offset, ``compute``d once while it is remembered."""
        key = (user_id, spread_minutes)
        offset = self._offsets.get(key)
        if offset is None:
            if len(self._offsets) >= self.LIMIT:
                self._offsets.clear()
            offset = self._offsets[key] = compute(user_id, spread_minutes)
        return offset

    def stretch(self, key: StretchKey, now_utc: datetime) -> tuple[datetime, datetime] | None:
        """(allowed at, quiet again at) remembered for ``key`` when ``now_utc`` lies in the
        quiet interval it was computed for; None when nothing fits."""
        remembered = self._stretches.get(key)
        if remembered is not None and remembered[0] <= now_utc < remembered[1]:
            return remembered[1], remembered[2]
        return None

    def remember_stretch(
        self, key: StretchKey, now_utc: datetime, allowed_at: datetime, quiet_again_at: datetime
    ) -> None:
        """Every instant in [``now_utc``, ``allowed_at``) is quiet with this same answer."""
        if len(self._stretches) >= self.LIMIT:
            self._stretches.clear()
        self._stretches[key] = (now_utc, allowed_at, quiet_again_at)

    def deferral(self, until: datetime, reason: str) -> Defer:
        """A ``Defer(until, reason)``, shared with every other deferral to the same instant."""
        key = (until, reason)
        deferral = self._deferrals.get(key)
        if deferral is None:
            if len(self._deferrals) >= self.LIMIT:
                self._deferrals.clear()
            deferral = self._deferrals[key] = Defer(until, reason)
        return deferral
