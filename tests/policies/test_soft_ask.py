"""`soft_ask_decision`: each rule, the edges between them, and properties over random histories.

Instants are counted in days from T0 so each row reads as a small timeline; `now` is always given.
"""

import os
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies import (
    FunnelStep,
    OsPromptResult,
    PermissionEvent,
    PermissionEventKind,
    PermissionSettings,
    SoftAskAction,
    SoftAskDecision,
    SoftAskReason,
    event_result_problem,
    funnel_step,
    soft_ask_decision,
)

Kind = PermissionEventKind
Reason = SoftAskReason
GRANTED, DENIED, PROVISIONAL = OsPromptResult

T0 = datetime(2024, 3, 1, 12, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)
DEFAULTS = PermissionSettings()
SOFT_ASK = SoftAskDecision(SoftAskAction.SHOW_SOFT_ASK, Reason.ELIGIBLE)
SETTINGS_PROMPT = SoftAskDecision(SoftAskAction.SHOW_SETTINGS_PROMPT, Reason.ELIGIBLE)


def day(days: float) -> datetime:
    return T0 + timedelta(days=days)


def value_moment(at: datetime) -> PermissionEvent:
    return PermissionEvent(Kind.VALUE_MOMENT, at)


def soft_ask_shown(at: datetime) -> PermissionEvent:
    return PermissionEvent(Kind.SOFT_ASK_SHOWN, at)


def accepted(at: datetime) -> PermissionEvent:
    return PermissionEvent(Kind.SOFT_ASK_ACCEPTED, at)


def declined(at: datetime) -> PermissionEvent:
    return PermissionEvent(Kind.SOFT_ASK_DECLINED, at)


def os_prompt_shown(at: datetime) -> PermissionEvent:
    return PermissionEvent(Kind.OS_PROMPT_SHOWN, at)


def os_answer(at: datetime, result: OsPromptResult) -> PermissionEvent:
    return PermissionEvent(Kind.OS_PROMPT_RESULT, at, result)


def settings_prompt_shown(at: datetime) -> PermissionEvent:
    return PermissionEvent(Kind.SETTINGS_PROMPT_SHOWN, at)


def nothing(reason: SoftAskReason, retry_at: datetime | None = None) -> SoftAskDecision:
    return SoftAskDecision(SoftAskAction.NONE, reason, retry_at)


def row(
    row_id: str,
    events: Sequence[PermissionEvent],
    now: datetime,
    expected: SoftAskDecision,
    *,
    devices: Sequence[str] = (),
    policy: PermissionSettings = DEFAULTS,
) -> Any:
    return pytest.param(events, devices, now, policy, expected, id=row_id)


# The user said yes to the soft ask, then no to the OS prompt, on day 1.
DENIED_ON_DAY_1 = [
    value_moment(day(0)),
    soft_ask_shown(day(1)),
    accepted(day(1)),
    os_prompt_shown(day(1)),
    os_answer(day(1), DENIED),
]
# The user declined the soft ask on day 1.
DECLINED_ON_DAY_1 = [value_moment(day(0)), soft_ask_shown(day(1)), declined(day(1))]
NEW_YORK = ZoneInfo("America/New_York")
# 12:00 EST = 17:00Z. New York moves to EDT on 2024-03-10, so fourteen days later 17:00Z is
# 13:00 local: a wall-clock cooldown would end an hour early, at 12:00 EDT = 16:00Z.
DECLINED_IN_NEW_YORK = datetime(2024, 3, 1, 12, tzinfo=NEW_YORK)
FOURTEEN_DAYS_LATER = datetime(2024, 3, 15, 17, tzinfo=UTC)


