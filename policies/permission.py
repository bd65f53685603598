"""When an app may ask a user for notification permission: its own soft ask, or the Settings screen.

The OS prompt can be shown once per install and a "no" there is nearly final, so apps first show
their own "soft ask" screen and trigger the OS prompt only after a "yes" on it. Users who denied
the OS prompt can only turn notifications on in the system Settings, so the app may show a
screen pointing there instead. `soft_ask_decision` says which of the two, if either, the app may
show now, from the user's permission history for one app and platform and the permission their
devices report. The answer is a value, `SoftAskDecision(action, reason, retry_at)`.

How the history is read. Events are put in order of their instant, equal instants in the order
given (so the caller passes them in the order they were recorded); "last" and "after" refer to
that order. Events dated after `now` are counted like any other: the API accepts events up to
five minutes ahead to allow for device clocks running fast, and such an event has already
happened. Ignoring it would let a decline or a denial that the app just reported go unseen for
those minutes, and the answer would be to ask again the user who just said no.

Cooldowns are real elapsed time, computed in UTC: fourteen days are 14 x 24 hours, also across
a DST change in the zone the instants were given in. Instants returned are aware and in UTC.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from types import MappingProxyType

from policies.quiet_hours import as_utc

__all__ = [
    "FunnelStep",
    "OsPromptResult",
    "PermissionEvent",
    "PermissionEventKind",
    "PermissionSettings",
    "SoftAskAction",
    "SoftAskDecision",
    "SoftAskReason",
    "event_result_problem",
    "funnel_step",
    "soft_ask_decision",
]

# Ten years: far beyond any sensible cooldown, and far enough from `datetime.max` that adding
# it to a real instant cannot overflow.
_MAX_COOLDOWN_DAYS = 3650


class PermissionEventKind(StrEnum):
    """What the app reports about a user's way to notification permission."""

    VALUE_MOMENT = "value_moment"
    """The user reached something worth being notified about: a good moment to ask."""
    SOFT_ASK_SHOWN = "soft_ask_shown"
    SOFT_ASK_ACCEPTED = "soft_ask_accepted"
    SOFT_ASK_DECLINED = "soft_ask_declined"
    OS_PROMPT_SHOWN = "os_prompt_shown"
    OS_PROMPT_RESULT = "os_prompt_result"
    """The user answered the OS prompt; the only kind that carries a `result`."""
    SETTINGS_PROMPT_SHOWN = "settings_prompt_shown"
    """The app showed its "turn notifications on in Settings" screen."""


class OsPromptResult(StrEnum):
    """The user's answer to the OS permission prompt."""

    GRANTED = "granted"
    DENIED = "denied"
    PROVISIONAL = "provisional"
    """iOS quiet delivery without an explicit yes: the user may still be asked for more."""


class SoftAskAction(StrEnum):
    """What the app may show now."""

    SHOW_SOFT_ASK = "show_soft_ask"
    SHOW_SETTINGS_PROMPT = "show_settings_prompt"
    NONE = "none"


class SoftAskReason(StrEnum):
    """Why `SoftAskDecision.action` is what it is."""

    ELIGIBLE = "eligible"
    """The action may be shown now."""
    ALREADY_GRANTED = "already_granted"
    """A device of the user has permission: nothing to ask."""
    MAX_SETTINGS_PROMPTS = "max_settings_prompts"
    """Denied at the OS level, and the Settings screen was shown as often as allowed."""
    OS_DENIED = "os_denied"
    """Denied at the OS level; the Settings screen may come later (after its cooldown, after a
    new value moment)."""
    MAX_SOFT_ASKS = "max_soft_asks"
    """The soft ask was shown as often as allowed."""
    NO_VALUE_MOMENT = "no_value_moment"
    """The user has not reached anything worth being notified about yet."""
    DECLINED_RECENTLY = "declined_recently"
    """The user declined the soft ask less than the cooldown ago."""
    AWAITING_VALUE_MOMENT = "awaiting_value_moment"
    """The cooldown after a decline is over; the next ask waits for a new value moment."""
    OS_PROMPT_PENDING = "os_prompt_pending"
    """The user said yes to the soft ask and the OS prompt's answer has not been reported."""


