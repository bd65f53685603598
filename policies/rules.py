"""The policy as one function, used when a notification is accepted and when it is released.

Also the two pieces of arithmetic the gateway needs around it: when a notification expires
and where a tier's rolling cap window starts, both done in UTC.
"""

from datetime import UTC, datetime, timedelta

from policies.decisions import Decision, DeferReason, Drop, DropReason, Send
from policies.explanation import Explanation, Rule
from policies.quiet_hours import as_utc, quiet_stretch, spread_release
from policies.settings import PolicySettings, UserFacts, locate_user
from policies.tiers import Tier

__all__ = ["cap_window_start", "decide", "decide_and_explain", "resolve_expiry"]

# Decisions are immutable values; sharing them saves an allocation per decision. Module
# constants rather than `Tier.X` / `DropReason.X` / `Rule.X` in the body: enum attribute
# lookups are a measurable share of a decision (see bench/bench_policy.py).
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
_QUIET_HOURS = DeferReason.QUIET_HOURS
_SCHEDULED = DeferReason.SCHEDULED
_BY_CONSENT = Rule.CONSENT
_BY_DEVICES = Rule.DEVICES
_BY_EXPIRY = Rule.EXPIRY
_BY_SCHEDULE = Rule.SCHEDULED
_BY_QUIET_HOURS = Rule.QUIET_HOURS
_BY_FREQUENCY_CAP = Rule.FREQUENCY_CAP
_BY_SENDING = Rule.SEND
_UTC = UTC
# Builds an Explanation without the named tuple's Python-level __new__: it is built for every
# decision, and this halves what it costs.
_explained = tuple.__new__


def decide(
    now: datetime,
    tier: Tier,
    expires_at: datetime,
    user: UserFacts,
    settings: PolicySettings,
    *,
    scheduled_at: datetime | None = None,
) -> Decision:
    """The decision of :func:`decide_and_explain`, without its explanation."""
    return decide_and_explain(now, tier, expires_at, user, settings, scheduled_at=scheduled_at)[0]


def decide_and_explain(
    now: datetime,
    tier: Tier,
    expires_at: datetime,
    user: UserFacts,
    settings: PolicySettings,
    *,
    scheduled_at: datetime | None = None,
) -> tuple[Decision, Explanation]:
    """Evaluate the rules in order for a notification of `tier` to `user` at `now`; return
    the decision and how it was reached.

    The first rule that ends the notification gives the decision:
    consent (`Drop(OPTED_OUT)` / `Drop(NOT_OPTED_IN)`), devices (`Drop(NO_ACTIVE_DEVICES)`),
    expiry (`expires_at <= now`: `Drop(EXPIRED)`), the caller's schedule (`scheduled_at`
    after `now`: `Defer(scheduled_at, "scheduled")`, or `Drop(EXPIRED)` when it would expire
    by then), quiet hours for behavioral and promotional (`Defer(until)` with `until` in UTC
    and strictly after `now`, or `Drop(EXPIRES_DURING_QUIET_HOURS)` when it would expire
    first), frequency cap (`Drop(FREQUENCY_CAPPED)`); otherwise `Send()`. The cap is not
    checked when deferring: the notification is checked again, caps included, when it is
    released. A `scheduled_at` at or before `now` is no schedule: the rules after it decide.

    The explanation names that rule, the user's zone and where it came from, the instant
    `now`, and the quiet hours when they were checked.

    `now`, `expires_at` and `scheduled_at` must be aware; a naive one raises `ValueError`.
    """
    # The gateway passes UTC instants: skipping the call for them pays for the explanation.
    now_utc = now if now.tzinfo is _UTC else as_utc(now, "now")
    expires_utc = expires_at if expires_at.tzinfo is _UTC else as_utc(expires_at, "expires_at")
    zone, source = locate_user(user, settings)

    if tier == _BEHAVIORAL:
        opted_in = user.behavioral_opt_in
        if opted_in is None:
            opted_in = settings.behavioral_default_opt_in
        if not opted_in:
            return _OPTED_OUT, _explained(Explanation, (_BY_CONSENT, zone, source, now_utc, None))
    elif tier == _PROMOTIONAL:
        if user.promotional_opt_in is not True:
            return _NOT_OPTED_IN, _explained(
                Explanation, (_BY_CONSENT, zone, source, now_utc, None)
            )
    elif tier != _TRANSACTIONAL:
        raise ValueError(f"unknown tier {tier!r}")

    if user.active_devices <= 0:
        return _NO_ACTIVE_DEVICES, _explained(
            Explanation, (_BY_DEVICES, zone, source, now_utc, None)
        )

    if expires_utc <= now_utc:
        return _EXPIRED, _explained(Explanation, (_BY_EXPIRY, zone, source, now_utc, None))

    if scheduled_at is not None:
        scheduled_utc = as_utc(scheduled_at, "scheduled_at")
        if scheduled_utc > now_utc:
            if expires_utc <= scheduled_utc:  # it would wait only to expire
                return _EXPIRED, _explained(Explanation, (_BY_EXPIRY, zone, source, now_utc, None))
            # A campaign schedules a zone's users for the same instant: share the values.
            deferral = settings.memo.deferral(scheduled_utc, _SCHEDULED)
            return deferral, _explained(Explanation, (_BY_SCHEDULE, zone, source, now_utc, None))

    if tier == _TRANSACTIONAL:
        # never deferred, never capped (only counted)
        return _SEND, _explained(Explanation, (_BY_SENDING, zone, source, now_utc, None))

    window = user.quiet_hours or settings.quiet_hours
    memo = settings.memo
    stretch = quiet_stretch(now_utc, zone, window.start, window.end, memo)
    if stretch is not None:
        deliver_at = spread_release(stretch, user.user_id, settings.release_spread_minutes, memo)
        if expires_utc <= deliver_at:
            return _EXPIRES_DURING_QUIET_HOURS, _explained(
                Explanation, (_BY_QUIET_HOURS, zone, source, now_utc, window)
            )
        # A night's deferrals in one zone share a few thousand release instants: share the
        # values too (see policies.memo).
        deferral = memo.deferral(deliver_at, _QUIET_HOURS)
        return deferral, _explained(Explanation, (_BY_QUIET_HOURS, zone, source, now_utc, window))

    cap = settings.frequency_caps.get(tier)
    if cap is not None and user.recent_counts.get(tier, 0) >= cap.max:
        return _FREQUENCY_CAPPED, _explained(
            Explanation, (_BY_FREQUENCY_CAP, zone, source, now_utc, window)
        )
    return _SEND, _explained(Explanation, (_BY_SENDING, zone, source, now_utc, window))


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
    for a scheduled send, pass its scheduled instant as `now`: its time to live starts there.
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