@pytest.mark.parametrize(
    ("events", "devices", "now", "policy", "expected"),
    [
        # 1. A device with permission: nothing to ask, whatever else is true.
        row(
            "granted",
            [value_moment(day(0))],
            day(1),
            nothing(Reason.ALREADY_GRANTED),
            devices=["granted"],
        ),
        row(
            "granted-among-other-devices",
            [value_moment(day(0))],
            day(1),
            nothing(Reason.ALREADY_GRANTED),
            devices=["unknown", "provisional", "granted"],
        ),
        row(
            "granted-device-beats-denied-answer",
            [*DENIED_ON_DAY_1, value_moment(day(5))],
            day(6),
            nothing(Reason.ALREADY_GRANTED),
            devices=["granted"],
        ),
        row(
            "granted-device-beats-denied-device",
            [value_moment(day(0))],
            day(1),
            nothing(Reason.ALREADY_GRANTED),
            devices=["denied", "granted"],
        ),
        # 2. Denied at the OS level: the Settings screen, when every condition holds.
        row(
            "denied-answer-then-value-moment",
            [*DENIED_ON_DAY_1, value_moment(day(5))],
            day(6),
            SETTINGS_PROMPT,
        ),
        row(
            "denied-device-any-value-moment-will-do",
            [value_moment(day(0))],
            day(1),
            SETTINGS_PROMPT,
            devices=["denied"],
        ),
        row(
            "denied-latest-answer-after-an-earlier-yes",
            [
                value_moment(day(0)),
                os_answer(day(1), GRANTED),
                os_answer(day(3), DENIED),
                value_moment(day(4)),
            ],
            day(5),
            SETTINGS_PROMPT,
        ),
        row(
            "denied-no-value-moment-after-the-denial",
            DENIED_ON_DAY_1,
            day(5),
            nothing(Reason.OS_DENIED),
        ),
        row(
            "denied-no-value-moment-at-all",
            [os_answer(day(1), DENIED)],
            day(5),
            nothing(Reason.OS_DENIED),
        ),
        row(
            "denied-count-exhausted",
            [
                *DENIED_ON_DAY_1,
                value_moment(day(2)),
                settings_prompt_shown(day(3)),
                value_moment(day(40)),
                settings_prompt_shown(day(41)),
                value_moment(day(80)),
            ],
            day(100),
            nothing(Reason.MAX_SETTINGS_PROMPTS),
        ),
        row(
            "denied-count-checked-before-cooldown",
            [*DENIED_ON_DAY_1, settings_prompt_shown(day(2)), settings_prompt_shown(day(3))],
            day(4),
            nothing(Reason.MAX_SETTINGS_PROMPTS),
        ),
        row(
            "denied-never-the-settings-screen-when-max-is-0",
            [value_moment(day(0))],
            day(1),
            nothing(Reason.MAX_SETTINGS_PROMPTS),
            devices=["denied"],
            policy=PermissionSettings(max_settings_prompts=0),
        ),
        row(
            "denied-cooldown-running",
            [*DENIED_ON_DAY_1, value_moment(day(2)), settings_prompt_shown(day(3))],
            day(10),
            nothing(Reason.OS_DENIED, retry_at=day(33)),
        ),
        row(
            "denied-cooldown-one-microsecond-left",
            [*DENIED_ON_DAY_1, settings_prompt_shown(day(3)), value_moment(day(20))],
            day(33) - MICROSECOND,
            nothing(Reason.OS_DENIED, retry_at=day(33)),
        ),
        row(
            "denied-cooldown-over-exactly-now",
            [*DENIED_ON_DAY_1, settings_prompt_shown(day(3)), value_moment(day(20))],
            day(33),
            SETTINGS_PROMPT,
        ),
        row(
            "denied-cooldown-as-configured",
            [*DENIED_ON_DAY_1, settings_prompt_shown(day(3)), value_moment(day(4))],
            day(5),
            nothing(Reason.OS_DENIED, retry_at=day(10)),
            policy=PermissionSettings(settings_prompt_cooldown_days=7),
        ),
        row(
            "denied-cooldown-over-value-moment-only-before-the-denial",
            [settings_prompt_shown(day(0)), value_moment(day(1)), os_answer(day(2), DENIED)],
            day(40),
            nothing(Reason.OS_DENIED),
        ),
        row(
            "denied-value-moment-before-the-last-settings-screen",
            [*DENIED_ON_DAY_1, value_moment(day(5)), settings_prompt_shown(day(10))],
            day(50),
            nothing(Reason.OS_DENIED),
        ),
        row(
            "denied-device-value-moment-before-the-last-settings-screen",
            [value_moment(day(0)), settings_prompt_shown(day(1))],
            day(40),
            nothing(Reason.OS_DENIED),
            devices=["denied"],
        ),
        row(
            "denied-device-value-moment-after-the-last-settings-screen",
            [value_moment(day(0)), settings_prompt_shown(day(1)), value_moment(day(35))],
            day(40),
            SETTINGS_PROMPT,
            devices=["denied"],
        ),
        row(
            "denied-beats-max-soft-asks",
            [
                value_moment(day(0)),
                soft_ask_shown(day(1)),
                soft_ask_shown(day(2)),
                soft_ask_shown(day(3)),
                os_answer(day(3), DENIED),
                value_moment(day(5)),
            ],
            day(6),
            SETTINGS_PROMPT,
        ),
        row(
            "denied-device-beats-declined-recently",
            DECLINED_ON_DAY_1,
            day(2),
            SETTINGS_PROMPT,
            devices=["denied"],
        ),
        row(
            "a-later-answer-replaces-a-denial",
            [value_moment(day(0)), os_answer(day(1), DENIED), os_answer(day(2), PROVISIONAL)],
            day(3),
            SOFT_ASK,
            devices=["provisional"],
        ),
        # 3. The soft ask was shown as often as allowed.
        row(
            "max-soft-asks",
            [
                value_moment(day(0)),
                soft_ask_shown(day(1)),
                soft_ask_shown(day(20)),
                soft_ask_shown(day(40)),
                value_moment(day(60)),
            ],
            day(61),
            nothing(Reason.MAX_SOFT_ASKS),
        ),
        row(
            "fewer-than-max-soft-asks",
            [value_moment(day(0)), soft_ask_shown(day(1)), soft_ask_shown(day(2))],
            day(3),
            SOFT_ASK,
        ),
        row(
            "max-soft-asks-beats-no-value-moment",
            [soft_ask_shown(day(1)), soft_ask_shown(day(2)), soft_ask_shown(day(3))],
            day(4),
            nothing(Reason.MAX_SOFT_ASKS),
        ),
        row(
            "max-soft-asks-beats-declined-recently",
            DECLINED_ON_DAY_1,
            day(2),
            nothing(Reason.MAX_SOFT_ASKS),
            policy=PermissionSettings(max_soft_asks=1),
        ),
        # 4. Nothing worth being notified about yet.
        row("no-events", [], day(0), nothing(Reason.NO_VALUE_MOMENT)),
        row(
            "no-value-moment-provisional",
            [os_answer(day(1), PROVISIONAL)],
            day(2),
            nothing(Reason.NO_VALUE_MOMENT),
            devices=["provisional"],
        ),
        # 5. After a decline: the cooldown, then a new value moment.
        row(
            "declined-recently",
            DECLINED_ON_DAY_1,
            day(5),
            nothing(Reason.DECLINED_RECENTLY, retry_at=day(15)),
        ),
        row(
            "declined-value-moment-during-cooldown",
            [*DECLINED_ON_DAY_1, value_moment(day(5))],
            day(6),
            nothing(Reason.DECLINED_RECENTLY, retry_at=day(15)),
        ),
        row(
            "declined-cooldown-one-microsecond-left",
            [*DECLINED_ON_DAY_1, value_moment(day(5))],
            day(15) - MICROSECOND,
            nothing(Reason.DECLINED_RECENTLY, retry_at=day(15)),
        ),
        row(
            "declined-cooldown-over-exactly-now",
            [*DECLINED_ON_DAY_1, value_moment(day(5))],
            day(15),
            SOFT_ASK,
        ),
        row(
            "declined-value-moment-after-cooldown",
            [*DECLINED_ON_DAY_1, value_moment(day(20))],
            day(21),
            SOFT_ASK,
        ),
        row(
            "declined-cooldown-over-no-new-value-moment",
            DECLINED_ON_DAY_1,
            day(20),
            nothing(Reason.AWAITING_VALUE_MOMENT),
        ),
        row(
            "declined-the-last-decline-counts",
            [
                *DECLINED_ON_DAY_1,
                value_moment(day(20)),
                soft_ask_shown(day(21)),
                declined(day(21)),
            ],
            day(30),
            nothing(Reason.DECLINED_RECENTLY, retry_at=day(35)),
        ),
        row(
            "declined-no-cooldown-still-needs-a-value-moment",
            DECLINED_ON_DAY_1,
            day(1),
            nothing(Reason.AWAITING_VALUE_MOMENT),
            policy=PermissionSettings(decline_cooldown_days=0),
        ),
        row(
            "declined-cooldown-is-elapsed-time-across-dst",
            [value_moment(day(-1)), declined(DECLINED_IN_NEW_YORK), value_moment(day(5))],
            (FOURTEEN_DAYS_LATER - timedelta(minutes=30)).astimezone(NEW_YORK),
            nothing(Reason.DECLINED_RECENTLY, retry_at=FOURTEEN_DAYS_LATER),
        ),
        row(
            "declined-recently-beats-os-prompt-pending",
            [
                value_moment(day(0)),
                soft_ask_shown(day(1)),
                accepted(day(1)),
                soft_ask_shown(day(3)),
                declined(day(3)),
            ],
            day(4),
            nothing(Reason.DECLINED_RECENTLY, retry_at=day(17)),
        ),
        # 6. A yes to the soft ask, and the OS prompt's answer not reported yet.
        row(
            "accepted-os-prompt-pending",
            [value_moment(day(0)), soft_ask_shown(day(1)), accepted(day(1))],
            day(2),
            nothing(Reason.OS_PROMPT_PENDING),
        ),
        row(
            "accepted-os-prompt-shown-without-answer",
            [
                value_moment(day(0)),
                soft_ask_shown(day(1)),
                accepted(day(1)),
                os_prompt_shown(day(1)),
            ],
            day(2),
            nothing(Reason.OS_PROMPT_PENDING),
        ),
        row(
            "accepted-answer-before-the-yes-does-not-count",
            [value_moment(day(0)), os_answer(day(0), PROVISIONAL), accepted(day(1))],
            day(2),
            nothing(Reason.OS_PROMPT_PENDING),
            devices=["provisional"],
        ),
        row(
            "accepted-then-answered",
            [
                value_moment(day(0)),
                soft_ask_shown(day(1)),
                accepted(day(1)),
                os_prompt_shown(day(1)),
                os_answer(day(1), PROVISIONAL),
            ],
            day(2),
            SOFT_ASK,
            devices=["provisional"],
        ),
        # 7. Otherwise the soft ask may be shown.
        row("eligible", [value_moment(day(0))], day(1), SOFT_ASK),
        row(
            "eligible-unknown-device", [value_moment(day(0))], day(1), SOFT_ASK, devices=["unknown"]
        ),
        row(
            "eligible-provisional-counts-as-not-yet-asked",
            [value_moment(day(0)), os_answer(day(1), PROVISIONAL), value_moment(day(2))],
            day(3),
            SOFT_ASK,
            devices=["provisional"],
        ),
        # Order: by instant whatever the input order, and the given order for equal instants.
        row(
            "unsorted-input",
            [declined(day(1)), soft_ask_shown(day(1)), value_moment(day(0))],
            day(20),
            nothing(Reason.AWAITING_VALUE_MOMENT),
        ),
        row(
            "unsorted-input-value-moment-after-denial",
            [value_moment(day(5)), os_answer(day(1), DENIED)],
            day(6),
            SETTINGS_PROMPT,
        ),
        row(
            "same-instant-value-moment-given-after-the-decline",
            [*DECLINED_ON_DAY_1, value_moment(day(1))],
            day(20),
            SOFT_ASK,
        ),
        row(
            "same-instant-value-moment-given-before-the-decline",
            [value_moment(day(1)), soft_ask_shown(day(1)), declined(day(1))],
            day(20),
            nothing(Reason.AWAITING_VALUE_MOMENT),
        ),
        # Events a few minutes ahead of `now` (a device clock running fast) count: the decline
        # the app just reported must not be missed.
        row(
            "future-decline-counts",
            [value_moment(day(0)), soft_ask_shown(day(5)), declined(day(5) + timedelta(minutes=3))],
            day(5),
            nothing(Reason.DECLINED_RECENTLY, retry_at=day(19) + timedelta(minutes=3)),
        ),
        row(
            "future-denial-counts",
            [value_moment(day(0)), os_answer(day(5) + timedelta(minutes=2), DENIED)],
            day(5),
            nothing(Reason.OS_DENIED),
        ),
        row(
            "future-value-moment-counts",
            [value_moment(day(5) + timedelta(minutes=1))],
            day(5),
            SOFT_ASK,
        ),
    ],
)
def test_soft_ask_rules(
    events: Sequence[PermissionEvent],
    devices: Sequence[str],
    now: datetime,
    policy: PermissionSettings,
    expected: SoftAskDecision,
) -> None:
    assert soft_ask_decision(now, events, devices, policy) == expected