class FunnelStep(StrEnum):
    """The steps of the opt-in funnel, each counted as distinct users."""

    VALUE_MOMENT = "value_moment"
    SOFT_ASK_SHOWN = "soft_ask_shown"
    SOFT_ASK_ACCEPTED = "soft_ask_accepted"
    SOFT_ASK_DECLINED = "soft_ask_declined"
    OS_PROMPT_SHOWN = "os_prompt_shown"
    OS_GRANTED = "os_granted"
    OS_DENIED = "os_denied"
    OS_PROVISIONAL = "os_provisional"
    SETTINGS_PROMPT_SHOWN = "settings_prompt_shown"
    RE_ENABLED = "re_enabled"
    """A device went from `denied` to `granted`: read from devices, no event maps to it."""


_OS_RESULT_STEPS: Mapping[OsPromptResult, FunnelStep] = MappingProxyType(
    {
        OsPromptResult.GRANTED: FunnelStep.OS_GRANTED,
        OsPromptResult.DENIED: FunnelStep.OS_DENIED,
        OsPromptResult.PROVISIONAL: FunnelStep.OS_PROVISIONAL,
    }
)


def event_result_problem(kind: PermissionEventKind, result: OsPromptResult | None) -> str | None:
    """What is wrong with giving `result` for an event of `kind`, or None when nothing is.

    An `os_prompt_result` always carries the user's answer and no other kind carries one. The
    message is meant for the caller (the API answers 422 with it).
    """
    if kind == PermissionEventKind.OS_PROMPT_RESULT:
        if result is None:
            return "os_prompt_result needs a result: granted, denied or provisional"
        return None
    if result is not None:
        return f"{kind} takes no result; only os_prompt_result does"
    return None


def funnel_step(kind: PermissionEventKind, result: OsPromptResult | None) -> FunnelStep:
    """The funnel step an event of `kind` (with `result`, for an OS prompt's answer) counts for.

    An `os_prompt_result` counts as `os_granted`, `os_denied` or `os_provisional`; every other
    kind as the step of the same name. A kind and result that do not go together (see
    `event_result_problem`) raise `ValueError`.
    """
    problem = event_result_problem(kind, result)
    if problem is not None:
        raise ValueError(problem)
    if result is not None:
        return _OS_RESULT_STEPS[result]
    return FunnelStep(kind)


@dataclass(frozen=True, slots=True)
class PermissionEvent:
    """One event of a user's permission history for an app and platform, at aware instant `at`.

    `result` is the user's answer, given for `os_prompt_result` and only for it; a mismatch, or
    a naive `at`, raises `ValueError`.
    """

    kind: PermissionEventKind
    at: datetime
    result: OsPromptResult | None = None

    def __post_init__(self) -> None:
        as_utc(self.at, "at")
        problem = event_result_problem(self.kind, self.result)
        if problem is not None:
            raise ValueError(problem)


@dataclass(frozen=True, slots=True)
class PermissionSettings:
    """Operator knobs for the soft ask (`[permission]`). Invalid values raise `ValueError`."""

    decline_cooldown_days: int = 14
    """After a declined soft ask, how long before it may be shown again."""
    max_soft_asks: int = 3
    """How many times the soft ask may be shown at most, ever."""
    settings_prompt_cooldown_days: int = 30
    """After the Settings screen was shown, how long before it may be shown again."""
    max_settings_prompts: int = 2
    """How many times the Settings screen may be shown at most, ever."""

    def __post_init__(self) -> None:
        for name in ("decline_cooldown_days", "settings_prompt_cooldown_days"):
            days = getattr(self, name)
            if not 0 <= days <= _MAX_COOLDOWN_DAYS:
                raise ValueError(f"{name}: must be between 0 and {_MAX_COOLDOWN_DAYS}, got {days}")
        for name in ("max_soft_asks", "max_settings_prompts"):
            count = getattr(self, name)
            if count < 0:
                raise ValueError(f"{name}: must be >= 0, got {count}")


