"""Quiet hours in the user's own IANA time zone, DST-correct.

Everything here works on instants (aware datetimes, compared and added in UTC) and reads local
wall time only to test it against the window: adding a timedelta to a datetime whose tzinfo is
a `ZoneInfo` is wall-clock arithmetic and is wrong across DST, so it is never done.

How the next allowed instant is found. Local time is right-continuous in the instant, so the
earliest non-quiet instant after a quiet one is either where the wall clock reaches `end`, or a
UTC-offset transition at which the clock jumps out of the window: forward over `end` (`end` is
in a DST gap that day: the transition is "the first valid instant after it") or backward over
`start` (`start` is in a repeated hour). Those candidates, for the local dates around `now`, are
collected, checked against the window, and the earliest one wins. A repeated `end` gives two
candidates, so the first occurrence still ahead of `now` is chosen.
"""

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from hashlib import blake2b
from zoneinfo import ZoneInfo

from policies.memo import DecisionMemo
from policies.timezones import load_zone
from policies.wall_time import clock_shows, instants_of_wall_time, transition_between

__all__ = [
    "is_quiet",
    "next_allowed_instant",
    "next_quiet_instant",
    "release_instant",
    "release_offset",
]

# Local dates searched around `now` before widening the search: the answer is normally within
# a day, and one extra day covers a skipped date (Pacific/Apia, 2011-12-30).
_FIRST_SEARCH_DAYS = range(-1, 4)
_MAX_SEARCH_DAYS = 14
_ONE_SECOND = timedelta(seconds=1)


def is_quiet(local: time, start: time, end: time) -> bool:
    """Whether the naive local wall time `local` falls in the quiet window `start`-`end`.

    start > end (wraps midnight): `local >= start or local < end`; start < end:
    `start <= local < end`; start == end: never.
    """
    if start < end:
        return start <= local < end
    if start > end:
        return local >= start or local < end
    return False


def next_allowed_instant(now: datetime, zone: str, start: time, end: time) -> datetime:
    """The earliest instant at or after the aware `now` at which local time in `zone` is not quiet.

    `now` itself when it is not quiet. Otherwise the next instant at which the local clock
    reaches `end`; when that wall time does not exist that day (DST gap) the first valid instant
    after it; when it occurs twice, the first occurrence still ahead of `now`. No release spread.
    Returns an aware datetime in UTC. Raises `ValueError` for a naive `now` or an unknown zone.
    """
    now_utc = as_utc(now, "now")
    stretch = quiet_stretch(now_utc, load_zone(zone), start, end)
    return now_utc if stretch is None else stretch[0]


def next_quiet_instant(after: datetime, zone: str, start: time, end: time) -> datetime | None:
    """The earliest instant at or after the aware `after` at which local time in `zone` is quiet.

    None when the window is empty (never quiet). Returns an aware datetime in UTC.
    """
    after_utc = as_utc(after, "after")
    if start == end:
        return None
    return _earliest_instant(after_utc, load_zone(zone), start, end, quiet=True)