def test_retry_at_is_in_utc() -> None:
    decision = soft_ask_decision(
        datetime(2024, 3, 5, tzinfo=NEW_YORK),
        [value_moment(DECLINED_IN_NEW_YORK), declined(DECLINED_IN_NEW_YORK)],
        [],
        DEFAULTS,
    )
    assert decision.retry_at == FOURTEEN_DAYS_LATER
    assert decision.retry_at.tzinfo is UTC


def test_defaults() -> None:
    assert (
        DEFAULTS.decline_cooldown_days,
        DEFAULTS.max_soft_asks,
        DEFAULTS.settings_prompt_cooldown_days,
        DEFAULTS.max_settings_prompts,
    ) == (14, 3, 30, 2)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("decline_cooldown_days", -1),
        ("decline_cooldown_days", 3651),
        ("settings_prompt_cooldown_days", -1),
        ("settings_prompt_cooldown_days", 100_000),
        ("max_soft_asks", -1),
        ("max_settings_prompts", -1),
    ],
)
def test_settings_out_of_range_name_the_field(field: str, value: int) -> None:
    with pytest.raises(ValueError, match=f"^{field}: "):
        PermissionSettings(**{field: value})


def test_os_prompt_result_needs_a_result_and_only_it_has_one() -> None:
    with pytest.raises(ValueError, match="os_prompt_result needs a result"):
        PermissionEvent(Kind.OS_PROMPT_RESULT, T0)
    with pytest.raises(ValueError, match="value_moment takes no result"):
        PermissionEvent(Kind.VALUE_MOMENT, T0, GRANTED)
    assert event_result_problem(Kind.OS_PROMPT_RESULT, DENIED) is None
    assert event_result_problem(Kind.SOFT_ASK_SHOWN, None) is None


