"""The policy through `decide`, in order, plus expiry, caps and time-zone resolution."""

from datetime import UTC, datetime, time, timedelta
from types import MappingProxyType

import pytest

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
    cap_window_start,
    decide,
    release_instant,
    release_offset,
    resolve_expiry,
    resolve_timezone,
)
from policies.timezones import load_zone

SETTINGS = PolicySettings()
# 2024-06-03 12:00Z: 08:00 in New York (EDT), 13:00 in London (BST), 21:00 in Tokyo.
NOON = datetime(2024, 6, 3, 12, tzinfo=UTC)
LATER = NOON + timedelta(days=3)


def user(**facts: object) -> UserFacts:
    defaults: dict[str, object] = {
        "user_id": "u-1",
        "timezone": "Europe/London",
        "promotional_opt_in": True,
        "active_devices": 1,
    }
    return UserFacts(**{**defaults, **facts})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("tier", "facts", "settings", "expected"),
    [
        # Rule 3, consent. Transactional: always, whatever the flags.
        (
            Tier.TRANSACTIONAL,
            {"promotional_opt_in": False, "behavioral_opt_in": False},
            SETTINGS,
            Send(),
        ),
        # Behavioral: opted in by default, dropped on an explicit opt-out.
        (Tier.BEHAVIORAL, {}, SETTINGS, Send()),
        (Tier.BEHAVIORAL, {"behavioral_opt_in": False}, SETTINGS, Drop(DropReason.OPTED_OUT)),
        # ... and with the default turned off, a user who never chose is opted out.
        (
            Tier.BEHAVIORAL,
            {},
            PolicySettings(behavioral_default_opt_in=False),
            Drop(DropReason.OPTED_OUT),
        ),
        (
            Tier.BEHAVIORAL,
            {"behavioral_opt_in": True},
            PolicySettings(behavioral_default_opt_in=False),
            Send(),
        ),
        # Promotional: only with an explicit opt-in.
        (Tier.PROMOTIONAL, {"promotional_opt_in": None}, SETTINGS, Drop(DropReason.NOT_OPTED_IN)),
        (Tier.PROMOTIONAL, {"promotional_opt_in": False}, SETTINGS, Drop(DropReason.NOT_OPTED_IN)),
        (Tier.PROMOTIONAL, {"promotional_opt_in": True}, SETTINGS, Send()),
        # Rule 4, devices, comes after consent.
        (Tier.TRANSACTIONAL, {"active_devices": 0}, SETTINGS, Drop(DropReason.NO_ACTIVE_DEVICES)),
        (
            Tier.PROMOTIONAL,
            {"active_devices": 0, "promotional_opt_in": None},
            SETTINGS,
            Drop(DropReason.NOT_OPTED_IN),
        ),
        # Rule 7, caps: count >= max drops; transactional is never capped.
        (Tier.PROMOTIONAL, {"recent_counts": {Tier.PROMOTIONAL: 1}}, SETTINGS, Send()),
        (
            Tier.PROMOTIONAL,
            {"recent_counts": {Tier.PROMOTIONAL: 2}},
            SETTINGS,
            Drop(DropReason.FREQUENCY_CAPPED),
        ),
        (
            Tier.BEHAVIORAL,
            {"recent_counts": {Tier.BEHAVIORAL: 6}},
            SETTINGS,
            Drop(DropReason.FREQUENCY_CAPPED),
        ),
        (Tier.BEHAVIORAL, {"recent_counts": {Tier.PROMOTIONAL: 99}}, SETTINGS, Send()),
        (Tier.TRANSACTIONAL, {"recent_counts": {Tier.TRANSACTIONAL: 10_000}}, SETTINGS, Send()),
        # A tier without a configured cap is not capped.
        (
            Tier.BEHAVIORAL,
            {"recent_counts": {Tier.BEHAVIORAL: 10_000}},
            PolicySettings(frequency_caps={}),
            Send(),
        ),
    ],
)
def test_rules_in_order_outside_quiet_hours(
    tier: Tier, facts: dict[str, object], settings: PolicySettings, expected: object
) -> None:
    assert decide(NOON, tier, LATER, user(**facts), settings) == expected


