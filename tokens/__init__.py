"""The device-token registry: registration, refresh, reassignment, pruning and cleanup."""
