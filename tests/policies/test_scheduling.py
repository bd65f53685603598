"""Scheduled sends in local time: parsing, hand-computed answers, and a brute force at every DST.

The tables' comments are the hand computation: the wall time, the UTC offset in force (or the
transition it falls into) from the IANA tz database, and the instant that gives. The property
and exhaustive tests compare against `brute_force_first_instant`, whose docstring says why the
minute-by-minute search is the right reference for gaps and folds alike.
"""

import os
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies import (
    LocalSchedule,
    LocalSendTime,
    check_schedule,
    first_instant_at,
    follow_user,
    parse_send_at_local,
    reresolve_send_at_local,
    resolve_send_at_local,
    schedule_local,
    scheduled_local_datetime,
)
from policies.timezones import AVAILABLE_TIMEZONES, load_zone

# Same knob as the other policy property tests: POLICY_HYPOTHESIS_EXAMPLES=5000 for a deeper
# search. No deadline: a zone's first use loads it from disk, and timing is not under test.
EXAMPLES = settings(
    max_examples=int(os.environ.get("POLICY_HYPOTHESIS_EXAMPLES", "150")), deadline=None
)

ONE_MINUTE = timedelta(minutes=1)
# Every UTC offset lies within -12h..+14h, so the first instant the clock reads a wall time is
# within 14 hours of that wall time read as UTC; 30 hours leaves room for a skipped day.
SEARCH = timedelta(hours=30)

