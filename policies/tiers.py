"""Notification tiers, from least to most restricted."""

from enum import StrEnum


class Tier(StrEnum):
    """How important a notification is to the user, which decides when and whether it may go."""

    TRANSACTIONAL = "transactional"
    BEHAVIORAL = "behavioral"
    PROMOTIONAL = "promotional"
