"""The device-token registry: registration, refresh, reassignment, pruning and cleanup.

The public face; everything the gateway needs is importable from here.
"""

from tokens.cleanup import (
    CleanupResult,
    count_purge_candidates,
    count_stale_candidates,
    mark_stale_devices,
    purge_invalid_devices,
    stale_cutoffs,
)
from tokens.feedback import InvalidationGuard, TokenOutcome, apply_report
from tokens.registry import (
    Registration,
    TokenCount,
    change_permission,
    deliverable_devices,
    forget_user_devices,
    grant_undecided_devices,
    register_device,
    token_stats,
    unregister_device,
    user_devices,
)

__all__ = [
    "CleanupResult",
    "InvalidationGuard",
    "Registration",
    "TokenCount",
    "TokenOutcome",
    "apply_report",
    "change_permission",
    "count_purge_candidates",
    "count_stale_candidates",
    "deliverable_devices",
    "forget_user_devices",
    "grant_undecided_devices",
    "mark_stale_devices",
    "purge_invalid_devices",
    "register_device",
    "stale_cutoffs",
    "token_stats",
    "unregister_device",
    "user_devices",
]