NY = "America/New_York"
LONDON = "Europe/London"
LORD_HOWE = "Australia/Lord_Howe"
APIA = "Pacific/Apia"
AUCKLAND = "Pacific/Auckland"
ST_JOHNS = "America/St_Johns"
CASEY = "Antarctica/Casey"


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def wall(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    """A naive local date and time."""
    return datetime.combine(date(year, month, day), time(hour, minute))


def reading(instant: datetime, zone: ZoneInfo) -> datetime:
    """What the local clock in `zone` reads at `instant`, as a naive datetime."""
    return instant.astimezone(zone).replace(tzinfo=None)


def brute_force_first_instant(
    wanted: datetime, zone: ZoneInfo, scan_from: datetime | None = None
) -> datetime:
    """The earliest whole-minute instant at which the clock in `zone` reads `wanted` or later.

    Why this is the rule for gaps and folds alike: between transitions the local clock runs
    forward with the instant, so it first reads `wanted` or later either by reaching it, which
    is the first time it shows `wanted` (the first occurrence, in a fold), or by jumping over
    it, which means `wanted` is in a gap and that jump is the first valid instant after it.
    A fall back only makes the clock show a time again later, never earlier.

    The search starts SEARCH before `wanted` read as UTC, or at `scan_from` when the caller
    knows the clock runs steadily from well before it. Either way the clock must read less
    than `wanted` there, which is asserted. The minute grid is exact from 1990 on, where every
    offset and every transition is on a whole minute (not so for some zones' local mean times
    and early offsets before then, e.g. Africa/Monrovia at -0:44:30 until 1972).
    """
    start = wanted.replace(tzinfo=UTC) - SEARCH if scan_from is None else scan_from
    assert reading(start, zone) < wanted, (start, wanted)
    instant = start
    while instant <= wanted.replace(tzinfo=UTC) + SEARCH:
        if reading(instant, zone) >= wanted:
            return instant
        instant += ONE_MINUTE
    raise AssertionError(f"the clock in {zone} never reads {wanted} or later")


def brute_force_first_after(now: datetime, wanted: datetime, zone: ZoneInfo) -> datetime:
    """The earliest whole-minute instant after `now` at which the clock reads `wanted` or later."""
    instant = now.replace(second=0, microsecond=0) + ONE_MINUTE
    while instant <= now + 2 * SEARCH:
        if reading(instant, zone) >= wanted:
            return instant
        instant += ONE_MINUTE
    raise AssertionError(f"the clock in {zone} never reads {wanted} or later after {now}")


def brute_force_time_of_day(now: datetime, wanted: time, zone: ZoneInfo) -> datetime:
    """The reference answer for an "HH:MM" send: today's first instant, else tomorrow's next.

    Today is the local date of `now`. Tomorrow's is the first instant after `now` that the
    clock reads it (or later): its first occurrence, unless the clock fell back across midnight
    and showed it once already.
    """
    today = reading(now, zone).date()
    first_today = brute_force_first_instant(datetime.combine(today, wanted), zone)
    if first_today > now:
        return first_today
    return brute_force_first_after(now, datetime.combine(today + timedelta(days=1), wanted), zone)


@dataclass(frozen=True)
class Transition:
    """A change of UTC offset: at `at` the offset goes from `before` to `after`."""

    at: datetime
    before: timedelta
    after: timedelta

    @property
    def jump_from(self) -> datetime:
        """The naive wall time the clock would have reached at `at` without the change."""
        return (self.at + self.before).replace(tzinfo=None)

    @property
    def jump_to(self) -> datetime:
        """The naive wall time the clock reads at `at`."""
        return (self.at + self.after).replace(tzinfo=None)


def offset(instant: datetime, zone: ZoneInfo) -> timedelta:
    value = instant.astimezone(zone).utcoffset()
    assert value is not None
    return value


def offset_transitions(zone: ZoneInfo, start: datetime, end: datetime) -> list[Transition]:
    """Every change of `zone`'s UTC offset in [start, end), to the second.

    Walks six hours at a time and bisects each step whose offset changed. A change and its
    reversal inside one step would be missed; no zone has two transitions within a day of each
    other from 1990 to 2037 (the exhaustive test asserts it for the zones it walks).
    """
    step = timedelta(hours=6)
    found = []
    low, low_offset = start, offset(start, zone)
    while low < end:
        high = low + step
        high_offset = offset(high, zone)
        if high_offset != low_offset:
            below, above = 0, int(step.total_seconds())
            while above - below > 1:
                middle = (below + above) // 2
                if offset(low + timedelta(seconds=middle), zone) == low_offset:
                    below = middle
                else:
                    above = middle
            at = low + timedelta(seconds=above)
            if at < end:
                found.append(Transition(at, low_offset, high_offset))
        low, low_offset = high, high_offset
    return found


def walls_around(transition: Transition) -> list[datetime]:
    """Wall times just before, inside and just after a transition's gap or fold, by minute."""
    low, high = sorted((transition.jump_from, transition.jump_to))
    middle = low + (high - low) // 2
    return [
        low - ONE_MINUTE,
        low,
        middle.replace(second=0),
        high - ONE_MINUTE,
        high,
        high + ONE_MINUTE,
    ]


# --- parsing -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("00:00", LocalSendTime(time(0, 0), None)),
        ("09:05", LocalSendTime(time(9, 5), None)),
        ("23:59", LocalSendTime(time(23, 59), None)),
        ("2026-03-08T02:30", LocalSendTime(time(2, 30), date(2026, 3, 8))),
        ("2024-02-29T00:00", LocalSendTime(time(0, 0), date(2024, 2, 29))),
        ("0001-01-01T00:00", LocalSendTime(time(0, 0), date(1, 1, 1))),
    ],
)
def test_parse_send_at_local(text: str, expected: LocalSendTime) -> None:
    assert parse_send_at_local(text) == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("24:00", "not a time of day"),
        ("23:60", "not a time of day"),
        ("2026-03-08T24:00", "not a time of day"),
        ("9:00", "not a local wall time"),
        ("09:00:00", "not a local wall time"),
        ("09:00\n", "not a local wall time"),
        (" 09:00", "not a local wall time"),
        ("09:00 ", "not a local wall time"),
        ("0900", "not a local wall time"),
        ("09h00", "not a local wall time"),
        ("\uff10\uff19:\uff10\uff10", "not a local wall time"),  # fullwidth digits
        ("\u0660\u0669:\u0660\u0660", "not a local wall time"),  # Arabic-Indic digits
        ("2026-02-30T09:00", "not a calendar date"),
        ("2026-13-01T09:00", "not a calendar date"),
        ("0000-01-01T09:00", "not a calendar date"),
        ("2026-03-08T02:30:00", "not a local wall time"),
        ("2026-03-08T02:30Z", "not a local wall time"),
        ("2026-03-08T02:30+01:00", "not a local wall time"),
        ("09:00+01:00", "not a local wall time"),
        ("09:00Z", "not a local wall time"),
        ("2026-03-08 02:30", "not a local wall time"),
        ("2026-03-08t02:30", "not a local wall time"),
        ("2026-3-8T02:30", "not a local wall time"),
        ("2026-03-08", "not a local wall time"),
        ("", "not a local wall time"),
    ],
)
def test_parse_send_at_local_rejects(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem) as raised:
        parse_send_at_local(text)
    message = str(raised.value)
    assert repr(text) in message
    assert '"HH:MM" or "YYYY-MM-DDTHH:MM"' in message


def test_parse_error_quotes_only_the_start_of_long_input() -> None:
    with pytest.raises(ValueError, match="not a local wall time") as raised:
        parse_send_at_local("9" * 10_000)
    assert len(str(raised.value)) < 200


# --- a local date and time -------------------------------------------------------------------