def test_naive_instants_and_unknown_permissions_are_refused() -> None:
    naive = datetime(2024, 3, 1)  # noqa: DTZ001 - the point of the test
    with pytest.raises(ValueError, match=r"^at must be an aware datetime"):
        PermissionEvent(Kind.VALUE_MOMENT, naive)
    with pytest.raises(ValueError, match=r"^now must be an aware datetime"):
        soft_ask_decision(naive, [], [], DEFAULTS)
    with pytest.raises(ValueError, match="unknown device permission 'allowed'"):
        soft_ask_decision(T0, [], ["granted", "allowed"], DEFAULTS)


@pytest.mark.parametrize(
    ("kind", "result", "step"),
    [
        (Kind.VALUE_MOMENT, None, FunnelStep.VALUE_MOMENT),
        (Kind.SOFT_ASK_SHOWN, None, FunnelStep.SOFT_ASK_SHOWN),
        (Kind.SOFT_ASK_ACCEPTED, None, FunnelStep.SOFT_ASK_ACCEPTED),
        (Kind.SOFT_ASK_DECLINED, None, FunnelStep.SOFT_ASK_DECLINED),
        (Kind.OS_PROMPT_SHOWN, None, FunnelStep.OS_PROMPT_SHOWN),
        (Kind.OS_PROMPT_RESULT, GRANTED, FunnelStep.OS_GRANTED),
        (Kind.OS_PROMPT_RESULT, DENIED, FunnelStep.OS_DENIED),
        (Kind.OS_PROMPT_RESULT, PROVISIONAL, FunnelStep.OS_PROVISIONAL),
        (Kind.SETTINGS_PROMPT_SHOWN, None, FunnelStep.SETTINGS_PROMPT_SHOWN),
    ],
)
def test_funnel_step(
    kind: PermissionEventKind, result: OsPromptResult | None, step: FunnelStep
) -> None:
    assert funnel_step(kind, result) == step


