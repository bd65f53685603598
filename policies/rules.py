"""The policy as one function, used when a notification is accepted and when it is released.

Also the two pieces of arithmetic the gateway needs around it: when a notification expires
(rule 5) and where a tier's rolling cap window starts (rule 7), both done in UTC.
"""

from datetime import datetime, timedelta

from policies.decisions import Decision, Drop, DropReason, Send
from policies.quiet_hours import as_utc, quiet_stretch, spread_release
from policies.settings import PolicySettings, UserFacts, resolve_zone
from policies.tiers import Tier

__all__ = ["cap_window_start", "decide", "resolve_expiry"]

# Decisions are immutable values; sharing them saves an allocation per decision. Module
# constants rather than `Tier.X` / `DropReason.X` in the body: enum attribute lookups are a
# measurable share of a decision (see bench/bench_policy.py).
_SEND = Send()
_OPTED_OUT = Drop(DropReason.OPTED_OUT)
_NOT_OPTED_IN = Drop(DropReason.NOT_OPTED_IN)
_NO_ACTIVE_DEVICES = Drop(DropReason.NO_ACTIVE_DEVICES)
_EXPIRED = Drop(DropReason.EXPIRED)
_EXPIRES_DURING_QUIET_HOURS = Drop(DropReason.EXPIRES_DURING_QUIET_HOURS)
_FREQUENCY_CAPPED = Drop(DropReason.FREQUENCY_CAPPED)
_TRANSACTIONAL = Tier.TRANSACTIONAL
_BEHAVIORAL = Tier.BEHAVIORAL
_PROMOTIONAL = Tier.PROMOTIONAL


def decide(
    now: datetime, tier: Tier, expires_at: datetime, user: UserFacts, settings: PolicySettings
) -> Decision:
    """Evaluate the policy in order for a notification of `tier` to `user` at `now`.

    The first rule that ends the notification gives the decision:
    consent (`Drop(OPTED_OUT)` / `Drop(NOT_OPTED_IN)`), devices (`Drop(NO_ACTIVE_DEVICES)`),
    expiry (`expires_at <= now`: `Drop(EXPIRED)`), quiet hours for behavioral and promotional
    (`Defer(until)` with `until` in UTC and strictly after `now`, or
    `Drop(EXPIRES_DURING_QUIET_HOURS)` when it would expire first), frequency cap
    (`Drop(FREQUENCY_CAPPED)`); otherwise `Send()`. The cap is not checked when deferring: the
    notification is checked again, caps included, when it is released.

    `now` and `expires_at` must be aware; a naive one raises `ValueError`.
    """
    now_utc = as_utc(now, "now")
    expires_utc = as_utc(expires_at, "expires_at")

    if tier == _BEHAVIORAL:
        opted_in = user.behavioral_opt_in
        if opted_in is None:
            opted_in = settings.behavioral_default_opt_in
        if not opted_in:
            return _OPTED_OUT
    elif tier == _PROMOTIONAL:
        if user.promotional_opt_in is not True:
            return _NOT_OPTED_IN
    elif tier != _TRANSACTIONAL:
        raise ValueError(f"unknown tier {tier!r}")

    if user.active_devices <= 0:
        return _NO_ACTIVE_DEVICES

    if expires_utc <= now_utc:
        return _EXPIRED

    if tier == _TRANSACTIONAL:
        return _SEND  # never deferred, never capped (only counted)

    window = user.quiet_hours or settings.quiet_hours
    memo = settings.memo
    stretch = quiet_stretch(now_utc, resolve_zone(user, settings), window.start, window.end, memo)
    if stretch is not None:
        deliver_at = spread_release(stretch, user.user_id, settings.release_spread_minutes, memo)
        if expires_utc <= deliver_at:
            return _EXPIRES_DURING_QUIET_HOURS
        # A night's deferrals in one zone share a few thousand release instants: share the
        # values too (see policies.memo).
        return memo.deferral(deliver_at, "quiet_hours")

    cap = settings.frequency_caps.get(tier)
    if cap is not None and user.recent_counts.get(tier, 0) >= cap.max:
        return _FREQUENCY_CAPPED
    return _SEND


def resolve_expiry(
    now: datetime,
    tier: Tier,
    settings: PolicySettings,
    *,
    ttl_seconds: int | None = None,
    expires_at: datetime | None = None,
) -> datetime:
    """The notification's `expires_at` in UTC.

    The request's `expires_at`, else `now + ttl_seconds`, else `now` + the tier's default TTL;
    seconds are real elapsed seconds, also across a DST change in `now`'s zone. The result may
    already be past: the caller answers 422 when it is `<= now`. Giving both `ttl_seconds`
    and `expires_at`, or a naive datetime, raises `ValueError`.
    """
    now_utc = as_utc(now, "now")
    if expires_at is not None:
        if ttl_seconds is not None:
            raise ValueError("give ttl_seconds or expires_at, not both")
        return as_utc(expires_at, "expires_at")
    if ttl_seconds is None:
        ttl_seconds = settings.default_ttl_seconds[tier]
    return now_utc + timedelta(seconds=ttl_seconds)


def cap_window_start(now: datetime, tier: Tier, settings: PolicySettings) -> datetime | None:
    """Start (exclusive) of `tier`'s rolling cap window ending at `now`, in UTC.

    The gateway counts the user's notifications of `tier` after this instant into
    `UserFacts.recent_counts`. None when the tier has no cap (transactional never has one).
    """
    now_utc = as_utc(now, "now")
    cap = settings.frequency_caps.get(tier)
    if cap is None or tier == _TRANSACTIONAL:
        return None
    return now_utc - timedelta(seconds=cap.window_seconds)
