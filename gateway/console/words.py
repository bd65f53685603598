"""A notification's ``decision`` in plain words, for the console's user lookup."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gateway.schemas import NotificationOut

_ZONE_SOURCES = {
    "preferences": "from the user's preferences",
    "device": "reported by the user's device",
    "default": "the gateway's default zone",
}
_CONSENT = {
    "opted_out": "the user opted out of {tier} notifications",
    "not_opted_in": "the user has not opted in to {tier} notifications",
}
_ENDINGS = {
    "superseded": "Later replaced by a newer notification with the same collapse key.",
    "expired": "It ran out of time before it could be delivered.",
}


def decision_in_words(notification: NotificationOut) -> str:
    """What decided the notification's fate and why, in one or two sentences."""
    decision = notification.decision
    if decision is None:
        return f"{notification.status.capitalize()} (stored before decisions were recorded)."
    zone = decision.zone
    clock = f"{decision.local_time:%H:%M} in {zone} ({_ZONE_SOURCES[decision.zone_source]})"
    window = (
        f"quiet hours {decision.quiet_hours.start}\u2013{decision.quiet_hours.end}"
        if decision.quiet_hours is not None
        else None
    )
    tier = notification.tier.value
    until = _local(notification.deliver_at, zone)
    rule = decision.rule
    if rule == "send":
        because = f"outside {window}" if window else f"{tier} notifications ignore quiet hours"
        said = f"Sent for delivery at once: {because}; it was {clock}."
    elif rule == "quiet_hours" and notification.status == "deferred":
        said = f"Held back by {window}: it was {clock}. It waits until {until} local time."
    elif rule == "quiet_hours":
        said = f"Dropped: it would expire before the {window} end; it was {clock}."
    elif rule == "scheduled":
        said = (
            f"Scheduled by the sender for {until} local time; quiet hours and caps are "
            f"checked when it is released (decided at {clock})."
        )
    elif rule == "consent":
        reason = _CONSENT.get(notification.reason or "", "the user gave no consent")
        said = f"Dropped: {reason.format(tier=tier)}."
    elif rule == "devices":
        said = (
            f"Dropped: the user had no active device for {notification.app} that allows "
            "notifications."
        )
    elif rule == "expiry":
        said = "Expired: it could no longer be delivered in time."
    else:  # frequency_cap
        said = (
            f"Dropped: the user already had as many {tier} notifications as the frequency "
            f"cap allows; it was {clock}."
        )
    if notification.status == "cancelled":
        said += " Then cancelled by its sender."
    elif notification.reason in _ENDINGS and rule != "expiry":
        said += " " + _ENDINGS[notification.reason]
    return said


def _local(instant: datetime | None, zone: str) -> str:
    if instant is None:
        return "a time not yet known"
    try:
        local = instant.astimezone(ZoneInfo(zone))
    except (ZoneInfoNotFoundError, ValueError):
        local = instant
    return f"{local:%Y-%m-%d %H:%M} ({local.tzname()})"
