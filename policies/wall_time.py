"""Reading a local wall-clock time back as instants in an IANA zone, DST gaps and folds included.

A naive local date and time names one instant on most days, none when the clocks spring
forward over it (a gap) and two when they fall back over it (a fold). These helpers tell the
cases apart with PEP 495's `fold` and find the transition instant by bisection, so they work
for any offset change the tz database records, not only one-hour DST.
"""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

__all__ = ["clock_shows", "instants_of_wall_time", "transition_between"]

_ONE_MICROSECOND = timedelta(microseconds=1)


def instants_of_wall_time(wall: datetime, zone: ZoneInfo) -> Iterator[datetime]:
    """The instants at which the local clock reads `wall`, or, in a gap, the transition.

    `wall` is naive. Yields aware UTC datetimes in order: one on a normal day, both occurrences
    in a fold, and in a gap the instant the clock jumps over `wall`.
    """
    first = wall.replace(tzinfo=zone).astimezone(UTC)
    second = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    if first == second:
        yield first
    elif clock_shows(first, zone, wall):
        yield first  # a repeated wall time: both occurrences
        yield second
    else:
        # PEP 495: in a gap, fold=0 reads it with the offset before the transition and fold=1
        # with the one after, so the transition lies between the two readings.
        yield transition_between(min(first, second), max(first, second), zone)


def clock_shows(instant: datetime, zone: ZoneInfo, wall: datetime) -> bool:
    """Whether the local clock in `zone` reads the naive `wall` at the aware `instant`."""
    # Naive comparison ignores fold, which is what is wanted here.
    return instant.astimezone(zone).replace(tzinfo=None) == wall


def transition_between(low: datetime, high: datetime, zone: ZoneInfo) -> datetime:
    """The first instant in (low, high] whose UTC offset differs from `low`'s (by bisection)."""
    offset_before = low.astimezone(zone).utcoffset()
    below, above = 0, (high - low) // _ONE_MICROSECOND
    while above - below > 1:
        middle = (below + above) // 2
        if (low + middle * _ONE_MICROSECOND).astimezone(zone).utcoffset() == offset_before:
            below = middle
        else:
            above = middle
    return low + above * _ONE_MICROSECOND