@dataclass(frozen=True, slots=True)
class SoftAskDecision:
    """What the app may show now, why, and when asking again may change the answer.

    `retry_at` (aware, UTC, after `now`) is set only while a cooldown runs: the answer will not
    change before then unless something new happens. It is None when only something new (a
    value moment, the OS prompt's answer, a change of the device's permission) can change it.
    """

    action: SoftAskAction
    reason: SoftAskReason
    retry_at: datetime | None = None


_DEVICE_PERMISSIONS = frozenset({"granted", "provisional", "denied", "unknown"})
_GRANTED = "granted"
_DENIED = "denied"


@dataclass(frozen=True, slots=True)
class _History:
    """A permission history in order: where the last event of each kind is, and how many."""

    instants: tuple[datetime, ...]
    """In UTC, in order."""
    last_index: Mapping[PermissionEventKind, int]
    counts: Mapping[PermissionEventKind, int]
    last_result: OsPromptResult | None
    last_denial_index: int | None

    @classmethod
    def of(cls, events: Iterable[PermissionEvent]) -> "_History":
        timed = [(as_utc(event.at, "at"), event) for event in events]
        # sorted() is stable: events at the same instant keep the order they were given in.
        ordered = sorted(timed, key=lambda entry: entry[0])
        last_index: dict[PermissionEventKind, int] = {}
        counts: dict[PermissionEventKind, int] = {}
        last_result = None
        last_denial_index = None
        for index, (_, event) in enumerate(ordered):
            last_index[event.kind] = index
            counts[event.kind] = counts.get(event.kind, 0) + 1
            if event.kind == PermissionEventKind.OS_PROMPT_RESULT:
                last_result = event.result
                if event.result == OsPromptResult.DENIED:
                    last_denial_index = index
        return cls(
            instants=tuple(instant for instant, _ in ordered),
            last_index=last_index,
            counts=counts,
            last_result=last_result,
            last_denial_index=last_denial_index,
        )

    def last(self, kind: PermissionEventKind) -> int | None:
        """Position of the last event of `kind`, or None when there is none."""
        return self.last_index.get(kind)

    def count(self, kind: PermissionEventKind) -> int:
        return self.counts.get(kind, 0)

    def has_after(self, kind: PermissionEventKind, position: int | None) -> bool:
        """True when an event of `kind` comes after `position` (after nothing, when None)."""
        last = self.last(kind)
        return last is not None and (position is None or last > position)


