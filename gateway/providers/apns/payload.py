"""The APNs request for one message: JSON payload, headers, and the checks made at acceptance.

Pure functions of the message and the app, shared by :class:`~gateway.providers.apns.provider.
ApnsProvider` (which sends them) and the acceptance check (which refuses a notification APNs
would refuse, so the caller hears it in its 4xx rather than as a failed delivery later).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.providers.base import AppProfile, PayloadRejected, PushMessage
from policies.tiers import Tier

APNS_MAX_PAYLOAD_BYTES = 4096
PRIORITY_IMMEDIATE = 10
PRIORITY_CONSERVE_POWER = 5


# -- payload ---------------------------------------------------------------------------------


def interruption_level(tier: Tier, app: AppProfile) -> str:
    """Transactional breaks through Focus only for apps allowed to (``time_sensitive``)."""
    if tier is Tier.TRANSACTIONAL:
        return "time-sensitive" if app.time_sensitive else "active"
    if tier is Tier.BEHAVIORAL:
        return "active"
    return "passive"


def build_apns_payload(message: PushMessage, app: AppProfile) -> dict[str, Any]:
    """The JSON payload for ``message``: custom ``data`` keys at the top level beside ``aps``.

    A data-only message becomes a background push (``content-available: 1``); Apple forbids
    alert, badge and sound in those, so they are left out. Raises :class:`ValueError` when
    ``data`` uses the reserved key ``aps``.
    """
    if "aps" in message.data:
        raise ValueError("data may not contain the key 'aps', which APNs reserves")
    aps: dict[str, Any] = {}
    if message.is_data_only:
        aps["content-available"] = 1
    else:
        alert = {"title": message.title, "body": message.body}
        aps["alert"] = {key: value for key, value in alert.items() if value is not None}
        if message.badge is not None:
            aps["badge"] = message.badge
        if message.sound is not None:
            aps["sound"] = message.sound
        if message.thread_id is not None:
            aps["thread-id"] = message.thread_id
        aps["interruption-level"] = interruption_level(message.tier, app)
    return {**message.data, "aps": aps}


def encode_apns_payload(payload: Mapping[str, Any]) -> bytes:
    """The exact bytes sent to APNs (compact JSON, UTF-8)."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def apns_payload_size(payload: Mapping[str, Any]) -> int:
    """Size in bytes of ``payload`` as sent; APNs refuses more than
    :data:`APNS_MAX_PAYLOAD_BYTES` with ``413 PayloadTooLarge``."""
    return len(encode_apns_payload(payload))


def apns_priority_and_push_type(message: PushMessage) -> tuple[int, str]:
    """Data-only → background at 5; promotional 5 (saves the battery); transactional and
    behavioral 10 (now)."""
    if message.is_data_only:
        return PRIORITY_CONSERVE_POWER, "background"
    if message.tier is Tier.PROMOTIONAL:
        return PRIORITY_CONSERVE_POWER, "alert"
    return PRIORITY_IMMEDIATE, "alert"


@dataclass(frozen=True, slots=True)
class ApnsRequest:
    """Everything that goes on the wire for one send."""

    token: str
    body: bytes
    apns_id: str
    priority: int
    push_type: str
    expiration: int
    collapse_id: str | None = None


def build_apns_request(message: PushMessage, app: AppProfile) -> ApnsRequest:
    """Headers and body for ``message``, with a fresh ``apns-id``: one notification goes to
    several devices and may be retried, and each request needs its own id."""
    priority, push_type = apns_priority_and_push_type(message)
    return ApnsRequest(
        token=message.token,
        body=encode_apns_payload(build_apns_payload(message, app)),
        apns_id=str(uuid.uuid4()),
        priority=priority,
        push_type=push_type,
        expiration=int(message.expires_at.timestamp()),
        collapse_id=message.collapse_key,
    )


def check_apns_payload(message: PushMessage, app: AppProfile) -> None:
    """Raise :class:`PayloadRejected` for a reserved data key or a payload over APNs's limit."""
    if "aps" in message.data:
        raise PayloadRejected("data key 'aps' is reserved by APNs; rename it", field="data.aps")
    size = apns_payload_size(build_apns_payload(message, app))
    if size > APNS_MAX_PAYLOAD_BYTES:
        raise PayloadRejected(
            f"the APNs payload would be {size} bytes; APNs accepts at most "
            f"{APNS_MAX_PAYLOAD_BYTES} (shorten title, body or data)",
            too_large=True,
        )