def test_expired_notification_is_dropped_after_consent_and_devices() -> None:
    assert decide(NOON, Tier.TRANSACTIONAL, NOON, user(), SETTINGS) == Drop(DropReason.EXPIRED)
    assert decide(NOON, Tier.PROMOTIONAL, NOON, user(promotional_opt_in=None), SETTINGS) == Drop(
        DropReason.NOT_OPTED_IN
    )


def test_transactional_goes_out_at_2am() -> None:
    # 2024-06-03 01:00Z = 02:00 BST in London.
    at_2am = datetime(2024, 6, 3, 1, tzinfo=UTC)
    assert decide(at_2am, Tier.TRANSACTIONAL, LATER, user(), SETTINGS) == Send()


def test_quiet_hours_defer_to_end_of_window_plus_the_users_offset() -> None:
    # 2024-06-03 01:00Z = 02:00 BST; quiet until 08:00 BST = 07:00Z, plus u-1's offset.
    at_2am = datetime(2024, 6, 3, 1, tzinfo=UTC)
    offset = release_offset("u-1", 30)
    decision = decide(at_2am, Tier.PROMOTIONAL, LATER, user(), SETTINGS)
    assert decision == Defer(datetime(2024, 6, 3, 7, tzinfo=UTC) + offset, "quiet_hours")
    assert decide(at_2am, Tier.BEHAVIORAL, LATER, user(), SETTINGS) == decision


def test_deferral_is_not_cap_checked_until_release() -> None:
    at_2am = datetime(2024, 6, 3, 1, tzinfo=UTC)
    capped = user(recent_counts={Tier.PROMOTIONAL: 2})
    decision = decide(at_2am, Tier.PROMOTIONAL, LATER, capped, SETTINGS)
    assert isinstance(decision, Defer)
    # At release the same function sees the cap.
    assert decide(decision.until, Tier.PROMOTIONAL, LATER, capped, SETTINGS) == Drop(
        DropReason.FREQUENCY_CAPPED
    )
    assert decide(decision.until, Tier.PROMOTIONAL, LATER, user(), SETTINGS) == Send()


def test_release_re_evaluates_with_the_state_of_that_moment() -> None:
    at_2am = datetime(2024, 6, 3, 1, tzinfo=UTC)
    decision = decide(at_2am, Tier.BEHAVIORAL, LATER, user(), SETTINGS)
    assert isinstance(decision, Defer)
    release = decision.until
    # Opted out overnight, device pruned, expired.
    assert decide(release, Tier.BEHAVIORAL, LATER, user(behavioral_opt_in=False), SETTINGS) == Drop(
        DropReason.OPTED_OUT
    )
    assert decide(release, Tier.BEHAVIORAL, LATER, user(active_devices=0), SETTINGS) == Drop(
        DropReason.NO_ACTIVE_DEVICES
    )
    assert decide(release, Tier.BEHAVIORAL, release, user(), SETTINGS) == Drop(DropReason.EXPIRED)
    # Moved to Tokyo overnight: 07:00Z + offset is 16:00+ JST, allowed.
    assert decide(release, Tier.BEHAVIORAL, LATER, user(timezone="Asia/Tokyo"), SETTINGS) == Send()
    # Moved to Honolulu: 07:00Z = 21:00 HST the day before, not quiet (22:00) unless the offset
    # crosses it; at 08:30Z = 22:30 HST it is quiet, re-deferred to 08:00 HST = 18:00Z + offset.
    late = datetime(2024, 6, 3, 8, 30, tzinfo=UTC)
    assert decide(
        late, Tier.BEHAVIORAL, LATER, user(timezone="Pacific/Honolulu"), SETTINGS
    ) == Defer(datetime(2024, 6, 3, 18, tzinfo=UTC) + release_offset("u-1", 30))


