"""Each rule's decision explains itself: which rule, in which zone and from where, what the
user's clock read, and which quiet hours were applied."""

from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta

import pytest

from policies import (
    Defer,
    DeferReason,
    Drop,
    DropReason,
    FrequencyCap,
    PolicySettings,
    QuietWindow,
    Rule,
    Send,
    Tier,
    UserFacts,
    ZoneSource,
    decide,
    decide_and_explain,
    locate_user,
)

SETTINGS = PolicySettings(default_timezone="America/Chicago")
# 2024-06-03 00:14Z is 02:14 in Paris (CEST), 19:14 the evening before in Chicago (CDT).
NIGHT_IN_PARIS = datetime(2024, 6, 3, 0, 14, tzinfo=UTC)
# 12:00Z is 14:00 in Paris.
DAY_IN_PARIS = datetime(2024, 6, 3, 12, tzinfo=UTC)
LATER = NIGHT_IN_PARIS + timedelta(days=3)


def user(**facts: object) -> UserFacts:
    defaults: dict[str, object] = {
        "user_id": "alice",
        "timezone": "Europe/Paris",
        "promotional_opt_in": True,
        "active_devices": 1,
    }
    return UserFacts(**{**defaults, **facts})  # type: ignore[arg-type]


@dataclass(frozen=True)
class Case:
    tier: Tier
    now: datetime
    rule: str
    window: QuietWindow | None = None
    facts: dict[str, object] = field(default_factory=dict)
    expires_at: datetime = LATER
    scheduled_at: datetime | None = None


NIGHT_WINDOW = QuietWindow(time(22), time(8))


@pytest.mark.parametrize(
    "case",
    [
        Case(Tier.BEHAVIORAL, DAY_IN_PARIS, "consent", facts={"behavioral_opt_in": False}),
        Case(Tier.PROMOTIONAL, DAY_IN_PARIS, "consent", facts={"promotional_opt_in": None}),
        Case(Tier.TRANSACTIONAL, DAY_IN_PARIS, "devices", facts={"active_devices": 0}),
        Case(Tier.BEHAVIORAL, DAY_IN_PARIS, "expiry", expires_at=DAY_IN_PARIS),
        # scheduled: waits without looking at quiet hours (it is night, and they are not named)
        Case(Tier.BEHAVIORAL, NIGHT_IN_PARIS, "scheduled", scheduled_at=LATER - timedelta(hours=1)),
        # ... and would expire before its moment: the expiry rule decides
        Case(Tier.BEHAVIORAL, DAY_IN_PARIS, "expiry", scheduled_at=LATER),
        Case(Tier.BEHAVIORAL, NIGHT_IN_PARIS, "quiet_hours", NIGHT_WINDOW),
        # expires during the user's own quiet hours
        Case(
            Tier.BEHAVIORAL,
            NIGHT_IN_PARIS,
            "quiet_hours",
            QuietWindow(time(1), time(6)),
            facts={"quiet_hours": QuietWindow(time(1), time(6))},
            expires_at=NIGHT_IN_PARIS + timedelta(hours=1),
        ),
        Case(
            Tier.PROMOTIONAL,
            DAY_IN_PARIS,
            "frequency_cap",
            NIGHT_WINDOW,
            facts={"recent_counts": {Tier.PROMOTIONAL: 2}},
        ),
        Case(Tier.PROMOTIONAL, DAY_IN_PARIS, "send", NIGHT_WINDOW),
        # transactional ignores quiet hours: none applied, even at night
        Case(Tier.TRANSACTIONAL, NIGHT_IN_PARIS, "send"),
        # a schedule already due is no schedule: the later rules decide
        Case(Tier.TRANSACTIONAL, DAY_IN_PARIS, "send", scheduled_at=DAY_IN_PARIS),
    ],
)
def test_each_rule_explains_itself(case: Case) -> None:
    facts = user(**case.facts)
    decision, explanation = decide_and_explain(
        case.now, case.tier, case.expires_at, facts, SETTINGS, scheduled_at=case.scheduled_at
    )
    assert explanation.rule == case.rule
    assert explanation.quiet_hours == case.window
    assert (explanation.zone.key, explanation.zone_source) == ("Europe/Paris", "preferences")
    assert explanation.at == case.now
    # the decision is the one decide gives
    assert decision == decide(
        case.now, case.tier, case.expires_at, facts, SETTINGS, scheduled_at=case.scheduled_at
    )


def test_the_decision_matches_the_rule() -> None:
    cases = {
        Rule.CONSENT: ({"behavioral_opt_in": False}, None, Drop(DropReason.OPTED_OUT)),
        Rule.DEVICES: ({"active_devices": 0}, None, Drop(DropReason.NO_ACTIVE_DEVICES)),
        Rule.SCHEDULED: ({}, LATER - timedelta(days=1), Defer(LATER - timedelta(days=1))),
    }
    for rule, (facts, scheduled_at, expected) in cases.items():
        decision, explanation = decide_and_explain(
            DAY_IN_PARIS, Tier.BEHAVIORAL, LATER, user(**facts), SETTINGS, scheduled_at=scheduled_at
        )
        assert explanation.rule == rule
        if rule == Rule.SCHEDULED:
            assert decision == Defer(LATER - timedelta(days=1), DeferReason.SCHEDULED)
        else:
            assert decision == expected
    decision, explanation = decide_and_explain(
        DAY_IN_PARIS, Tier.BEHAVIORAL, LATER, user(), SETTINGS
    )
    assert (decision, explanation.rule) == (Send(), Rule.SEND)


