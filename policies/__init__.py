"""pushgate's policy engine: whether, and when, a notification may reach a user (SPEC §3).

Pure decision logic: no I/O, no clock reads (`now` is always a parameter, an aware datetime),
imports neither `gateway` nor `tokens`. The gateway classifies a request with `classify`,
fixes its expiry with `resolve_expiry`, counts recent notifications from `cap_window_start`,
and calls `decide` at acceptance and again at release; the answer is a value:
`Send()`, `Defer(until)` or `Drop(reason)`. `soft_ask_decision` answers the question before
all of that, whether an app may ask the user for notification permission now, the same way.

Instants returned by this package are aware datetimes in UTC.
"""

from policies.classification import Classification, TierConflict, classify
from policies.decisions import Decision, Defer, Drop, DropReason, Send
from policies.permission import (
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
from policies.quiet_hours import (
    is_quiet,
    next_allowed_instant,
    next_quiet_instant,
    release_instant,
    release_offset,
)
from policies.rules import cap_window_start, decide, resolve_expiry
from policies.settings import (
    FrequencyCap,
    PolicySettings,
    QuietWindow,
    UserFacts,
    resolve_timezone,
)
from policies.tiers import Tier
from policies.timezones import is_valid_timezone

__all__ = [
    "Classification",
    "Decision",
    "Defer",
    "Drop",
    "DropReason",
    "FrequencyCap",
    "FunnelStep",
    "OsPromptResult",
    "PermissionEvent",
    "PermissionEventKind",
    "PermissionSettings",
    "PolicySettings",
    "QuietWindow",
    "Send",
    "SoftAskAction",
    "SoftAskDecision",
    "SoftAskReason",
    "Tier",
    "TierConflict",
    "UserFacts",
    "cap_window_start",
    "classify",
    "decide",
    "event_result_problem",
    "funnel_step",
    "is_quiet",
    "is_valid_timezone",
    "next_allowed_instant",
    "next_quiet_instant",
    "release_instant",
    "release_offset",
    "resolve_expiry",
    "resolve_timezone",
    "soft_ask_decision",
]
