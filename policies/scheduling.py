"""Scheduled sends named in the user's local time: from a wall time to the instant to send at.

A caller may schedule a notification as a wall time in the user's IANA zone instead of as an
instant: "YYYY-MM-DDTHH:MM" for that local date and time, or "HH:MM" for the next time the
user's clock reads it (today's date in their zone, else tomorrow's).

A wall time does not always name exactly one instant. When the clocks spring forward over it
(a gap), it is never shown, and the send goes at the first valid instant after it, the moment
the clock jumps. When they fall back over it (a fold), it is shown twice, and the send goes at
the first of the two, when the user first sees that time. Both rules are one rule: the earliest
instant at which the local clock reads the wall time or a later one. That is how the tests
check it, and why a whole skipped day (Pacific/Apia, 2011-12-30) needs no special case.

Instants returned are aware datetimes in UTC. Wall times are naive on purpose: they mean what
the user's clock reads in whichever zone is in force, so a send scheduled for 09:00 can still
go at 09:00 for a user who has moved to another zone before it is due. A `LocalSchedule` keeps
what that needs (the wall time chosen, the zone it was read in, the instant it came to), and
`follow_user` reads it again in the zone the user is in when it is due.

A schedule may reach at most `PolicySettings.max_schedule_days` ahead (`check_schedule`).
"""

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from policies.quiet_hours import as_utc
from policies.timezones import load_zone
from policies.wall_time import instants_of_wall_time

__all__ = [
    "LocalSchedule",
    "LocalSendTime",
    "check_schedule",
    "first_instant_at",
    "follow_user",
    "parse_send_at_local",
    "reresolve_send_at_local",
    "resolve_send_at_local",
    "schedule_local",
    "scheduled_local_datetime",
]

# ASCII digits only: `\d` would also accept other scripts' digits, which int() reads happily.
_TIME_OF_DAY = re.compile(r"([0-9]{2}):([0-9]{2})")
_LOCAL_DATE_AND_TIME = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2})")
_EXPECTED_FORMS = (
    'expected "HH:MM" or "YYYY-MM-DDTHH:MM" (24-hour local time, no seconds, no UTC offset)'
)
# An error message quotes at most this much of the rejected text, which comes from a request.
_QUOTED_CHARS = 40
_ONE_DAY = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class LocalSendTime:
    """A parsed `send_at_local`: the naive wall `time` on `date`.

    `date` is None for the "HH:MM" form, which means today's or tomorrow's date in the user's
    zone, chosen when it is resolved.
    """

    time: time
    date: date | None


def parse_send_at_local(text: str) -> LocalSendTime:
    """Parse a `send_at_local` value, "HH:MM" or "YYYY-MM-DDTHH:MM", into a `LocalSendTime`.

    Strict: exactly one of those two shapes with ASCII digits, a 24-hour time from 00:00 to
    23:59 and a real calendar date; no seconds, no UTC offset, nothing before or after.
    Raises `ValueError` saying what is wrong and which forms are expected.
    """
    day: date | None
    if match := _TIME_OF_DAY.fullmatch(text):
        hour, minute = (int(part) for part in match.groups())
        day = None
    elif match := _LOCAL_DATE_AND_TIME.fullmatch(text):
        year, month, day_of_month, hour, minute = (int(part) for part in match.groups())
        try:
            day = date(year, month, day_of_month)
        except ValueError as exc:
            raise ValueError(
                f"send_at_local {_quoted(text)} is not a calendar date ({exc}); {_EXPECTED_FORMS}"
            ) from exc
    else:
        raise ValueError(
            f"send_at_local {_quoted(text)} is not a local wall time; {_EXPECTED_FORMS}"
        )
    if hour > 23 or minute > 59:
        raise ValueError(
            f"send_at_local {_quoted(text)} is not a time of day from 00:00 to 23:59; "
            f"{_EXPECTED_FORMS}"
        )
    return LocalSendTime(time(hour, minute), day)


def first_instant_at(day: date, wall: time, zone: str | ZoneInfo) -> datetime:
    """The first instant at which the local clock in `zone` reads the naive `wall` on `day`.

    When the clock shows that time twice (it falls back over it), the first of the two; when
    it never shows it (it springs forward over it), the instant the clock jumps, which is the
    first valid instant after it. Returns an aware datetime in UTC. Raises `ValueError` for an
    unknown zone, an aware `wall`, or a date too near the calendar's ends to have an instant.
    """
    if isinstance(zone, str):
        zone = load_zone(zone)
    return min(_instants_at(_local_datetime(day, wall), zone))


def resolve_send_at_local(now: datetime, zone: str | ZoneInfo, local: LocalSendTime) -> datetime:
    """The instant a `send_at_local` stands for in `zone`, as seen at the aware `now`.

    With a date: `first_instant_at` that date and time, whether or not it is after `now` (that
    check is the caller's). Without one: today's date in `zone` (the local date of `now`) if
    that resolves to an instant strictly after `now`, else tomorrow's, at the first instant
    after `now` that the clock reaches it. That is tomorrow's first occurrence, except where
    the clock fell back across midnight and has already shown tomorrow's time once before
    `now` (America/St_Johns until 2010, Antarctica/Casey in 2010): then the second, so an
    "HH:MM" send is never scheduled in the past.
    Returns an aware datetime in UTC. Raises `ValueError` for a naive `now` or an unknown zone.
    """
    return _resolve(now, zone, local)[1]