FIRST_INSTANT = [
    # --- America/New_York: EST -5, EDT -4.
    # An ordinary summer day: 09:00 EDT + 4h = 13:00Z.
    pytest.param(NY, wall(2026, 6, 15, 9), utc(2026, 6, 15, 13), id="ny-ordinary"),
    # Spring forward 2026-03-08: at 02:00 EST (07:00Z) the clock jumps to 03:00 EDT.
    # 01:59 EST + 5h = 06:59Z, the last minute before the gap.
    pytest.param(NY, wall(2026, 3, 8, 1, 59), utc(2026, 3, 8, 6, 59), id="ny-gap-before"),
    # 02:00 and 02:30 are never shown: the transition, 07:00Z (03:00 EDT).
    pytest.param(NY, wall(2026, 3, 8, 2), utc(2026, 3, 8, 7), id="ny-gap-start"),
    pytest.param(NY, wall(2026, 3, 8, 2, 30), utc(2026, 3, 8, 7), id="ny-gap-inside"),
    pytest.param(NY, wall(2026, 3, 8, 2, 59), utc(2026, 3, 8, 7), id="ny-gap-last"),
    # 03:00 EDT is shown, at the transition itself: 03:00 + 4h = 07:00Z; 03:01 = 07:01Z.
    pytest.param(NY, wall(2026, 3, 8, 3), utc(2026, 3, 8, 7), id="ny-gap-end"),
    pytest.param(NY, wall(2026, 3, 8, 3, 1), utc(2026, 3, 8, 7, 1), id="ny-gap-after"),
    # Fall back 2026-11-01: at 02:00 EDT (06:00Z) the clock goes back to 01:00 EST, so
    # 01:00-01:59 is shown twice; the first time is EDT.
    # 00:59 EDT + 4h = 04:59Z.
    pytest.param(NY, wall(2026, 11, 1, 0, 59), utc(2026, 11, 1, 4, 59), id="ny-fold-before"),
    # 01:00 EDT = 05:00Z (not 01:00 EST = 06:00Z); 01:30 EDT = 05:30Z; 01:59 EDT = 05:59Z.
    pytest.param(NY, wall(2026, 11, 1, 1), utc(2026, 11, 1, 5), id="ny-fold-start"),
    pytest.param(NY, wall(2026, 11, 1, 1, 30), utc(2026, 11, 1, 5, 30), id="ny-fold-inside"),
    pytest.param(NY, wall(2026, 11, 1, 1, 59), utc(2026, 11, 1, 5, 59), id="ny-fold-last"),
    # 02:00 is shown once, in EST: 02:00 + 5h = 07:00Z.
    pytest.param(NY, wall(2026, 11, 1, 2), utc(2026, 11, 1, 7), id="ny-fold-after"),
    # --- Europe/London: GMT +0, BST +1.
    # Spring forward 2026-03-29: at 01:00 GMT (01:00Z) the clock jumps to 02:00 BST.
    pytest.param(LONDON, wall(2026, 3, 29, 0, 59), utc(2026, 3, 29, 0, 59), id="london-gap-before"),
    pytest.param(LONDON, wall(2026, 3, 29, 1, 30), utc(2026, 3, 29, 1), id="london-gap-inside"),
    # 02:00 BST - 1h = 01:00Z, the transition again.
    pytest.param(LONDON, wall(2026, 3, 29, 2), utc(2026, 3, 29, 1), id="london-gap-end"),
    # Fall back 2026-10-25: at 02:00 BST (01:00Z) back to 01:00 GMT; 01:00-01:59 twice.
    # 01:30 BST - 1h = 00:30Z (not 01:30 GMT = 01:30Z).
    pytest.param(LONDON, wall(2026, 10, 25, 1, 30), utc(2026, 10, 25, 0, 30), id="london-fold"),
    # 02:00 GMT = 02:00Z.
    pytest.param(LONDON, wall(2026, 10, 25, 2), utc(2026, 10, 25, 2), id="london-fold-after"),
    # --- Australia/Lord_Howe: a 30-minute DST, +10:30 standard, +11 summer.
    # Fall back 2026-04-05: at 02:00 +11 (04-04 15:00Z) back to 01:30 +10:30; 01:30-01:59
    # twice. 01:45 first at +11: 01:45 - 11h = 04-04 14:45Z.
    pytest.param(LORD_HOWE, wall(2026, 4, 5, 1, 45), utc(2026, 4, 4, 14, 45), id="lhi-fold"),
    # 02:00 shown once, at +10:30: 04-04 15:30Z.
    pytest.param(LORD_HOWE, wall(2026, 4, 5, 2), utc(2026, 4, 4, 15, 30), id="lhi-fold-after"),
    # Spring forward 2026-10-04: at 02:00 +10:30 (10-03 15:30Z) on to 02:30 +11.
    # 01:59 +10:30 = 10-03 15:29Z; 02:15 is never shown: the transition, 15:30Z.
    pytest.param(
        LORD_HOWE, wall(2026, 10, 4, 1, 59), utc(2026, 10, 3, 15, 29), id="lhi-gap-before"
    ),
    pytest.param(LORD_HOWE, wall(2026, 10, 4, 2, 15), utc(2026, 10, 3, 15, 30), id="lhi-gap"),
    # 02:30 +11 - 11h = 10-03 15:30Z, the transition, shown normally.
    pytest.param(LORD_HOWE, wall(2026, 10, 4, 2, 30), utc(2026, 10, 3, 15, 30), id="lhi-gap-end"),
    # --- Pacific/Apia skipped 2011-12-30: at 2011-12-30 00:00 -10 (10:00Z) the clock jumped
    # to 2011-12-31 00:00 +14. Every wall time that day is in the gap: the transition.
    pytest.param(APIA, wall(2011, 12, 29, 23, 59), utc(2011, 12, 30, 9, 59), id="apia-eve"),
    pytest.param(APIA, wall(2011, 12, 30, 0, 0), utc(2011, 12, 30, 10), id="apia-midnight"),
    pytest.param(APIA, wall(2011, 12, 30, 12, 0), utc(2011, 12, 30, 10), id="apia-noon"),
    pytest.param(APIA, wall(2011, 12, 30, 23, 59), utc(2011, 12, 30, 10), id="apia-last"),
    # 2011-12-31 00:00 +14 - 14h = 12-30 10:00Z, the transition, shown normally.
    pytest.param(APIA, wall(2011, 12, 31, 0, 0), utc(2011, 12, 30, 10), id="apia-next-day"),
    pytest.param(APIA, wall(2011, 12, 31, 0, 1), utc(2011, 12, 30, 10, 1), id="apia-after"),
]