def test_expiring_before_release_is_dropped() -> None:
    # 02:00 BST, allowed at 07:00Z + offset: expiring at 07:00Z exactly is too early.
    at_2am = datetime(2024, 6, 3, 1, tzinfo=UTC)
    seven = datetime(2024, 6, 3, 7, tzinfo=UTC)
    assert decide(at_2am, Tier.PROMOTIONAL, seven, user(), SETTINGS) == Drop(
        DropReason.EXPIRES_DURING_QUIET_HOURS
    )
    release = seven + release_offset("u-1", 30)
    assert decide(at_2am, Tier.PROMOTIONAL, release, user(), SETTINGS) == Drop(
        DropReason.EXPIRES_DURING_QUIET_HOURS
    )
    just_after = release + timedelta(microseconds=1)
    assert decide(at_2am, Tier.PROMOTIONAL, just_after, user(), SETTINGS) == Defer(release)


def test_user_window_overrides_the_default_and_empty_window_never_defers() -> None:
    # 13:00 BST: quiet in a 12:00-14:00 window, until 14:00 BST = 13:00Z.
    lunch = QuietWindow(time(12), time(14))
    spreadless = PolicySettings(release_spread_minutes=0)
    assert decide(NOON, Tier.PROMOTIONAL, LATER, user(quiet_hours=lunch), spreadless) == Defer(
        datetime(2024, 6, 3, 13, tzinfo=UTC)
    )
    at_2am = datetime(2024, 6, 3, 1, tzinfo=UTC)
    never = QuietWindow(time(0), time(0))
    assert decide(at_2am, Tier.PROMOTIONAL, LATER, user(quiet_hours=never), SETTINGS) == Send()


