"""What the policy engine can say about a notification: send it now, defer it, or drop it.

Decisions are values, not side effects: the gateway turns them into a notification status
(`queued`, `deferred`, `dropped`, `expired`) and a `reason`.
"""

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

__all__ = ["Decision", "Defer", "DeferReason", "Drop", "DropReason", "Send"]


class DropReason(StrEnum):
    """Why a notification ends without being delivered (the API's `reason` codes)."""

    OPTED_OUT = "opted_out"
    NOT_OPTED_IN = "not_opted_in"
    NO_ACTIVE_DEVICES = "no_active_devices"
    FREQUENCY_CAPPED = "frequency_capped"
    EXPIRES_DURING_QUIET_HOURS = "expires_during_quiet_hours"
    SUPERSEDED = "superseded"
    EXPIRED = "expired"


class DeferReason(StrEnum):
    """Why a notification waits (the `reason` of a `deferred` one)."""

    QUIET_HOURS = "quiet_hours"  # it is night where the user is; released when it ends
    SCHEDULED = "scheduled"  # the caller asked for a later moment (`send_at`, `send_at_local`)


@dataclass(frozen=True, slots=True)
class Send:
    """Deliver now: the notification becomes `queued`."""


@dataclass(frozen=True, slots=True)
class Defer:
    """Hold the notification until `until` (an aware UTC instant strictly after `now`)."""

    until: datetime
    reason: str = DeferReason.QUIET_HOURS


@dataclass(frozen=True, slots=True)
class Drop:
    """End the notification without delivering it, for `reason`."""

    reason: DropReason


Decision = Send | Defer | Drop