@pytest.mark.parametrize(("zone", "local", "expected"), FIRST_INSTANT)
def test_first_instant_at(zone: str, local: datetime, expected: datetime) -> None:
    instant = first_instant_at(local.date(), local.time(), zone)
    assert instant == expected
    assert instant.tzinfo is UTC
    # The dated form of send_at_local is the same resolution, whatever `now` is.
    dated = LocalSendTime(local.time(), local.date())
    for now in (expected - timedelta(days=3), expected, expected + timedelta(days=3)):
        assert resolve_send_at_local(now, zone, dated) == expected
        assert scheduled_local_datetime(now, zone, dated) == local


def test_first_instant_at_takes_a_loaded_zone_and_ignores_fold() -> None:
    # fold=1 on the wall time would otherwise pick the second 01:30 (EST, 06:30Z).
    assert first_instant_at(date(2026, 11, 1), time(1, 30, fold=1), load_zone(NY)) == utc(
        2026, 11, 1, 5, 30
    )


def test_first_instant_at_rejects_unknown_zone_aware_wall_and_the_calendars_ends() -> None:
    with pytest.raises(ValueError, match="Mars/Olympus_Mons"):
        first_instant_at(date(2026, 1, 1), time(9), "Mars/Olympus_Mons")
    with pytest.raises(ValueError, match="naive"):
        first_instant_at(date(2026, 1, 1), time(9, tzinfo=UTC), NY)
    # 9999-12-31 23:59 EST would be an instant in year 10000; 0001-01-01 00:00 in Tokyo
    # (local mean time, +9:18:59) one in year 0.
    with pytest.raises(ValueError, match="range"):
        first_instant_at(date(9999, 12, 31), time(23, 59), NY)
    with pytest.raises(ValueError, match="range"):
        first_instant_at(date(1, 1, 1), time(0), "Asia/Tokyo")


# --- "HH:MM": today or tomorrow ------------------------------------------------------------

