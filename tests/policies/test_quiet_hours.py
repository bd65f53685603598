"""Quiet hours and the next allowed instant at real tz transitions, computed by hand.

Each row's comment is the hand computation: `now` read as local time in the zone, where the
window ends, and that local time converted back to UTC with the offset in force then. Offsets
and transition instants are from the IANA tz database.
"""

from datetime import UTC, datetime, time, timedelta

import pytest

from policies import is_quiet, next_allowed_instant, next_quiet_instant
from policies.timezones import load_zone


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize(
    ("local", "start", "end", "quiet"),
    [
        # wraps midnight, 22:00-08:00
        (time(21, 59, 59), time(22), time(8), False),
        (time(22), time(22), time(8), True),
        (time(0), time(22), time(8), True),
        (time(7, 59, 59, 999_999), time(22), time(8), True),
        (time(8), time(22), time(8), False),
        (time(12), time(22), time(8), False),
        # does not wrap, 13:00-15:30
        (time(12, 59), time(13), time(15, 30), False),
        (time(13), time(13), time(15, 30), True),
        (time(15, 29), time(13), time(15, 30), True),
        (time(15, 30), time(13), time(15, 30), False),
        (time(23), time(13), time(15, 30), False),
        # empty: start == end is never quiet
        (time(9), time(9), time(9), False),
        (time(0), time(0), time(0), False),
        (time(21), time(9), time(9), False),
        # from midnight
        (time(0), time(0), time(6), True),
        (time(6), time(0), time(6), False),
    ],
)
def test_is_quiet(local: time, start: time, end: time, quiet: bool) -> None:
    assert is_quiet(local, start, end) is quiet


NY = "America/New_York"
LONDON = "Europe/London"
LORD_HOWE = "Australia/Lord_Howe"
CHATHAM = "Pacific/Chatham"
SAO_PAULO = "America/Sao_Paulo"
APIA = "Pacific/Apia"
DUBLIN = "Europe/Dublin"
KATHMANDU = "Asia/Kathmandu"