def soft_ask_decision(
    now: datetime,
    events: Iterable[PermissionEvent],
    device_permissions: Iterable[str],
    settings: PermissionSettings,
) -> SoftAskDecision:
    """Whether the app may show its soft ask, or its Settings screen, to the user at `now`.

    `events` are the user's permission events for one app and platform, in any order;
    `device_permissions` the permission (`granted`, `provisional`, `denied` or `unknown`) of
    each of the user's devices for that app and platform. The first rule that applies answers:

    1. A device has permission: `none`, `already_granted`.
    2. Denied at the OS level (the last OS prompt answer was `denied`, or a device's permission
       is): `show_settings_prompt`, `eligible`, once the Settings screen was shown fewer than
       `max_settings_prompts` times (else `none`, `max_settings_prompts`), its cooldown since it
       was last shown is over (else `none`, `os_denied`, `retry_at` = when it is over) and a
       value moment came after both the last denial and the last time it was shown (else
       `none`, `os_denied`).
    3. The soft ask was shown `max_soft_asks` times: `none`, `max_soft_asks`.
    4. No value moment yet: `none`, `no_value_moment`.
    5. The last decline of the soft ask is less than `decline_cooldown_days` ago: `none`,
       `declined_recently`, `retry_at` = when the cooldown is over. After it, a new value moment
       is needed: else `none`, `awaiting_value_moment`.
    6. The user accepted the soft ask and no OS prompt answer came after: `none`,
       `os_prompt_pending`.
    7. Otherwise `show_soft_ask`, `eligible`. A `provisional` permission (quiet delivery on iOS
       without an explicit yes) counts as not yet asked: such users may be asked for more.

    A naive `now` or an unknown device permission raises `ValueError`.
    """
    now_utc = as_utc(now, "now")
    permissions = set(device_permissions)
    unknown = permissions - _DEVICE_PERMISSIONS
    if unknown:
        raise ValueError(f"unknown device permission {sorted(unknown)[0]!r}")
    history = _History.of(events)

    if _GRANTED in permissions:
        return SoftAskDecision(SoftAskAction.NONE, SoftAskReason.ALREADY_GRANTED)

    if history.last_result == OsPromptResult.DENIED or _DENIED in permissions:
        return _settings_prompt_decision(now_utc, history, settings)

    if history.count(PermissionEventKind.SOFT_ASK_SHOWN) >= settings.max_soft_asks:
        return SoftAskDecision(SoftAskAction.NONE, SoftAskReason.MAX_SOFT_ASKS)

    if history.last(PermissionEventKind.VALUE_MOMENT) is None:
        return SoftAskDecision(SoftAskAction.NONE, SoftAskReason.NO_VALUE_MOMENT)

    decline = history.last(PermissionEventKind.SOFT_ASK_DECLINED)
    if decline is not None:
        cooldown_over = history.instants[decline] + timedelta(days=settings.decline_cooldown_days)
        if now_utc < cooldown_over:
            return SoftAskDecision(
                SoftAskAction.NONE, SoftAskReason.DECLINED_RECENTLY, retry_at=cooldown_over
            )
        if not history.has_after(PermissionEventKind.VALUE_MOMENT, decline):
            return SoftAskDecision(SoftAskAction.NONE, SoftAskReason.AWAITING_VALUE_MOMENT)

    accepted = history.last(PermissionEventKind.SOFT_ASK_ACCEPTED)
    if accepted is not None and not history.has_after(
        PermissionEventKind.OS_PROMPT_RESULT, accepted
    ):
        return SoftAskDecision(SoftAskAction.NONE, SoftAskReason.OS_PROMPT_PENDING)

    return SoftAskDecision(SoftAskAction.SHOW_SOFT_ASK, SoftAskReason.ELIGIBLE)


def _settings_prompt_decision(
    now_utc: datetime, history: _History, settings: PermissionSettings
) -> SoftAskDecision:
    """The answer for a user who denied permission at the OS level: the Settings screen or not."""
    if history.count(PermissionEventKind.SETTINGS_PROMPT_SHOWN) >= settings.max_settings_prompts:
        return SoftAskDecision(SoftAskAction.NONE, SoftAskReason.MAX_SETTINGS_PROMPTS)

    last_prompt = history.last(PermissionEventKind.SETTINGS_PROMPT_SHOWN)
    if last_prompt is not None:
        cooldown = timedelta(days=settings.settings_prompt_cooldown_days)
        cooldown_over = history.instants[last_prompt] + cooldown
        if now_utc < cooldown_over:
            return SoftAskDecision(
                SoftAskAction.NONE, SoftAskReason.OS_DENIED, retry_at=cooldown_over
            )

    # The value moment must follow the denial and the last Settings screen. When the denial is
    # known only from a device's permission, there is no event to date it: the device does not
    # say when it was denied, so only the Settings screen can be checked, and with neither any
    # value moment will do. Guessing a date would either never show the screen or show it to
    # someone who has not been back since.
    since = max(
        (position for position in (history.last_denial_index, last_prompt) if position is not None),
        default=None,
    )
    if not history.has_after(PermissionEventKind.VALUE_MOMENT, since):
        return SoftAskDecision(SoftAskAction.NONE, SoftAskReason.OS_DENIED)
    return SoftAskDecision(SoftAskAction.SHOW_SETTINGS_PROMPT, SoftAskReason.ELIGIBLE)