def test_spread_is_clamped_into_a_short_allowed_stretch() -> None:
    # Quiet 08:10-08:00 (allowed only 08:00-08:10) in UTC with a 30-minute spread: the offset
    # is scaled by 10/30, so the release lands inside 08:00-08:10.
    window = QuietWindow(time(8, 10), time(8))
    settings = PolicySettings(release_spread_minutes=30)
    now = datetime(2024, 6, 3, 3, tzinfo=UTC)
    for user_id in (f"user-{n}" for n in range(50)):
        decision = decide(
            now,
            Tier.BEHAVIORAL,
            LATER,
            user(user_id=user_id, timezone="UTC", quiet_hours=window),
            settings,
        )
        assert isinstance(decision, Defer)
        allowed = datetime(2024, 6, 3, 8, tzinfo=UTC)
        assert allowed <= decision.until < allowed + timedelta(minutes=10)
        offset = release_offset(user_id, 30)
        if offset < timedelta(minutes=10):
            assert decision.until == allowed + offset
        else:
            assert decision.until == allowed + timedelta(seconds=offset.seconds // 3)


def test_spread_is_clamped_when_the_clock_falls_back_into_the_window() -> None:
    # New York, window 01:30-06:00, 2024-11-03 05:45Z = 01:45 EDT: allowed from 06:00Z (the
    # clock falls back to 01:00 EST) until 06:30Z (01:30 EST): a 30-minute stretch, so a
    # 60-minute spread is halved.
    window = QuietWindow(time(1, 30), time(6))
    settings = PolicySettings(release_spread_minutes=60)
    now = datetime(2024, 11, 3, 5, 45, tzinfo=UTC)
    facts = user(user_id="late-riser", timezone="America/New_York", quiet_hours=window)
    decision = decide(now, Tier.BEHAVIORAL, now + timedelta(days=1), facts, settings)
    offset = release_offset("late-riser", 60)
    expected = datetime(2024, 11, 3, 6, tzinfo=UTC) + (
        offset if offset < timedelta(minutes=30) else timedelta(seconds=offset.seconds // 2)
    )
    assert decision == Defer(expected)


def test_naive_datetimes_are_rejected() -> None:
    naive = datetime(2024, 6, 3, 12)  # noqa: DTZ001
    with pytest.raises(ValueError, match="now must be an aware datetime"):
        decide(naive, Tier.TRANSACTIONAL, LATER, user(), SETTINGS)
    with pytest.raises(ValueError, match="expires_at must be an aware datetime"):
        decide(NOON, Tier.TRANSACTIONAL, naive, user(), SETTINGS)


def test_instants_in_a_zone_compare_as_instants_in_the_repeated_hour() -> None:
    # Python compares two datetimes sharing a tzinfo by wall time, ignoring fold: 01:30 EDT
    # and 01:30 EST on 2024-11-03 would be "equal". decide must see them an hour apart.
    ny = load_zone("America/New_York")
    first = datetime(2024, 11, 3, 1, 30, tzinfo=ny)
    second = datetime(2024, 11, 3, 1, 30, fold=1, tzinfo=ny)
    assert decide(first, Tier.TRANSACTIONAL, second, user(), SETTINGS) == Send()


# --- time zone resolution ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("preference", "device", "default", "expected"),
    [
        ("Asia/Tokyo", "Europe/Paris", "UTC", "Asia/Tokyo"),
        (None, "Europe/Paris", "UTC", "Europe/Paris"),
        (None, None, "America/Chicago", "America/Chicago"),
        ("", "", "UTC", "UTC"),
        # A stored name that does not load falls through to the next source.
        ("Mars/Olympus_Mons", "Europe/Paris", "UTC", "Europe/Paris"),
        ("Mars/Olympus_Mons", "../../etc/passwd", "Asia/Kolkata", "Asia/Kolkata"),
        ("America", None, "UTC", "UTC"),
    ],
)
def test_resolve_timezone(
    preference: str | None, device: str | None, default: str, expected: str
) -> None:
    facts = UserFacts(user_id="u", timezone=preference, device_timezone=device)
    assert resolve_timezone(facts, PolicySettings(default_timezone=default)) == expected


def test_device_zone_decides_quiet_hours_without_a_preference() -> None:
    # 12:00Z = 21:00 JST (not quiet) but 22:00 in Vladivostok (+10, quiet).
    noon = datetime(2024, 6, 3, 12, tzinfo=UTC)
    facts = user(timezone=None, device_timezone="Asia/Tokyo")
    assert decide(noon, Tier.BEHAVIORAL, LATER, facts, SETTINGS) == Send()
    facts = user(timezone=None, device_timezone="Asia/Vladivostok")
    assert isinstance(decide(noon, Tier.BEHAVIORAL, LATER, facts, SETTINGS), Defer)


# --- expiry and cap windows ----------------------------------------------------------------


def test_resolve_expiry_order() -> None:
    explicit = datetime(2024, 6, 4, 9, tzinfo=load_zone("Europe/Paris"))
    assert resolve_expiry(NOON, Tier.PROMOTIONAL, SETTINGS, expires_at=explicit) == explicit
    assert resolve_expiry(NOON, Tier.PROMOTIONAL, SETTINGS, ttl_seconds=60) == NOON + timedelta(
        seconds=60
    )
    assert resolve_expiry(NOON, Tier.PROMOTIONAL, SETTINGS) == NOON + timedelta(days=3)
    assert resolve_expiry(NOON, Tier.TRANSACTIONAL, SETTINGS) == NOON + timedelta(days=1)
    with pytest.raises(ValueError, match="not both"):
        resolve_expiry(NOON, Tier.PROMOTIONAL, SETTINGS, ttl_seconds=60, expires_at=explicit)
    with pytest.raises(ValueError, match="aware"):
        resolve_expiry(NOON, Tier.PROMOTIONAL, SETTINGS, expires_at=datetime(2024, 6, 4))  # noqa: DTZ001


def test_resolve_expiry_counts_real_seconds_across_dst() -> None:
    # now = 2024-03-09 12:00 EST = 17:00Z. 86400 s later is 2024-03-10 17:00Z = 13:00 EDT;
    # wall-clock arithmetic in the zone would give 12:00 EDT = 16:00Z, an hour short.
    now = datetime(2024, 3, 9, 12, tzinfo=load_zone("America/New_York"))
    expires = resolve_expiry(now, Tier.BEHAVIORAL, SETTINGS)
    assert expires == datetime(2024, 3, 10, 17, tzinfo=UTC)
    assert expires.utcoffset() == timedelta(0)


def test_cap_window_start() -> None:
    assert cap_window_start(NOON, Tier.PROMOTIONAL, SETTINGS) == NOON - timedelta(days=1)
    hourly = PolicySettings(frequency_caps={Tier.BEHAVIORAL: FrequencyCap(3, 3600)})
    assert cap_window_start(NOON, Tier.BEHAVIORAL, hourly) == NOON - timedelta(hours=1)
    assert cap_window_start(NOON, Tier.PROMOTIONAL, hourly) is None
    assert cap_window_start(NOON, Tier.TRANSACTIONAL, SETTINGS) is None


# --- release offset ------------------------------------------------------------------------


def test_release_offset_is_a_stable_hash_of_the_user_id() -> None:
    # Pinned: the same in every process and release (blake2b, not the salted hash()).
    assert release_offset("u-1", 30) == release_offset("u-1", 30)
    assert release_offset("alice", 30) == PINNED_ALICE_OFFSET
    assert release_offset("alice", 0) == timedelta(0)
    offsets = {release_offset(f"user-{n}", 30) for n in range(500)}
    assert all(timedelta(0) <= o < timedelta(minutes=30) for o in offsets)
    assert len(offsets) > 400  # spread out, not a handful of buckets


def test_release_offset_accepts_any_json_string() -> None:
    # json.loads('"\\ud800"') is a lone surrogate, which plain .encode() refuses.
    assert timedelta(0) <= release_offset("\ud800", 30) < timedelta(minutes=30)


def test_release_instant_takes_a_zone_name() -> None:
    # 2024-06-03 01:00Z = 02:00 BST, quiet until 08:00 BST = 07:00Z; no spread.
    at_2am = datetime(2024, 6, 3, 1, tzinfo=UTC)
    assert release_instant(
        at_2am, "Europe/London", time(22), time(8), user_id="u", spread_minutes=0
    ) == datetime(2024, 6, 3, 7, tzinfo=UTC)
    assert (
        release_instant(NOON, "Europe/London", time(22), time(8), user_id="u", spread_minutes=30)
        is None
    )


def test_unknown_tier_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown tier"):
        decide(NOON, "urgent", LATER, user(), SETTINGS)  # type: ignore[arg-type]


PINNED_ALICE_OFFSET = timedelta(minutes=18, seconds=49)


# --- settings validation -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"default_timezone": "Mars/Olympus_Mons"}, "default_timezone"),
        ({"release_spread_minutes": -1}, "release_spread_minutes"),
        ({"default_ttl_seconds": {Tier.PROMOTIONAL: 60}}, "default_ttl_seconds"),
        (
            {
                "default_ttl_seconds": {
                    Tier.PROMOTIONAL: 0,
                    Tier.BEHAVIORAL: 1,
                    Tier.TRANSACTIONAL: 1,
                }
            },
            "default_ttl_seconds.promotional",
        ),
        ({"frequency_caps": {Tier.TRANSACTIONAL: FrequencyCap(1, 60)}}, "never capped"),
    ],
)
def test_settings_are_validated(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PolicySettings(**kwargs)  # type: ignore[arg-type]


def test_quiet_window_is_wall_clock_time() -> None:
    with pytest.raises(ValueError, match="naive"):
        QuietWindow(time(22, tzinfo=UTC), time(8))
    assert QuietWindow(time(9), time(9)).is_empty
    assert SETTINGS.categories == MappingProxyType({})