def test_funnel_step_refuses_a_mismatched_result() -> None:
    with pytest.raises(ValueError, match="needs a result"):
        funnel_step(Kind.OS_PROMPT_RESULT, None)


# Properties over random histories. Instants fall on a coarse grid (quarter days over four
# months) so that equal instants, boundaries and cooldowns overlapping `now` all come up often;
# they are given in several zones so the UTC arithmetic is exercised too.
EXAMPLES = settings(
    max_examples=int(os.environ.get("POLICY_HYPOTHESIS_EXAMPLES", "300")), deadline=None
)
ZONES = st.sampled_from([UTC, NEW_YORK, ZoneInfo("Europe/London"), ZoneInfo("Asia/Kolkata")])
SPAN_QUARTER_DAYS = 4 * 120


@st.composite
def instants(draw: st.DrawFn, *, low: int = 0, high: int = SPAN_QUARTER_DAYS) -> datetime:
    instant = T0 + timedelta(hours=6 * draw(st.integers(low, high)))
    return instant.astimezone(draw(ZONES))


@st.composite
def permission_events(draw: st.DrawFn) -> PermissionEvent:
    kind = draw(st.sampled_from(PermissionEventKind))
    result = draw(st.sampled_from(OsPromptResult)) if kind == Kind.OS_PROMPT_RESULT else None
    return PermissionEvent(kind, draw(instants()), result)


