"""Apple Push Notification service: :class:`ApnsProvider` and its ``[apps.apns]`` section."""

from gateway.providers.apns.payload import (
    APNS_MAX_PAYLOAD_BYTES,
    apns_payload_size,
    build_apns_payload,
    build_apns_request,
    encode_apns_payload,
)
from gateway.providers.apns.provider import ApnsConfig, ApnsProvider

__all__ = [
    "APNS_MAX_PAYLOAD_BYTES",
    "ApnsConfig",
    "ApnsProvider",
    "apns_payload_size",
    "build_apns_payload",
    "build_apns_request",
    "encode_apns_payload",
]