TIME_OF_DAY = [
    # 12:00Z = 08:00 EDT on 06-15. 09:00 today = 13:00Z, ahead.
    pytest.param(NY, utc(2026, 6, 15, 12), "09:00", utc(2026, 6, 15, 13), id="today"),
    # 07:00 today = 11:00Z, behind: tomorrow 07:00 EDT = 06-16 11:00Z.
    pytest.param(NY, utc(2026, 6, 15, 12), "07:00", utc(2026, 6, 16, 11), id="tomorrow"),
    # 13:00Z = 09:00 EDT exactly: today's 09:00 is not after now, so tomorrow's.
    pytest.param(NY, utc(2026, 6, 15, 13), "09:00", utc(2026, 6, 16, 13), id="exactly-now"),
    pytest.param(
        NY,
        utc(2026, 6, 15, 13) - timedelta(microseconds=1),
        "09:00",
        utc(2026, 6, 15, 13),
        id="a-microsecond-before",
    ),
    # 06-15 02:00Z is still 06-14 22:00 EDT: today is the 14th. 23:00 = 06-15 03:00Z.
    pytest.param(NY, utc(2026, 6, 15, 2), "23:00", utc(2026, 6, 15, 3), id="local-date-behind"),
    # ... and 21:00 on the 14th is behind: 06-15 21:00 EDT = 06-16 01:00Z.
    pytest.param(NY, utc(2026, 6, 15, 2), "21:00", utc(2026, 6, 16, 1), id="local-date-behind-2"),
    # 06-15 20:00Z is already 06-16 08:00 NZST (+12): today is the 16th. 09:00 = 06-15 21:00Z.
    pytest.param(
        AUCKLAND, utc(2026, 6, 15, 20), "09:00", utc(2026, 6, 15, 21), id="local-date-ahead"
    ),
    # 07:00 on the 16th (06-15 19:00Z) is behind: 06-17 07:00 NZST = 06-16 19:00Z.
    pytest.param(
        AUCKLAND, utc(2026, 6, 15, 20), "07:00", utc(2026, 6, 16, 19), id="local-date-ahead-2"
    ),
    # 2026-03-08 06:00Z = 01:00 EST; 02:30 today is in the gap: the transition, 07:00Z.
    pytest.param(NY, utc(2026, 3, 8, 6), "02:30", utc(2026, 3, 8, 7), id="gap-today"),
    # 2026-03-07 12:00Z = 07:00 EST; 06:00 today is behind, tomorrow's 06:00 is EDT: 10:00Z.
    pytest.param(NY, utc(2026, 3, 7, 12), "06:00", utc(2026, 3, 8, 10), id="tomorrow-is-dst"),
    # 2026-11-01 05:10Z = 01:10 EDT; 01:30 first occurs at 01:30 EDT = 05:30Z.
    pytest.param(NY, utc(2026, 11, 1, 5, 10), "01:30", utc(2026, 11, 1, 5, 30), id="fold-first"),
    # 05:40Z = 01:40 EDT: today's 01:30 resolves to its first occurrence, 05:30Z, behind now,
    # so tomorrow's (01:30 EST = 11-02 06:30Z), not the second 01:30 today.
    pytest.param(NY, utc(2026, 11, 1, 5, 40), "01:30", utc(2026, 11, 2, 6, 30), id="fold-passed"),
    # 06:10Z = 01:10 EST, the second pass: the same, tomorrow's.
    pytest.param(
        NY, utc(2026, 11, 1, 6, 10), "01:30", utc(2026, 11, 2, 6, 30), id="fold-second-pass"
    ),
    # Apia 2011-12-30 06:00Z = 12-29 20:00 -10; 09:00 today is behind, tomorrow (the 30th)
    # was skipped: the transition, 12-30 10:00Z.
    pytest.param(APIA, utc(2011, 12, 30, 6), "09:00", utc(2011, 12, 30, 10), id="tomorrow-skipped"),
    # America/St_Johns fell back at 00:01 NDT (-2:30) on 2006-10-29 (02:31Z) to 10-28 23:01
    # NST (-3:30), so 10-29 00:00 was shown for one minute before the fall back. At 03:00Z
    # (10-28 23:30 NST) today's 00:00 is long past and tomorrow's first 00:00 (02:30Z) is
    # behind now too: the next one, 00:00 NST = 03:30Z.
    pytest.param(
        ST_JOHNS, utc(2006, 10, 29, 3), "00:00", utc(2006, 10, 29, 3, 30), id="st-johns-midnight"
    ),
    # Antarctica/Casey went from +11 to +8 at 2010-03-05 02:00 local (03-04 15:00Z), back to
    # 03-04 23:00. At 15:30Z (03-04 23:30, +8) tomorrow's 01:00 was shown at 14:00Z (+11);
    # the next is 01:00 +8 = 03-04 17:00Z.
    pytest.param(CASEY, utc(2010, 3, 4, 15, 30), "01:00", utc(2010, 3, 4, 17), id="casey"),
]


@pytest.mark.parametrize(("zone", "now", "text", "expected"), TIME_OF_DAY)
def test_time_of_day(zone: str, now: datetime, text: str, expected: datetime) -> None:
    local = parse_send_at_local(text)
    instant = resolve_send_at_local(now, zone, local)
    assert instant == expected
    assert instant > now
    assert instant.tzinfo is UTC
    # The same instant given in any zone is the same question.
    assert resolve_send_at_local(now.astimezone(load_zone("Asia/Kolkata")), zone, local) == expected


def test_scheduled_local_datetime_is_the_wall_time_asked_for_on_the_date_chosen() -> None:
    # 12:00Z = 08:00 EDT on 06-15: 07:00 goes tomorrow, 09:00 today.
    now = utc(2026, 6, 15, 12)
    assert scheduled_local_datetime(now, NY, parse_send_at_local("07:00")) == wall(2026, 6, 16, 7)
    assert scheduled_local_datetime(now, NY, parse_send_at_local("09:00")) == wall(2026, 6, 15, 9)
    # In a gap, the time asked for, not what the clock reads then (03:00).
    assert scheduled_local_datetime(utc(2026, 3, 8, 6), NY, parse_send_at_local("02:30")) == wall(
        2026, 3, 8, 2, 30
    )
    # On a skipped date, that date.
    assert scheduled_local_datetime(
        utc(2011, 12, 30, 6), APIA, parse_send_at_local("09:00")
    ) == wall(2011, 12, 30, 9)