NEXT_ALLOWED = [
    # --- America/New_York, spring forward 2024-03-10: 02:00 EST(-5) -> 03:00 EDT(-4) at 07:00Z.
    # 06:30Z = 01:30 EST, quiet; 08:00 that day is EDT: 08:00 + 4h = 12:00Z.
    pytest.param(
        NY, utc(2024, 3, 10, 6, 30), time(22), time(8), utc(2024, 3, 10, 12), id="ny-spring-default"
    ),
    # 06:00Z = 01:00 EST; end 02:30 does not exist that day -> first valid instant after it is
    # the transition, 03:00 EDT = 07:00Z.
    pytest.param(
        NY,
        utc(2024, 3, 10, 6),
        time(22),
        time(2, 30),
        utc(2024, 3, 10, 7),
        id="ny-spring-end-in-gap",
    ),
    # end 02:00 is the first missing minute: same answer, 03:00 EDT = 07:00Z.
    pytest.param(
        NY,
        utc(2024, 3, 10, 6, 30),
        time(1),
        time(2),
        utc(2024, 3, 10, 7),
        id="ny-spring-end-at-gap-start",
    ),
    # end 03:00 is the first valid minute: 03:00 EDT = 07:00Z, same instant, reached normally.
    pytest.param(
        NY,
        utc(2024, 3, 10, 6, 30),
        time(1),
        time(3),
        utc(2024, 3, 10, 7),
        id="ny-spring-end-at-gap-end",
    ),
    # --- America/New_York, fall back 2024-11-03: 02:00 EDT(-4) -> 01:00 EST(-5) at 06:00Z.
    # 04:00Z = 00:00 EDT; 08:00 is EST: 08:00 + 5h = 13:00Z.
    pytest.param(
        NY, utc(2024, 11, 3, 4), time(22), time(8), utc(2024, 11, 3, 13), id="ny-fall-default"
    ),
    # 03:00Z = 23:00 EDT (Nov 2); end 01:30 occurs twice; first occurrence ahead of now is
    # 01:30 EDT = 05:30Z.
    pytest.param(
        NY,
        utc(2024, 11, 3, 3),
        time(22),
        time(1, 30),
        utc(2024, 11, 3, 5, 30),
        id="ny-fall-end-repeated-first",
    ),
    # 06:15Z = 01:15 EST, second pass through the repeated hour, quiet again; the first 01:30
    # (05:30Z) is behind now, so the second: 01:30 EST = 06:30Z.
    pytest.param(
        NY,
        utc(2024, 11, 3, 6, 15),
        time(22),
        time(1, 30),
        utc(2024, 11, 3, 6, 30),
        id="ny-fall-end-repeated-second",
    ),
    # 05:45Z = 01:45 EDT, not quiet (after 01:30): now itself.
    pytest.param(
        NY,
        utc(2024, 11, 3, 5, 45),
        time(22),
        time(1, 30),
        utc(2024, 11, 3, 5, 45),
        id="ny-fall-between-occurrences",
    ),
    # Window 01:30-06:00, start in the repeated hour. 05:45Z = 01:45 EDT, quiet; at 06:00Z the
    # clock falls back to 01:00 EST, before the start, so not quiet: 06:00Z.
    pytest.param(
        NY,
        utc(2024, 11, 3, 5, 45),
        time(1, 30),
        time(6),
        utc(2024, 11, 3, 6),
        id="ny-fall-start-repeated",
    ),
    # --- Europe/London, spring forward 2024-03-31: 01:00 GMT(+0) -> 02:00 BST(+1) at 01:00Z.
    # 00:30Z = 00:30 GMT; 08:00 BST - 1h = 07:00Z.
    pytest.param(
        LONDON,
        utc(2024, 3, 31, 0, 30),
        time(22),
        time(8),
        utc(2024, 3, 31, 7),
        id="london-spring-default",
    ),
    # 00:15Z = 00:15 GMT; end 01:30 does not exist -> transition, 02:00 BST = 01:00Z.
    pytest.param(
        LONDON,
        utc(2024, 3, 31, 0, 15),
        time(23),
        time(1, 30),
        utc(2024, 3, 31, 1),
        id="london-spring-end-in-gap",
    ),
    # --- Europe/London, fall back 2024-10-27: 02:00 BST(+1) -> 01:00 GMT(+0) at 01:00Z.
    # 2024-10-26 23:00Z = 00:00 BST Oct 27; 08:00 GMT = 08:00Z.
    pytest.param(
        LONDON,
        utc(2024, 10, 26, 23),
        time(22),
        time(8),
        utc(2024, 10, 27, 8),
        id="london-fall-default",
    ),
    # 00:10Z = 01:10 BST, quiet (00:00-01:30); first 01:30 is BST: 01:30 - 1h = 00:30Z.
    pytest.param(
        LONDON,
        utc(2024, 10, 27, 0, 10),
        time(0),
        time(1, 30),
        utc(2024, 10, 27, 0, 30),
        id="london-fall-end-repeated-first",
    ),
    # 01:10Z = 01:10 GMT, the second pass; 01:30 GMT = 01:30Z.
    pytest.param(
        LONDON,
        utc(2024, 10, 27, 1, 10),
        time(0),
        time(1, 30),
        utc(2024, 10, 27, 1, 30),
        id="london-fall-end-repeated-second",
    ),
    # --- Australia/Lord_Howe: a 30-minute DST, +10:30 <-> +11:00.
    # Spring 2024-10-06: 02:00 +10:30 -> 02:30 +11 at 2024-10-05 15:30Z.
    # 14:00Z = 00:30 +10:30; 08:00 +11 = 21:00Z (Oct 5).
    pytest.param(
        LORD_HOWE,
        utc(2024, 10, 5, 14),
        time(22),
        time(8),
        utc(2024, 10, 5, 21),
        id="lordhowe-spring-default",
    ),
    # 15:00Z = 01:30 +10:30; end 02:15 is in the 30-minute gap -> transition, 02:30 +11 = 15:30Z.
    pytest.param(
        LORD_HOWE,
        utc(2024, 10, 5, 15),
        time(22),
        time(2, 15),
        utc(2024, 10, 5, 15, 30),
        id="lordhowe-spring-end-in-gap",
    ),
    # Autumn 2024-04-07: 02:00 +11 -> 01:30 +10:30 at 2024-04-06 15:00Z; 01:30-02:00 repeats.
    # 14:00Z = 01:00 +11; first 01:45 is +11: 01:45 - 11h = 14:45Z.
    pytest.param(
        LORD_HOWE,
        utc(2024, 4, 6, 14),
        time(22),
        time(1, 45),
        utc(2024, 4, 6, 14, 45),
        id="lordhowe-fall-end-repeated-first",
    ),
    # 15:10Z = 01:40 +10:30 (second pass); 01:45 +10:30 = 15:15Z.
    pytest.param(
        LORD_HOWE,
        utc(2024, 4, 6, 15, 10),
        time(22),
        time(1, 45),
        utc(2024, 4, 6, 15, 15),
        id="lordhowe-fall-end-repeated-second",
    ),
    # --- Asia/Kathmandu, +05:45 all year.
    # 2024-06-01 20:00Z = 01:45 Jun 2; 08:00 - 5:45 = 02:15Z Jun 2.
    pytest.param(
        KATHMANDU,
        utc(2024, 6, 1, 20),
        time(22),
        time(8),
        utc(2024, 6, 2, 2, 15),
        id="kathmandu-quiet",
    ),
    # 16:14Z = 21:59 local, not quiet yet: now itself.
    pytest.param(
        KATHMANDU,
        utc(2024, 6, 1, 16, 14),
        time(22),
        time(8),
        utc(2024, 6, 1, 16, 14),
        id="kathmandu-just-before",
    ),
    # 16:15Z = 22:00 local, quiet; 08:00 next day = 02:15Z Jun 2.
    pytest.param(
        KATHMANDU,
        utc(2024, 6, 1, 16, 15),
        time(22),
        time(8),
        utc(2024, 6, 2, 2, 15),
        id="kathmandu-at-start",
    ),
    # --- Pacific/Chatham, +12:45 <-> +13:45. Spring 2024-09-29: 02:45 +12:45 -> 03:45 +13:45
    # at 2024-09-28 14:00Z.
    # 12:00Z = 00:45 +12:45 Sep 29; 08:00 +13:45 = 18:15Z Sep 28.
    pytest.param(
        CHATHAM,
        utc(2024, 9, 28, 12),
        time(22),
        time(8),
        utc(2024, 9, 28, 18, 15),
        id="chatham-spring-default",
    ),
    # 13:30Z = 02:15 +12:45; end 03:00 is in the gap -> transition, 03:45 +13:45 = 14:00Z.
    pytest.param(
        CHATHAM,
        utc(2024, 9, 28, 13, 30),
        time(22),
        time(3),
        utc(2024, 9, 28, 14),
        id="chatham-spring-end-in-gap",
    ),
    # --- America/Sao_Paulo. Last DST start 2018-11-04: 00:00 -03 -> 01:00 -02 at 03:00Z.
    # 02:50Z = 23:50 -03 Nov 3; end 00:30 Nov 4 does not exist -> 01:00 -02 = 03:00Z.
    pytest.param(
        SAO_PAULO,
        utc(2018, 11, 4, 2, 50),
        time(23),
        time(0, 30),
        utc(2018, 11, 4, 3),
        id="saopaulo-2018-gap",
    ),
    # DST abolished in 2019: under the old rule 2019-11-03 00:00 would have jumped to 01:00,
    # but now it is -03 all year. 03:15Z = 00:15 -03; 00:30 -03 exists = 03:30Z.
    pytest.param(
        SAO_PAULO,
        utc(2019, 11, 3, 3, 15),
        time(23),
        time(0, 30),
        utc(2019, 11, 3, 3, 30),
        id="saopaulo-2019-no-gap",
    ),
    # 2019-11-03 03:30Z = 00:30 -03, quiet under the default; 08:00 -03 = 11:00Z.
    pytest.param(
        SAO_PAULO,
        utc(2019, 11, 3, 3, 30),
        time(22),
        time(8),
        utc(2019, 11, 3, 11),
        id="saopaulo-2019-default",
    ),
    # --- Pacific/Apia skipped 2011-12-30: 2011-12-29 24:00 -10 -> 2011-12-31 00:00 +14 at
    # 2011-12-30 10:00Z. 09:00Z = 23:00 -10 Dec 29, quiet. 08:00 on Dec 30 does not exist, and
    # the first valid instant after it, 00:00 Dec 31, is still quiet; so 08:00 +14 Dec 31 =
    # 18:00Z Dec 30 (only 9 real hours later).
    pytest.param(
        APIA, utc(2011, 12, 30, 9), time(22), time(8), utc(2011, 12, 30, 18), id="apia-skipped-day"
    ),
    # Window 22:00-23:30 on the 29th: 09:00Z = 23:00 -10; 23:30 -10 = 09:30Z, still on the 29th.
    pytest.param(
        APIA,
        utc(2011, 12, 30, 9),
        time(22),
        time(23, 30),
        utc(2011, 12, 30, 9, 30),
        id="apia-before-skip",
    ),
    # Window 23:00-00:30 crossing the skip: 09:30Z = 23:30 -10 Dec 29; next 00:30 is Dec 31 +14
    # = 10:30Z Dec 30.
    pytest.param(
        APIA,
        utc(2011, 12, 30, 9, 30),
        time(23),
        time(0, 30),
        utc(2011, 12, 30, 10, 30),
        id="apia-across-skip",
    ),
    # --- Europe/Dublin: IST (+1) is standard time and winter GMT a negative DST in tzdata;
    # the instants are London's. Spring 2024-03-31 01:00Z: 01:00 GMT -> 02:00 IST.
    # 00:15Z = 00:15 GMT; 01:30 does not exist -> 02:00 IST = 01:00Z.
    pytest.param(
        DUBLIN,
        utc(2024, 3, 31, 0, 15),
        time(23),
        time(1, 30),
        utc(2024, 3, 31, 1),
        id="dublin-spring-end-in-gap",
    ),
    # Fall 2024-10-27 01:00Z: 02:00 IST -> 01:00 GMT. 00:10Z = 01:10 IST -> 01:30 IST = 00:30Z.
    pytest.param(
        DUBLIN,
        utc(2024, 10, 27, 0, 10),
        time(0),
        time(1, 30),
        utc(2024, 10, 27, 0, 30),
        id="dublin-fall-first",
    ),
    # 01:10Z = 01:10 GMT, second pass -> 01:30 GMT = 01:30Z.
    pytest.param(
        DUBLIN,
        utc(2024, 10, 27, 1, 10),
        time(0),
        time(1, 30),
        utc(2024, 10, 27, 1, 30),
        id="dublin-fall-second",
    ),
    # 2024-01-15 23:00Z = 23:00 GMT, quiet; 08:00 GMT = 08:00Z Jan 16.
    pytest.param(
        DUBLIN, utc(2024, 1, 15, 23), time(22), time(8), utc(2024, 1, 16, 8), id="dublin-winter"
    ),
    # --- Windows without transitions.
    # Not wrapping, UTC: 13:10Z quiet in 13:00-15:30 -> 15:30Z.
    pytest.param(
        "UTC",
        utc(2024, 5, 1, 13, 10),
        time(13),
        time(15, 30),
        utc(2024, 5, 1, 15, 30),
        id="utc-daytime-window",
    ),
    # Empty window: never quiet, now itself.
    pytest.param(
        "UTC", utc(2024, 5, 1, 3), time(8), time(8), utc(2024, 5, 1, 3), id="utc-empty-window"
    ),
    # Wrapping, in the evening part: 23:00Z -> 08:00Z next day.
    pytest.param(
        "UTC",
        utc(2024, 12, 31, 23),
        time(22),
        time(8),
        utc(2025, 1, 1, 8),
        id="utc-across-new-year",
    ),
]


