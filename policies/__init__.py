"""pushgate's policy engine: whether, and when, a notification may reach a user.

Pure decision logic: no I/O, no clock reads (`now` is always a parameter, an aware datetime),
imports neither `gateway` nor `tokens`. The gateway classifies a request with `classify`,
fixes its expiry with `resolve_expiry`, counts recent notifications from `cap_window_start`,
and calls `decide` at acceptance and again at release; the answer is a value:
`Send()`, `Defer(until, reason)` or `Drop(reason)`; `decide_and_explain` also says which rule
made it and in which local time. A send scheduled in the user's local time is parsed with
`parse_send_at_local`, turned into its instant with `schedule_local` (checked against the
horizon with `check_schedule`), and read again where the user is at release with
`follow_user`; `decide` takes the resulting instant as `scheduled_at`.
`soft_ask_decision` answers the question before all of that, whether an app may ask the user
for notification permission now, the same way.

Instants returned by this package are aware datetimes in UTC.
"""

from policies.classification import Classification, TierConflict, classify
from policies.decisions import Decision, Defer, DeferReason, Drop, DropReason, Send
from policies.explanation import Explanation, Rule
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
from policies.rules import cap_window_start, decide, decide_and_explain, resolve_expiry
from policies.scheduling import (
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
from policies.settings import (
    FrequencyCap,
    PolicySettings,
    QuietWindow,
    UserFacts,
    ZoneSource,
    locate_user,
    resolve_timezone,
)
from policies.tiers import Tier
from policies.timezones import is_valid_timezone

__all__ = [
    "Classification",
    "Decision",
    "Defer",
    "DeferReason",
    "Drop",
    "DropReason",
    "Explanation",
    "FrequencyCap",
    "FunnelStep",
    "LocalSchedule",
    "LocalSendTime",
    "OsPromptResult",
    "PermissionEvent",
    "PermissionEventKind",
    "PermissionSettings",
    "PolicySettings",
    "QuietWindow",
    "Rule",
    "Send",
    "SoftAskAction",
    "SoftAskDecision",
    "SoftAskReason",
    "Tier",
    "TierConflict",
    "UserFacts",
    "ZoneSource",
    "cap_window_start",
    "check_schedule",
    "classify",
    "decide",
    "decide_and_explain",
    "event_result_problem",
    "first_instant_at",
    "follow_user",
    "funnel_step",
    "is_quiet",
    "is_valid_timezone",
    "locate_user",
    "next_allowed_instant",
    "next_quiet_instant",
    "parse_send_at_local",
    "release_instant",
    "release_offset",
    "reresolve_send_at_local",
    "resolve_expiry",
    "resolve_send_at_local",
    "resolve_timezone",
    "schedule_local",
    "scheduled_local_datetime",
    "soft_ask_decision",
]