def release_offset(user_id: str, spread_minutes: int) -> timedelta:
    """The user's stable share of the release spread, in `[0, spread_minutes)` minutes.

    A keyed-free blake2b of the user id, so it is the same in every process and after every
    restart (Python's `hash()` is salted per process), and whole seconds so it reads cleanly.
    """
    if spread_minutes <= 0:
        return timedelta(0)
    # surrogatepass: a JSON body can carry a lone surrogate ("\\ud800") in a user id.
    digest = blake2b(user_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return timedelta(seconds=int.from_bytes(digest, "big") % (spread_minutes * 60))


def release_instant(
    now: datetime,
    zone: str | ZoneInfo,
    start: time,
    end: time,
    *,
    user_id: str,
    spread_minutes: int,
) -> datetime | None:
    """When a notification that may not go out now is released: None when `now` is not quiet.

    The next allowed instant plus the user's `release_offset`. The offset never pushes the
    release into the next quiet period: when the allowed stretch is shorter than the spread,
    the offset is scaled down proportionally (`offset * stretch // spread`, in whole seconds),
    which keeps the release inside the stretch and users spread out in the same order.
    Returns UTC.
    """
    if isinstance(zone, str):
        zone = load_zone(zone)
    stretch = quiet_stretch(as_utc(now, "now"), zone, start, end)
    if stretch is None:
        return None
    return spread_release(stretch, user_id, spread_minutes)


def spread_release(
    stretch: tuple[datetime, datetime],
    user_id: str,
    spread_minutes: int,
    memo: DecisionMemo | None = None,
) -> datetime:
    """The release instant in an allowed `stretch` (from `quiet_stretch`), see `release_instant`.
    With a `memo`, the user's offset is remembered (a hash per deferral is a third of one)."""
    allowed_at, quiet_again_at = stretch
    if memo is None:
        offset = release_offset(user_id, spread_minutes)
    else:
        offset = memo.offset(user_id, spread_minutes, release_offset)
    allowed_for = quiet_again_at - allowed_at
    if offset >= allowed_for:
        # Whole seconds, rounded down: offset < spread, so the result stays < allowed_for.
        offset = timedelta(
            seconds=offset // _ONE_SECOND * (allowed_for // _ONE_SECOND) // (spread_minutes * 60)
        )
    return allowed_at + offset


def as_utc(instant: datetime, name: str) -> datetime:
    """`instant` in UTC; raise `ValueError` naming it when it is naive."""
    zone = instant.tzinfo
    if zone is UTC:
        return instant
    if zone is None or instant.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime, got naive {instant.isoformat()}")
    return instant.astimezone(UTC)


def quiet_stretch(
    now_utc: datetime,
    zone: ZoneInfo,
    start: time,
    end: time,
    memo: DecisionMemo | None = None,
) -> tuple[datetime, datetime] | None:
    """(next allowed instant, next quiet instant after it) when `now_utc` is quiet, else None.

    `now_utc` must be an aware datetime in UTC (see `as_utc`).

    With a `memo`, the answer is remembered per (zone, window) with the interval of `now` it
    is valid for: every instant in [a queried now, its next allowed instant) is quiet and has
    that same answer, so a hit is exact, not an approximation. This is what keeps a deferral
    cheap in a burst to one zone.
    """
    key = (zone, start, end)
    if memo is not None:
        remembered = memo.stretch(key, now_utc)
        if remembered is not None:
            return remembered
    if start == end or not is_quiet(now_utc.astimezone(zone).time(), start, end):
        return None
    allowed_at = _earliest_instant(now_utc, zone, start, end, quiet=False)
    quiet_again_at = _earliest_instant(allowed_at, zone, start, end, quiet=True)
    if memo is not None:
        memo.remember_stretch(key, now_utc, allowed_at, quiet_again_at)
    return allowed_at, quiet_again_at


def _earliest_instant(
    after_utc: datetime, zone: ZoneInfo, start: time, end: time, *, quiet: bool
) -> datetime:
    """The earliest instant >= `after_utc` whose local time is quiet (or not, per `quiet`)."""
    if is_quiet(after_utc.astimezone(zone).time(), start, end) == quiet:
        return after_utc
    # Entering the state we want means the clock reaches `reach`, or jumps over it forward
    # (gap), or jumps backward over `back_over`.
    reach, back_over = (start, end) if quiet else (end, start)
    local_day = after_utc.astimezone(zone).date()
    days: range = _FIRST_SEARCH_DAYS
    while True:
        found = [
            instant
            for day_offset in days
            for instant in _candidates(
                local_day + timedelta(days=day_offset), zone, reach, back_over
            )
            if instant >= after_utc
            and is_quiet(instant.astimezone(zone).time(), start, end) == quiet
        ]
        if found:
            return min(found)
        if days.stop > _MAX_SEARCH_DAYS:
            raise RuntimeError(f"no {'quiet' if quiet else 'allowed'} instant within a fortnight")
        days = range(days.stop, days.stop + len(_FIRST_SEARCH_DAYS))


def _candidates(day: date, zone: ZoneInfo, reach: time, back_over: time) -> Iterator[datetime]:
    yield from instants_of_wall_time(datetime.combine(day, reach), zone)
    repeated = datetime.combine(day, back_over)
    first = repeated.replace(tzinfo=zone).astimezone(UTC)
    second = repeated.replace(tzinfo=zone, fold=1).astimezone(UTC)
    if first < second and clock_shows(first, zone, repeated):
        yield transition_between(first, second, zone)