@pytest.mark.parametrize(("zone", "now", "start", "end", "expected"), NEXT_ALLOWED)
def test_next_allowed_instant(
    zone: str, now: datetime, start: time, end: time, expected: datetime
) -> None:
    allowed = next_allowed_instant(now, zone, start, end)
    assert allowed == expected
    assert allowed.utcoffset() == timedelta(0)
    assert not is_quiet(allowed.astimezone(load_zone(zone)).time(), start, end)


def test_next_allowed_instant_accepts_now_in_any_zone() -> None:
    # The same instant as ny-fall-end-repeated-second, given as 01:15 EST (fold=1).
    now = datetime(2024, 11, 3, 1, 15, fold=1, tzinfo=load_zone(NY))
    assert next_allowed_instant(now, NY, time(22), time(1, 30)) == utc(2024, 11, 3, 6, 30)


def test_next_allowed_instant_rejects_naive_now_and_unknown_zone() -> None:
    with pytest.raises(ValueError, match="aware"):
        next_allowed_instant(datetime(2024, 1, 1), "UTC", time(22), time(8))  # noqa: DTZ001
    with pytest.raises(ValueError, match="Mars/Olympus_Mons"):
        next_allowed_instant(utc(2024, 1, 1), "Mars/Olympus_Mons", time(22), time(8))