def test_resolve_rejects_naive_now_and_unknown_zone() -> None:
    local = parse_send_at_local("09:00")
    with pytest.raises(ValueError, match="aware"):
        resolve_send_at_local(datetime(2026, 1, 1), NY, local)  # noqa: DTZ001
    with pytest.raises(ValueError, match="Mars/Olympus_Mons"):
        resolve_send_at_local(utc(2026, 1, 1), "Mars/Olympus_Mons", local)


# --- a user who moved zone before the send -------------------------------------------------


@pytest.mark.parametrize(
    ("local", "zone", "expected"),
    [
        # Accepted as 09:00 in New York (13:00Z); the user is now in London: 09:00 BST = 08:00Z.
        (wall(2026, 6, 15, 9), LONDON, utc(2026, 6, 15, 8)),
        # ... or in Auckland: 09:00 NZST (+12) = 06-14 21:00Z, earlier than in New York.
        (wall(2026, 6, 15, 9), AUCKLAND, utc(2026, 6, 14, 21)),
        # The same rules in the new zone: 01:30 on London's spring-forward day is in the gap,
        # so the transition, 01:00Z; on its fall-back day the first 01:30, BST, 00:30Z.
        (wall(2026, 3, 29, 1, 30), LONDON, utc(2026, 3, 29, 1)),
        (wall(2026, 10, 25, 1, 30), LONDON, utc(2026, 10, 25, 0, 30)),
    ],
)
def test_reresolve_send_at_local(local: datetime, zone: str, expected: datetime) -> None:
    assert reresolve_send_at_local(local, zone) == expected


def test_reresolve_round_trips_what_acceptance_kept() -> None:
    # Accepted at 06-15 12:00Z (08:00 EDT) for "07:00": kept as 06-16 07:00. Moving to London
    # makes it 07:00 BST = 06-16 06:00Z.
    now = utc(2026, 6, 15, 12)
    local = parse_send_at_local("07:00")
    kept = scheduled_local_datetime(now, NY, local)
    assert reresolve_send_at_local(kept, NY) == resolve_send_at_local(now, NY, local)
    assert reresolve_send_at_local(kept, LONDON) == utc(2026, 6, 16, 6)


def test_reresolve_rejects_an_aware_wall_time() -> None:
    with pytest.raises(ValueError, match="naive"):
        reresolve_send_at_local(utc(2026, 6, 15, 9), LONDON)


def test_schedule_local_keeps_the_wall_time_the_zone_and_the_instant() -> None:
    # 12:00Z = 08:00 EDT on 06-15: "07:00" is tomorrow's, "09:00" today's.
    now = utc(2026, 6, 15, 12)
    ny = load_zone(NY)
    assert schedule_local(now, ny, parse_send_at_local("07:00")) == LocalSchedule(
        wall(2026, 6, 16, 7), NY, utc(2026, 6, 16, 11)
    )
    assert schedule_local(now, ny, parse_send_at_local("09:00")) == LocalSchedule(
        wall(2026, 6, 15, 9), NY, utc(2026, 6, 15, 13)
    )
    # A dated wall time already past is resolved all the same; check_schedule refuses it.
    past = schedule_local(now, ny, parse_send_at_local("2026-06-15T07:00"))
    assert past.instant == utc(2026, 6, 15, 11)
    with pytest.raises(ValueError, match="not after now"):
        check_schedule(now, past.instant, 365)


def test_schedule_local_in_a_gap_and_a_fold() -> None:
    ny = load_zone(NY)
    # 02:30 on 2026-03-08 does not exist in New York: the clock jumps 02:00 EST -> 03:00 EDT at
    # 07:00Z, the first valid instant after it.
    gap = schedule_local(utc(2026, 3, 7, 12), ny, parse_send_at_local("2026-03-08T02:30"))
    assert (gap.wall, gap.instant) == (wall(2026, 3, 8, 2, 30), utc(2026, 3, 8, 7))
    # 01:30 on 2026-11-01 happens twice (EDT 05:30Z, then EST 06:30Z): the first.
    fold = schedule_local(utc(2026, 10, 31, 12), ny, parse_send_at_local("2026-11-01T01:30"))
    assert (fold.wall, fold.instant) == (wall(2026, 11, 1, 1, 30), utc(2026, 11, 1, 5, 30))