HISTORIES = st.lists(permission_events(), max_size=16)
DEVICES = st.lists(st.sampled_from(["granted", "provisional", "denied", "unknown"]), max_size=3)
POLICIES = st.builds(
    PermissionSettings,
    decline_cooldown_days=st.integers(0, 40),
    max_soft_asks=st.integers(0, 5),
    settings_prompt_cooldown_days=st.integers(0, 40),
    max_settings_prompts=st.integers(0, 4),
)


@EXAMPLES
@given(
    history=HISTORIES,
    devices=DEVICES,
    policy=POLICIES,
    decline_at=instants(),
    during_cooldown=st.booleans(),
    fraction=st.floats(0, 1, exclude_max=True),
    later=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=3 * 365)),
)
def test_no_soft_ask_after_a_decline_until_a_new_value_moment(
    *,
    history: list[PermissionEvent],
    devices: list[str],
    policy: PermissionSettings,
    decline_at: datetime,
    during_cooldown: bool,
    fraction: float,
    later: timedelta,
) -> None:
    # Value moments at or after the decline are removed; everything else, later declines,
    # answers and soft asks included, stays. The decline is given last, so it also comes after
    # any event at the same instant.
    events = [
        event
        for event in history
        if event.kind != Kind.VALUE_MOMENT or event.at.astimezone(UTC) < decline_at.astimezone(UTC)
    ]
    events.append(declined(decline_at))
    if during_cooldown:
        cooldown = timedelta(days=policy.decline_cooldown_days)
        # (timedelta * float rounds to the microsecond, hence the min)
        elapsed = min(cooldown * fraction, max(cooldown - MICROSECOND, timedelta(0)))
    else:
        elapsed = later

    decision = soft_ask_decision(decline_at + elapsed, events, devices, policy)

    assert decision.action != SoftAskAction.SHOW_SOFT_ASK


@EXAMPLES
@given(history=HISTORIES, devices=DEVICES, policy=POLICIES, now=instants(low=-40))
def test_retry_at_is_ahead_and_asking_then_moves_on(
    *,
    history: list[PermissionEvent],
    devices: list[str],
    policy: PermissionSettings,
    now: datetime,
) -> None:
    decision = soft_ask_decision(now, history, devices, policy)
    if decision.retry_at is None:
        return
    assert decision.action == SoftAskAction.NONE
    assert decision.retry_at > now
    assert decision.retry_at.tzinfo is UTC

    again = soft_ask_decision(decision.retry_at, history, devices, policy)

    assert again.retry_at != decision.retry_at
