"""pushgate's policy engine: whether, and when, a notification may reach a user.

Pure decision logic: no I/O, no clock reads (`now` is always a parameter, an aware datetime),
imports neither `gateway` nor `tokens`. The gateway classifies a request with `classify`,
fixes its expiry with `resolve_expiry`, counts recent notifications from `cap_window_start`,
and calls `decide` at acceptance and again at release; the answer is a value:
`Send()`, `Defer(until)` or `Drop(reason)`. A send scheduled in the user's local time is
parsed with `parse_send_at_local` and turned into its instant with `resolve_send_at_local`.
`soft_ask_decision` answers the question before all of that, whether an app may ask the user
for notification permission now, the same way.

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
from policies.scheduling import (
    LocalSendTime,
    first_instant_at,
    parse_send_at_local,
    reresolve_send_at_local,
    resolve_send_at_local,
    scheduled_local_datetime,
)
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
    "LocalSendTime",
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
    "first_instant_at",
    "funnel_step",
    "is_quiet",
    "is_valid_timezone",
    "next_allowed_instant",
    "next_quiet_instant",
    "parse_send_at_local",
    "release_instant",
    "release_offset",
    "reresolve_send_at_local",
    "resolve_expiry",
    "resolve_send_at_local",
    "resolve_timezone",
    "scheduled_local_datetime",
    "soft_ask_decision",
]