def scheduled_local_datetime(now: datetime, zone: str | ZoneInfo, local: LocalSendTime) -> datetime:
    """The naive local date and time `resolve_send_at_local` resolved `local` from at `now`.

    The requested wall time on the date chosen for it, not what the clock reads at the
    resolved instant (those differ in a gap): what to keep for `reresolve_send_at_local`.
    """
    return _resolve(now, zone, local)[0]


def reresolve_send_at_local(wall: datetime, zone: str | ZoneInfo) -> datetime:
    """The instant of an accepted local schedule in the user's zone now, after they moved.

    `wall` is the naive local date and time from `scheduled_local_datetime` at acceptance; it
    is resolved afresh in `zone` with the same rules (`first_instant_at`), so the send goes at
    that wall time where the user now lives. The caller waits for the result, or sends at once
    when it is already past. For a user still in the same zone, keep the instant resolved at
    acceptance: it can differ from this one where an "HH:MM" send took a later occurrence.
    Returns an aware datetime in UTC. Raises `ValueError` for an aware `wall` or an unknown zone.
    """
    if wall.tzinfo is not None:
        raise ValueError(f"wall must be a naive local date and time, got {wall.isoformat()}")
    return first_instant_at(wall.date(), wall.time(), zone)


@dataclass(frozen=True, slots=True)
class LocalSchedule:
    """A `send_at_local` as accepted: the naive local date and time chosen (`wall`), the name
    of the zone it was read in, and the instant (UTC) it came to there."""

    wall: datetime
    zone: str
    instant: datetime

    def __post_init__(self) -> None:
        if self.wall.tzinfo is not None:
            raise ValueError(f"wall must be a naive local date and time, got {self.wall}")


def schedule_local(now: datetime, zone: ZoneInfo, local: LocalSendTime) -> LocalSchedule:
    """Resolve a parsed `send_at_local` in the user's loaded `zone` at the aware `now` (see
    `resolve_send_at_local`), keeping what `follow_user` needs to read it again later.

    The instant may not be after `now` (a dated wall time already past): `check_schedule`
    tells. Raises `ValueError` for a naive `now` or a date at the calendar's ends.
    """
    wall, instant = _resolve(now, zone, local)
    return LocalSchedule(wall, zone.key, instant)


def follow_user(schedule: LocalSchedule, zone: ZoneInfo) -> LocalSchedule:
    """`schedule` for a user whose local time is now read in the loaded `zone`.

    The same schedule while the zone is the one it was resolved in (an "HH:MM" send keeps the
    occurrence chosen at acceptance); otherwise the same wall time in the new zone, resolved
    with the same rules (`reresolve_send_at_local`). Whether that instant is still ahead is the
    caller's to see: ahead, it waits for it; past, it goes now.
    """
    if zone.key == schedule.zone:
        return schedule
    return LocalSchedule(schedule.wall, zone.key, reresolve_send_at_local(schedule.wall, zone))


def check_schedule(now: datetime, instant: datetime, max_days: int) -> None:
    """Raise `ValueError` saying why, unless the aware `instant` is after the aware `now` and
    at most `max_days` days after it."""
    now_utc = as_utc(now, "now")
    instant_utc = as_utc(instant, "instant")
    if instant_utc <= now_utc:
        raise ValueError(
            f"the scheduled moment ({instant_utc.isoformat()}) is not after now "
            f"({now_utc.isoformat()})"
        )
    if instant_utc - now_utc > timedelta(days=max_days):
        raise ValueError(
            f"the scheduled moment ({instant_utc.isoformat()}) is more than {max_days} days "
            "ahead (policy.max_schedule_days)"
        )


def _resolve(
    now: datetime, zone: str | ZoneInfo, local: LocalSendTime
) -> tuple[datetime, datetime]:
    """(the naive local date and time chosen, the instant it resolves to) for `local`."""
    now_utc = as_utc(now, "now")
    if isinstance(zone, str):
        zone = load_zone(zone)
    if local.date is not None:
        wall = _local_datetime(local.date, local.time)
        return wall, min(_instants_at(wall, zone))
    today = now_utc.astimezone(zone).date()
    wall = _local_datetime(today, local.time)
    today_instant = min(_instants_at(wall, zone))
    if today_instant > now_utc:
        return wall, today_instant
    wall += _ONE_DAY  # naive, so this is calendar arithmetic: the same time tomorrow
    instants = _instants_at(wall, zone)
    # One is ahead of `now` unless the clock jumped forward over tomorrow's time and then back
    # across midnight within the day, which no zone in the tz database does; the default only
    # keeps this total.
    return wall, min((instant for instant in instants if instant > now_utc), default=instants[0])


def _instants_at(wall: datetime, zone: ZoneInfo) -> list[datetime]:
    """`instants_of_wall_time`, with a date at the calendar's ends reported as a `ValueError`."""
    try:
        return list(instants_of_wall_time(wall, zone))
    except OverflowError as exc:
        raise ValueError(f"{wall.isoformat()} in {zone} is beyond the range of datetime") from exc


def _local_datetime(day: date, wall: time) -> datetime:
    if wall.tzinfo is not None:
        raise ValueError(f"wall must be a naive local time, got {wall.isoformat()}")
    # fold=0 explicitly: `combine` copies the time's fold, and fold=1 would read a repeated
    # wall time as its second occurrence.
    return datetime.combine(day, wall).replace(fold=0)


def _quoted(text: str) -> str:
    if len(text) <= _QUOTED_CHARS:
        return repr(text)
    return f"{text[:_QUOTED_CHARS]!r}..."