@pytest.mark.parametrize(
    ("zone", "after", "start", "end", "expected"),
    [
        # 12:00Z in New York (EST) is 07:00, quiet already: itself.
        (NY, utc(2024, 1, 10, 12), time(22), time(8), utc(2024, 1, 10, 12)),
        # 13:00Z = 08:00 EST; quiet again at 22:00 EST = 03:00Z next day.
        (NY, utc(2024, 1, 10, 13), time(22), time(8), utc(2024, 1, 11, 3)),
        # Window 01:30-06:00, 2024-11-03 06:00Z = 01:00 EST after the fall back: quiet at
        # 01:30 EST = 06:30Z.
        (NY, utc(2024, 11, 3, 6), time(1, 30), time(6), utc(2024, 11, 3, 6, 30)),
        # Start 02:30 in the spring gap: 2024-03-10 06:00Z = 01:00 EST; 02:30 does not exist,
        # the clock jumps to 03:00 EDT at 07:00Z, inside the window (02:30-05:00): 07:00Z.
        (NY, utc(2024, 3, 10, 6), time(2, 30), time(5), utc(2024, 3, 10, 7)),
    ],
)
def test_next_quiet_instant(
    zone: str, after: datetime, start: time, end: time, expected: datetime
) -> None:
    assert next_quiet_instant(after, zone, start, end) == expected


def test_next_quiet_instant_of_an_empty_window_is_none() -> None:
    assert next_quiet_instant(utc(2024, 1, 1), "UTC", time(3), time(3)) is None
