"""``pushgate notifications explain``: why a notification went (or did not go) when it did, told
the way an operator paged at 3 a.m. wants to read it.

One sentence per decision the policy made, oldest first, in the user's local time (the zone
each decision read, and where that zone came from), then one for where the notification stands
now. Built only from what the notification row records (its ``decision`` column keeps every
decision, the latest with the earlier ones under ``earlier``), so it needs no configuration
and explains old notifications the same way after the settings changed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from gateway.models import Delivery, Notification
from policies.timezones import ZoneDatabase

_TO = "\N{EN DASH}"  # a window reads as a range with it; with a hyphen, as a subtraction
_SOURCES = {
    "preferences": "from the user's preferences",
    "device": "reported by the user's most recently seen device",
    "default": "the gateway's default: the user set none and no device reported one",
}
_CONSENT = {
    "opted_out": "the user opted out of {tier} notifications",
    "not_opted_in": "the user has not opted in to {tier} notifications",
}


def decisions_of(notification: Notification) -> list[dict[str, Any]]:
    """Every decision recorded for ``notification``, oldest first (empty for a notification
    stored before decisions were recorded)."""
    record = notification.decision
    if record is None:
        return []
    latest = {name: value for name, value in record.items() if name != "earlier"}
    return [*record.get("earlier", []), latest]


def explain_notification(
    notification: Notification, deliveries: Sequence[Delivery], zones: ZoneDatabase
) -> list[str]:
    """The story of ``notification``: a heading, one sentence per decision, and where it is
    now. ``zones`` reads stored instants in the user's zone."""
    decisions = decisions_of(notification)
    lines = [_heading(notification)]
    if not decisions:
        lines.append(
            "No decision is on record: it was stored before pushgate recorded them. "
            f"Status {notification.status}, reason {notification.reason or 'none'}."
        )
    previous: dict[str, Any] | None = None
    for decision in decisions:
        lines.append(_decision_sentence(notification, decision, previous, zones))
        previous = decision
    lines.append(_where_it_stands(notification, deliveries, decisions, zones))
    return lines


def _heading(notification: Notification) -> str:
    category = f", category {notification.category}" if notification.category else ""
    schedule = ""
    if notification.send_at_local:
        schedule = f"; scheduled for {notification.send_at_local} in the user's local time"
    elif notification.send_at:
        schedule = f"; scheduled for {_utc(notification.send_at)}"
    return (
        f"Notification {notification.id} to user {notification.user_id} (app "
        f"{notification.app}): {notification.tier}{category}, from key {notification.sender}, "
        f"created {_utc(notification.created_at)}{schedule}."
    )


def _decision_sentence(
    notification: Notification,
    decision: dict[str, Any],
    previous: dict[str, Any] | None,
    zones: ZoneDatabase,
) -> str:
    """One decision: the first with its whole context (zone, where it came from, the user's
    clock); a release with its time, and the zone again only when the user moved."""
    local = datetime.fromisoformat(decision["local_time"])
    zone = decision["zone"]
    where = f"{zone} ({_SOURCES.get(decision['zone_source'], decision['zone_source'])})"
    outcome, detail, tail = _what_it_decided(notification, decision, local, zones)
    if previous is None:
        if decision["rule"] == "quiet_hours":
            context = f" in {where}; it was {_hhmm(local)} there ({_utc(local)})"
        else:
            context = f"; it was {_hhmm(local)} in {where} at {_utc(local)}"
        return f"{outcome}: {detail}{context}{tail}."
    moved = f", the user now in {where}" if zone != previous["zone"] else ""
    # a schedule decided again at release has moved with its user
    verb = "rescheduled" if decision["rule"] == "scheduled" else outcome.lower()
    return f"Released {_hhmm(local)} local ({_utc(local)}){moved}: {verb}: {detail}{tail}."