def test_follow_user_keeps_the_schedule_in_the_same_zone_and_moves_it_otherwise() -> None:
    kept = LocalSchedule(wall(2026, 6, 16, 9), NY, utc(2026, 6, 16, 13))
    assert follow_user(kept, load_zone(NY)) is kept
    # 09:00 in London (BST) is 08:00Z: five hours earlier than in New York.
    assert follow_user(kept, load_zone(LONDON)) == LocalSchedule(
        wall(2026, 6, 16, 9), LONDON, utc(2026, 6, 16, 8)
    )
    # In Auckland (NZST, +12) it is the evening before in UTC.
    assert follow_user(kept, load_zone(AUCKLAND)).instant == utc(2026, 6, 15, 21)


def test_an_hh_mm_schedule_keeps_its_later_occurrence_while_the_user_stays() -> None:
    """St John's fell back across midnight until 2010: on 2009-11-01 at 00:01 NDT (02:31Z) its
    clock went back to 23:01 NST on 10-31, so 00:00 on 11-01 was shown twice, at 02:30Z and at
    03:30Z. An "HH:MM" send for 00:00 accepted between the two takes the second, and must keep
    it at release, where reading the wall time afresh would give the first, already past."""
    st_johns = load_zone(ST_JOHNS)
    now = utc(2009, 11, 1, 2, 45)  # 23:15 NST on 10-31, the second time through that hour
    accepted = schedule_local(now, st_johns, parse_send_at_local("00:00"))
    assert (accepted.wall, accepted.instant) == (wall(2009, 11, 1), utc(2009, 11, 1, 3, 30))
    assert follow_user(accepted, st_johns) is accepted
    assert reresolve_send_at_local(accepted.wall, st_johns) == utc(2009, 11, 1, 2, 30)


def test_check_schedule_bounds() -> None:
    now = utc(2026, 6, 15, 12)
    check_schedule(now, now + timedelta(minutes=1), 365)
    check_schedule(now, now + timedelta(days=365), 365)
    with pytest.raises(ValueError, match="not after now"):
        check_schedule(now, now, 365)
    with pytest.raises(ValueError, match="more than 365 days"):
        check_schedule(now, now + timedelta(days=365, microseconds=1), 365)
    with pytest.raises(ValueError, match="more than 7 days"):
        check_schedule(now, now + timedelta(days=8), 7)


def test_a_local_schedule_holds_a_naive_wall_time() -> None:
    with pytest.raises(ValueError, match="naive"):
        LocalSchedule(utc(2026, 6, 16, 9), NY, utc(2026, 6, 16, 13))


# --- properties against the brute force ----------------------------------------------------

ZONES = st.sampled_from(sorted(AVAILABLE_TIMEZONES))
# From 1990: see `brute_force_first_instant` on why the minute grid is exact from then on.
LOCAL_DATES = st.dates(min_value=date(1990, 1, 1), max_value=date(2037, 12, 31))
MINUTE_TIMES = st.builds(time, st.integers(0, 23), st.integers(0, 59))
INSTANTS = st.datetimes(
    min_value=datetime(1990, 1, 2),  # noqa: DTZ001 - bounds are naive by hypothesis's API
    max_value=datetime(2037, 12, 30, 23, 59, 59),  # noqa: DTZ001
    timezones=st.just(UTC),
)
# Minutes either side of the wall time at which a transition starts or ends.
NEAR_MINUTES = st.integers(-90, 90)


def transitions_in_year(zone: ZoneInfo, year: int) -> list[Transition]:
    return offset_transitions(zone, utc(year, 1, 1), utc(year + 1, 1, 1))


def draw_wall_near_a_transition(
    data: st.DataObject, zone: ZoneInfo, year: int
) -> tuple[Transition | None, datetime]:
    """A transition of `zone` in `year` and a whole-minute wall time near it (or anywhere)."""
    transitions = transitions_in_year(zone, year)
    if not transitions:  # a zone without DST that year
        day = data.draw(st.dates(date(year, 1, 1), date(year, 12, 31)))
        return None, datetime.combine(day, data.draw(MINUTE_TIMES))
    transition = data.draw(st.sampled_from(transitions))
    edge = data.draw(st.sampled_from([transition.jump_from, transition.jump_to]))
    return transition, edge + data.draw(NEAR_MINUTES) * ONE_MINUTE


@EXAMPLES
@given(zone=ZONES, day=LOCAL_DATES, wall_time=MINUTE_TIMES)
def test_first_instant_at_is_the_brute_force_answer(
    *, zone: str, day: date, wall_time: time
) -> None:
    expected = brute_force_first_instant(datetime.combine(day, wall_time), load_zone(zone))
    assert first_instant_at(day, wall_time, zone) == expected


@EXAMPLES
@given(zone=ZONES, year=st.integers(1990, 2037), data=st.data())
def test_first_instant_at_near_transitions_is_the_brute_force_answer(
    *, zone: str, year: int, data: st.DataObject
) -> None:
    # Uniform dates almost never land on a transition day; these do.
    _, local = draw_wall_near_a_transition(data, load_zone(zone), year)
    expected = brute_force_first_instant(local, load_zone(zone))
    assert first_instant_at(local.date(), local.time(), zone) == expected


