"""Checks at acceptance that a notification can be delivered on every platform, so a service
hears about an oversized or malformed payload in its 4xx, not later as a failed delivery."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from gateway.api.errors import FieldError, PayloadTooLarge, ValidationFailed
from gateway.api.schemas import NotificationRequest
from gateway.config import AppConfig
from gateway.providers.apns import (
    APNS_MAX_PAYLOAD_BYTES,
    apns_payload_size,
    build_apns_payload,
)
from gateway.providers.base import PushMessage
from policies.tiers import Tier

FCM_MAX_PAYLOAD_BYTES = 4096
# FCM refuses these data keys: "from", "notification", "message_type", and any key starting
# with "google" or "gcm" (https://firebase.google.com/docs/cloud-messaging/concept-options)
FCM_RESERVED_KEYS = frozenset({"from", "notification", "message_type"})
FCM_RESERVED_PREFIXES = ("google", "gcm")


def _fcm_data_size(data: Mapping[str, Any]) -> int:
    # the provider sends non-string values as compact JSON (FCM data is string -> string)
    size = 0
    for key, value in data.items():
        text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
        size += len(key.encode()) + len(text.encode())
    return size


def check_payload(
    request: NotificationRequest, *, app: AppConfig, tier: Tier, expires_at: datetime
) -> None:
    """Raise 422 for data keys a provider reserves, 413 for a payload over a provider's limit."""
    data = request.data or {}
    title, body = request.title, request.body
    for key in data:
        if key == "aps" or key in FCM_RESERVED_KEYS or key.startswith(FCM_RESERVED_PREFIXES):
            raise ValidationFailed(
                f"data key {key!r} is reserved by APNs or FCM; rename it",
                errors=[FieldError(field=f"data.{key}", message="reserved key")],
            )
    message = PushMessage(
        token="",
        platform="ios",
        tier=tier,
        expires_at=expires_at,
        title=title,
        body=body,
        data=data,
        badge=request.badge,
        sound=request.sound,
        thread_id=request.thread_id,
        collapse_key=request.collapse_key,
    )
    apns_size = apns_payload_size(build_apns_payload(message, app))
    if apns_size > APNS_MAX_PAYLOAD_BYTES:
        raise PayloadTooLarge(
            f"the APNs payload would be {apns_size} bytes; APNs accepts at most "
            f"{APNS_MAX_PAYLOAD_BYTES} (shorten title, body or data)"
        )
    fcm_size = _fcm_data_size(data) + len((title or "").encode()) + len((body or "").encode())
    if fcm_size > FCM_MAX_PAYLOAD_BYTES:
        raise PayloadTooLarge(
            f"the FCM payload would be about {fcm_size} bytes; FCM accepts at most "
            f"{FCM_MAX_PAYLOAD_BYTES} (shorten title, body or data)"
        )