def _what_it_decided(
    notification: Notification, decision: dict[str, Any], local: datetime, zones: ZoneDatabase
) -> tuple[str, str, str]:
    """(what happened, the rule's detail, what follows) for one decision."""
    rule, zone, status = decision["rule"], decision["zone"], decision.get("status")
    window = decision.get("quiet_hours")
    quiet = f"quiet hours {window['start']}{_TO}{window['end']}" if window else ""
    until = _local(decision.get("deliver_at"), zone, local, zones)
    expires = _local(notification.expires_at, zone, local, zones)
    tier = notification.tier
    if rule == "quiet_hours" and status == "deferred":
        return (
            "Deferred",
            quiet,
            f", so it waits until {until} local (the end of the quiet hours plus this "
            "user's share of the release spread)",
        )
    if rule == "quiet_hours":
        return "Dropped", quiet, f", and it would expire ({expires} local) before they end"
    if rule == "scheduled":
        return (
            "Scheduled",
            f"it waits until {until} local",
            ". Quiet hours and caps are checked when it is released",
        )
    if rule == "consent":
        reason = _CONSENT.get(decision.get("reason") or "", "the user gave no consent")
        return "Dropped", reason.format(tier=tier), ""
    if rule == "devices":
        return (
            "Dropped",
            f"the user had no active device for app {notification.app} that allows notifications",
            "",
        )
    if rule == "expiry":
        if _before(notification.expires_at, local):
            return "Expired", f"it may not be delivered after {expires} local", ""
        return "Expired", f"it would expire ({expires} local) before its scheduled moment", ""
    if rule == "frequency_cap":
        return (
            "Dropped",
            f"the user already had as many {tier} notifications as the frequency cap allows "
            "in its window",
            f" (outside {quiet})" if quiet else "",
        )
    return "Queued for delivery", f"outside {quiet}" if quiet else f"{tier} ignores quiet hours", ""


def _where_it_stands(
    notification: Notification,
    deliveries: Sequence[Delivery],
    decisions: list[dict[str, Any]],
    zones: ZoneDatabase,
) -> str:
    zone = decisions[-1]["zone"] if decisions else "UTC"
    reference = (
        datetime.fromisoformat(decisions[-1]["local_time"])
        if decisions
        else notification.created_at
    )
    status = notification.status
    if status == "deferred":
        due = _local(notification.deliver_at, zone, reference, zones)
        at = _utc(notification.deliver_at)
        return f"Now: deferred ({notification.reason}), due {due} local ({at})."
    if status == "dropped" and notification.reason == "superseded":
        return (
            f"Now: dropped, superseded at {_utc(notification.updated_at)} by a newer "
            f"notification with collapse key {notification.collapse_key!r} for the same user "
            "and app."
        )
    if status == "cancelled":
        return f"Now: cancelled at {_utc(notification.updated_at)}."
    if status in ("dropped", "expired") and (
        not decisions or decisions[-1].get("status") == status
    ):
        return f"Now: {status} ({notification.reason}); nothing was sent."
    outcomes = Counter(delivery.status for delivery in deliveries)
    counted = ", ".join(f"{count} {name}" for name, count in sorted(outcomes.items()))
    problems = sorted(
        {f"{d.platform}: {d.error}" for d in deliveries if d.error and d.status != "sent"}
    )
    detail = f" ({'; '.join(problems)})" if problems else ""
    if status == "queued":
        return f"Now: queued; deliveries {counted or 'none yet'}{detail}."
    if status == "expired":
        return (
            f"Now: expired at {_utc(notification.expires_at)} before every delivery could be "
            f"made; deliveries {counted}{detail}."
        )
    return f"Now: {status}; deliveries {counted or 'none'}{detail}."


def _hhmm(local: datetime) -> str:
    return local.strftime("%H:%M")


def _utc(instant: datetime | None) -> str:
    if instant is None:
        return "-"
    return instant.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _local(
    instant: datetime | str | None, zone: str, reference: datetime, zones: ZoneDatabase
) -> str:
    """``instant`` on the clock of ``zone``: "HH:MM", with the date when it is another day
    than ``reference`` there."""
    if instant is None:
        return "-"
    if isinstance(instant, str):
        instant = datetime.fromisoformat(instant)
    loaded = zones.get(zone)
    if loaded is None:
        return _utc(instant)
    local = instant.astimezone(loaded)
    if local.date() == reference.astimezone(loaded).date():
        return _hhmm(local)
    return local.strftime("%Y-%m-%d %H:%M")


def _before(instant: datetime, reference: datetime) -> bool:
    return instant <= reference
