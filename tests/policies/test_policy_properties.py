"""Properties of `decide` over every IANA zone and instants from 1990 to 2037 (hypothesis)."""

import os
from datetime import UTC, datetime, time, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from policies import (
    Defer,
    Drop,
    DropReason,
    FrequencyCap,
    PolicySettings,
    QuietWindow,
    Send,
    Tier,
    UserFacts,
    decide,
    is_quiet,
    next_allowed_instant,
    next_quiet_instant,
)
from policies.timezones import AVAILABLE_TIMEZONES, load_zone

# Moderate counts keep the whole policy suite well under a minute on two cores; raise them for
# a deeper search with POLICY_HYPOTHESIS_EXAMPLES=5000. No deadline: the first decision in a
# zone loads it from disk, and timing is not what is being tested.
EXAMPLES = settings(
    max_examples=int(os.environ.get("POLICY_HYPOTHESIS_EXAMPLES", "150")), deadline=None
)

ZONES = st.sampled_from(sorted(AVAILABLE_TIMEZONES))
INSTANTS = st.datetimes(
    min_value=datetime(1990, 1, 1),  # noqa: DTZ001 - bounds are naive by hypothesis's API
    max_value=datetime(2037, 12, 31, 23, 59, 59),  # noqa: DTZ001
    timezones=st.just(UTC),
)
# Round times most of the time (what users set), arbitrary ones to probe the edges.
WALL_TIMES = st.one_of(
    st.builds(time, st.integers(0, 23), st.sampled_from([0, 15, 30, 45])),
    st.times(),
)
WINDOWS = st.builds(QuietWindow, WALL_TIMES, WALL_TIMES)
SPREADS = st.integers(0, 120)
QUIET_TIERS = st.sampled_from([Tier.BEHAVIORAL, Tier.PROMOTIONAL])
FRACTIONS = st.floats(0, 1, exclude_max=True)


def reachable_user(user_id: str, zone: str, window: QuietWindow) -> UserFacts:
    """Opted in to everything, with a device and no recent notifications."""
    return UserFacts(
        user_id=user_id,
        timezone=zone,
        behavioral_opt_in=True,
        promotional_opt_in=True,
        quiet_hours=window,
        active_devices=1,
    )


def offset_at(instant: datetime, zone: str) -> timedelta:
    offset = instant.astimezone(load_zone(zone)).utcoffset()
    assert offset is not None
    return offset


def local_quiet(instant: datetime, zone: str, window: QuietWindow) -> bool:
    return is_quiet(instant.astimezone(load_zone(zone)).time(), window.start, window.end)


@EXAMPLES
@given(
    zone=ZONES,
    now=INSTANTS,
    window=WINDOWS,
    tier=QUIET_TIERS,
    spread=SPREADS,
    user_id=st.text(max_size=12),
    fraction=FRACTIONS,
)
def test_never_sends_while_quiet_and_defers_to_an_allowed_instant(
    *,
    zone: str,
    now: datetime,
    window: QuietWindow,
    tier: Tier,
    spread: int,
    user_id: str,
    fraction: float,
) -> None:
    facts = reachable_user(user_id, zone, window)
    policy = PolicySettings(release_spread_minutes=spread)
    decision = decide(now, tier, now + timedelta(days=400), facts, policy)

    if isinstance(decision, Send):
        assert not local_quiet(now, zone, window)
        return
    assert isinstance(decision, Defer)
    assert decision.reason == "quiet_hours"
    assert local_quiet(now, zone, window)
    until = decision.until
    assert until > now
    assert not local_quiet(until, zone, window)
    # Within a day of wall-clock time, plus the spread, plus the offset change on the way.
    shift = abs(offset_at(until, zone) - offset_at(now, zone))
    assert until - now <= timedelta(hours=24) + timedelta(minutes=spread) + shift

    # The release is in the first allowed stretch: after the next allowed instant, before
    # the window comes round again; and everything between now and that instant is quiet.
    allowed = next_allowed_instant(now, zone, window.start, window.end)
    quiet_again = next_quiet_instant(allowed, zone, window.start, window.end)
    assert quiet_again is not None
    assert allowed <= until < quiet_again
    assert local_quiet(allowed - timedelta(microseconds=1), zone, window)
    # (timedelta * float rounds to the microsecond, hence the min)
    probe = min(now + (allowed - now) * fraction, allowed - timedelta(microseconds=1))
    assert local_quiet(probe, zone, window)

    # At release, the same facts send.
    assert decide(until, tier, now + timedelta(days=400), facts, policy) == Send()