@pytest.mark.parametrize(
    ("facts", "zone", "source"),
    [
        (
            {"timezone": "Asia/Tokyo", "device_timezone": "Europe/Paris"},
            "Asia/Tokyo",
            "preferences",
        ),
        ({"timezone": None, "device_timezone": "Europe/Paris"}, "Europe/Paris", "device"),
        ({"timezone": None, "device_timezone": None}, "America/Chicago", "default"),
        # a stored name that no longer loads falls through to the next source
        ({"timezone": "Mars/Olympus", "device_timezone": "Europe/Paris"}, "Europe/Paris", "device"),
        ({"timezone": "Mars/Olympus", "device_timezone": None}, "America/Chicago", "default"),
    ],
)
def test_where_the_zone_came_from(facts: dict[str, object], zone: str, source: str) -> None:
    located, where = locate_user(user(**facts), SETTINGS)
    assert (located.key, where) == (zone, ZoneSource(source))
    _, explanation = decide_and_explain(
        DAY_IN_PARIS, Tier.TRANSACTIONAL, LATER, user(**facts), SETTINGS
    )
    assert (explanation.zone.key, explanation.zone_source) == (zone, source)


def test_as_dict_reads_the_instant_on_the_users_clock() -> None:
    _, explanation = decide_and_explain(NIGHT_IN_PARIS, Tier.BEHAVIORAL, LATER, user(), SETTINGS)
    assert explanation.as_dict() == {
        "zone": "Europe/Paris",
        "zone_source": "preferences",
        "local_time": "2024-06-03T02:14:00+02:00",
        "quiet_hours": {"start": "22:00", "end": "08:00"},
        "rule": "quiet_hours",
    }
    assert explanation.local_time == NIGHT_IN_PARIS
    assert explanation.local_time.utcoffset() == timedelta(hours=2)


def test_local_time_takes_the_offset_in_force_at_the_instant() -> None:
    # New York: 05:59Z on 10 March 2024 is 00:59 EST; 07:00Z the same day is 03:00 EDT.
    for instant, expected in (
        (datetime(2024, 3, 10, 5, 59, tzinfo=UTC), "2024-03-10T00:59:00-05:00"),
        (datetime(2024, 3, 10, 7, 0, tzinfo=UTC), "2024-03-10T03:00:00-04:00"),
    ):
        _, explanation = decide_and_explain(
            instant,
            Tier.TRANSACTIONAL,
            instant + timedelta(days=1),
            user(timezone="America/New_York"),
            SETTINGS,
        )
        assert explanation.as_dict()["local_time"] == expected
        assert explanation.as_dict()["quiet_hours"] is None


def test_an_empty_window_is_still_named_when_applied() -> None:
    never_quiet = QuietWindow(time(0), time(0))
    _, explanation = decide_and_explain(
        NIGHT_IN_PARIS, Tier.BEHAVIORAL, LATER, user(quiet_hours=never_quiet), SETTINGS
    )
    assert explanation.rule == Rule.SEND
    assert explanation.as_dict()["quiet_hours"] == {"start": "00:00", "end": "00:00"}


def test_scheduled_instants_and_caps() -> None:
    """A schedule is checked before quiet hours and caps: a capped promo scheduled for later
    waits, and is judged by the cap when it is released."""
    capped = user(recent_counts={Tier.PROMOTIONAL: 5})
    settings = PolicySettings(frequency_caps={Tier.PROMOTIONAL: FrequencyCap(1, 86_400)})
    at = DAY_IN_PARIS + timedelta(hours=3)
    decision, explanation = decide_and_explain(
        DAY_IN_PARIS, Tier.PROMOTIONAL, LATER, capped, settings, scheduled_at=at
    )
    assert decision == Defer(at, DeferReason.SCHEDULED)
    assert explanation.rule == Rule.SCHEDULED
    decision, explanation = decide_and_explain(
        at, Tier.PROMOTIONAL, LATER, capped, settings, scheduled_at=at
    )
    assert decision == Drop(DropReason.FREQUENCY_CAPPED)
    assert explanation.rule == Rule.FREQUENCY_CAP


def test_a_naive_scheduled_instant_is_refused() -> None:
    with pytest.raises(ValueError, match="scheduled_at"):
        decide(
            DAY_IN_PARIS,
            Tier.TRANSACTIONAL,
            LATER,
            user(),
            SETTINGS,
            scheduled_at=datetime(2024, 6, 4, 9),  # noqa: DTZ001 - naive on purpose
        )