def check_time_of_day(now: datetime, zone: str, wall_time: time) -> None:
    local = LocalSendTime(wall_time, None)
    instant = resolve_send_at_local(now, zone, local)
    assert instant > now
    assert instant - now <= timedelta(days=2)
    assert instant == brute_force_time_of_day(now, wall_time, load_zone(zone))
    # It is today's resolution when that is ahead, else tomorrow's.
    chosen = scheduled_local_datetime(now, zone, local)
    today = reading(now, load_zone(zone)).date()
    assert chosen.time() == wall_time
    today_instant = first_instant_at(today, wall_time, zone)
    if today_instant > now:
        assert (chosen.date(), instant) == (today, today_instant)
    else:
        assert chosen.date() == today + timedelta(days=1)


@settings(max_examples=max(10, EXAMPLES.max_examples // 2), deadline=None)
@given(zone=ZONES, now=INSTANTS, wall_time=MINUTE_TIMES)
def test_time_of_day_is_the_next_today_or_tomorrow(
    *, zone: str, now: datetime, wall_time: time
) -> None:
    check_time_of_day(now, zone, wall_time)


@settings(max_examples=max(10, EXAMPLES.max_examples // 2), deadline=None)
@given(zone=ZONES, year=st.integers(1990, 2037), data=st.data())
def test_time_of_day_near_transitions_is_the_next_today_or_tomorrow(
    *, zone: str, year: int, data: st.DataObject
) -> None:
    transition, local = draw_wall_near_a_transition(data, load_zone(zone), year)
    if transition is None:
        now = data.draw(INSTANTS)
    else:
        # Before, in and after the gap or fold, at any second.
        now = transition.at + timedelta(seconds=data.draw(st.integers(-3 * 3600, 3 * 3600)))
    check_time_of_day(now, zone, local.time())


# --- every transition from 1990 to 2037 ----------------------------------------------------


def transitions_1990_to_2037(zone: ZoneInfo) -> list[Transition]:
    found = offset_transitions(zone, utc(1990, 1, 1), utc(2038, 1, 1))
    for earlier, later in pairwise(found):
        # What `offset_transitions` and the brute force's `scan_from` rely on.
        assert later.at - earlier.at > SEARCH, (earlier, later)
    for transition in found:
        assert transition.at.second == 0, transition  # the brute force's minute grid
    return found


@pytest.mark.parametrize(
    ("zone", "count"),
    [
        # Two changes a year, every year, in these three and Lord Howe.
        (NY, 96),
        (LONDON, 96),
        ("Europe/Dublin", 96),
        (LORD_HOWE, 96),
        ("America/Santiago", None),
        ("Asia/Tehran", None),
        (APIA, None),
    ],
)
def test_every_transition_against_the_brute_force(zone: str, count: int | None) -> None:
    loaded = load_zone(zone)
    transitions = transitions_1990_to_2037(loaded)
    if count is not None:
        assert len(transitions) == count
    assert transitions
    for transition in transitions:
        # The clock runs steadily from well before the transition (none within SEARCH before
        # it), and none of these walls reads earlier than `jump_to` minus a minute.
        scan_from = transition.at - abs(transition.after - transition.before) - timedelta(hours=2)
        for local in walls_around(transition):
            expected = brute_force_first_instant(local, loaded, scan_from)
            assert first_instant_at(local.date(), local.time(), zone) == expected, (
                transition,
                local,
            )


@pytest.mark.parametrize(
    ("zone", "count"),
    [
        # Fell back at 00:01 to 23:01 the day before, every autumn until 2010.
        (ST_JOHNS, 21),
        ("America/Goose_Bay", 21),
        ("America/Moncton", 14),
        # +11 to +8 at 02:00 on 2010-03-05.
        (CASEY, 1),
    ],
)
def test_every_fall_back_across_midnight_still_schedules_ahead(zone: str, count: int) -> None:
    # Where the clock falls back from after midnight to the day before, tomorrow's early times
    # are shown once before `now` and again after it; an "HH:MM" send takes the one ahead.
    loaded = load_zone(zone)
    crossings = [
        transition
        for transition in transitions_1990_to_2037(loaded)
        if transition.jump_from.date() > transition.jump_to.date()
        and transition.jump_from.time() != time(0)
    ]
    assert len(crossings) == count
    for transition in crossings:
        repeated = transition.before - transition.after
        midnight = datetime.combine(transition.jump_from.date(), time(0))
        walls = {midnight, midnight + (transition.jump_from - midnight) // 2, transition.jump_from}
        for now in (transition.at, transition.at + repeated // 2, transition.at + repeated):
            for local in sorted(walls):
                check_time_of_day(now, zone, local.time().replace(second=0))
