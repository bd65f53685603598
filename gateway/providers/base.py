"""The seam between the delivery pipeline and Apple/Google: one message in, one report out.

Each provider module (``apns``, ``fcm``) implements :class:`Provider`; the pipeline never sees a
library exception, only :class:`tokens.reports.DeliveryReport` values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from policies.tiers import Tier
from tokens.reports import DeliveryReport

Platform = Literal["ios", "android"]


@dataclass(frozen=True, slots=True)
class PushMessage:
    """One notification addressed to one device token, provider-neutral."""

    token: str
    platform: Platform
    tier: Tier
    expires_at: datetime
    environment: Literal["production", "sandbox"] = "production"
    title: str | None = None
    body: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    badge: int | None = None
    sound: str | None = None
    thread_id: str | None = None
    collapse_key: str | None = None
    notification_id: str | None = None  # for logs and the APNs apns-id

    @property
    def is_data_only(self) -> bool:
        return self.title is None and self.body is None


class Provider(Protocol):
    """Sends messages for one configured app on one platform."""

    async def send(self, messages: Sequence[PushMessage]) -> list[DeliveryReport]:
        """Send each message; return one report per message, in order. Never raises for a
        provider or transport error: those are reports."""
        ...

    async def close(self) -> None: ...