@EXAMPLES
@given(
    zone=ZONES,
    now=INSTANTS,
    window=WINDOWS,
    behavioral=st.sampled_from([None, True, False]),
    promotional=st.sampled_from([None, True, False]),
    count=st.integers(0, 100),
)
def test_transactional_is_never_deferred_dropped_for_consent_or_capped(
    *,
    zone: str,
    now: datetime,
    window: QuietWindow,
    behavioral: bool | None,
    promotional: bool | None,
    count: int,
) -> None:
    facts = UserFacts(
        user_id="u",
        timezone=zone,
        behavioral_opt_in=behavioral,
        promotional_opt_in=promotional,
        quiet_hours=window,
        active_devices=1,
        recent_counts={Tier.TRANSACTIONAL: count},
    )
    assert (
        decide(now, Tier.TRANSACTIONAL, now + timedelta(hours=1), facts, PolicySettings()) == Send()
    )


@EXAMPLES
@given(
    zone=ZONES,
    now=INSTANTS,
    window=WINDOWS,
    tier=st.sampled_from(list(Tier)),
    spread=SPREADS,
    user_id=st.text(max_size=12),
)
def test_decision_is_deterministic(
    *, zone: str, now: datetime, window: QuietWindow, tier: Tier, spread: int, user_id: str
) -> None:
    facts = reachable_user(user_id, zone, window)
    policy = PolicySettings(release_spread_minutes=spread)
    expires = now + timedelta(hours=30)
    first = decide(now, tier, expires, facts, policy)
    assert decide(now, tier, expires, facts, policy) == first
    # The same instant written in the user's zone, and a cold memo, give the same answer.
    cold = PolicySettings(release_spread_minutes=spread)
    assert decide(now.astimezone(load_zone(zone)), tier, expires, facts, cold) == first


@EXAMPLES
@given(
    zone=ZONES,
    now=INSTANTS,
    window=WINDOWS,
    tier=st.sampled_from(list(Tier)),
    behavioral=st.sampled_from([None, True, False]),
    promotional=st.sampled_from([None, True, False]),
    behavioral_default=st.booleans(),
    devices=st.integers(0, 3),
    count=st.integers(0, 4),
    cap=st.integers(1, 3),
)
def test_consent_devices_and_caps_hold_for_every_tier(
    *,
    zone: str,
    now: datetime,
    window: QuietWindow,
    tier: Tier,
    behavioral: bool | None,
    promotional: bool | None,
    behavioral_default: bool,
    devices: int,
    count: int,
    cap: int,
) -> None:
    facts = UserFacts(
        user_id="u",
        timezone=zone,
        behavioral_opt_in=behavioral,
        promotional_opt_in=promotional,
        quiet_hours=window,
        active_devices=devices,
        recent_counts={tier: count},
    )
    policy = PolicySettings(
        behavioral_default_opt_in=behavioral_default,
        frequency_caps={
            Tier.BEHAVIORAL: FrequencyCap(cap, 86_400),
            Tier.PROMOTIONAL: FrequencyCap(cap, 86_400),
        },
    )
    decision = decide(now, tier, now + timedelta(days=2), facts, policy)

    consented = {
        Tier.TRANSACTIONAL: True,
        Tier.BEHAVIORAL: behavioral if behavioral is not None else behavioral_default,
        Tier.PROMOTIONAL: promotional is True,
    }[tier]
    if not consented:
        expected_reason = (
            DropReason.OPTED_OUT if tier == Tier.BEHAVIORAL else DropReason.NOT_OPTED_IN
        )
        assert decision == Drop(expected_reason)
    elif devices == 0:
        assert decision == Drop(DropReason.NO_ACTIVE_DEVICES)
    elif tier == Tier.TRANSACTIONAL:
        assert decision == Send()
    elif local_quiet(now, zone, window):
        # Deferred, never capped while deferred (or it would expire first).
        assert isinstance(decision, Defer) or decision == Drop(
            DropReason.EXPIRES_DURING_QUIET_HOURS
        )
    elif count >= cap:
        assert decision == Drop(DropReason.FREQUENCY_CAPPED)
    else:
        assert decision == Send()


@settings(max_examples=max(10, EXAMPLES.max_examples // 5), deadline=None)
@given(zone=ZONES, now=INSTANTS, window=WINDOWS)
def test_next_allowed_instant_is_the_earliest_by_brute_force(
    *, zone: str, now: datetime, window: QuietWindow
) -> None:
    # Walk minute by minute from now: every step before the answer is quiet, the answer is not.
    allowed = next_allowed_instant(now, zone, window.start, window.end)
    assert allowed >= now
    assert not local_quiet(allowed, zone, window)
    step = now
    while step < allowed:
        assert local_quiet(step, zone, window), step
        step += timedelta(minutes=1)
